"""What validation found: findings with a stable rule id, and the report that gathers them."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from salesmesh.errors import InvalidDatasetError

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Finding:
    """One broken (or bent) rule.

    `rule` is a stable id callers may match on; `message` names the column, the 1-based file
    line numbers (the header is line 1) and the offending values; `examples` holds at most five
    dicts with keys among `line`, `column` and `value`.
    """

    rule: str
    message: str
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "examples": list(self.examples)}


def examples(
    lines: Iterable[int], values: Iterable[object], column: str | None = None
) -> list[dict[str, Any]]:
    """Pair line numbers with values into at most MAX_EXAMPLES example dicts."""
    out: list[dict[str, Any]] = []
    for line, value in zip(lines, values, strict=False):
        item: dict[str, Any] = {"line": int(line)}
        if column is not None:
            item["column"] = column
        item["value"] = _plain(value)
        out.append(item)
        if len(out) == MAX_EXAMPLES:
            break
    return out


def empty_cells(
    label: str, name: str, lines: Sequence[int] | Any, values: Sequence[object] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """("column 'x' is empty on N row(s) (lines 3, 7, ...)", examples) for one column.

    ``values`` shows what the cells held (placeholders such as 'NA') when that helps.
    """
    count = len(lines)
    shown = values if values is not None else [""] * min(count, MAX_EXAMPLES)
    listed = examples(lines, shown, name)
    where = (
        describe(listed)
        if values is not None
        else "lines " + ", ".join(str(item["line"]) for item in listed)
    )
    more = ", ..." if count > len(listed) else ""
    return f"column {label} is empty on {count:,} row(s) ({where}{more})", listed


def describe(items: Sequence[dict[str, Any]]) -> str:
    """'line 5: 'abc', line 9: '-3'' for a message, from example dicts."""
    return ", ".join(f"line {item['line']}: {item['value']!r}" for item in items)


MAX_VALUE_CHARS = 100


def _plain(value: object) -> Any:
    # Examples go into JSON; keep numbers as numbers and everything else as text, cut short:
    # a hostile multi-megabyte cell must not become a multi-megabyte error report or log line.
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[:MAX_VALUE_CHARS]}... ({len(text):,} characters)"
    return text


@dataclass
class ValidationReport:
    """Everything validation found about one file. `ok` means no errors (warnings are fine)."""

    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, rule: str, message: str, examples: list[dict[str, Any]] | None = None) -> None:
        self.errors.append(Finding(rule, message, examples or []))

    def warn(self, rule: str, message: str, examples: list[dict[str, Any]] | None = None) -> None:
        self.warnings.append(Finding(rule, message, examples or []))

    @property
    def rules(self) -> list[str]:
        """Rule ids of the errors, in the order they were found."""
        return [finding.rule for finding in self.errors]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [finding.to_dict() for finding in self.errors],
            "warnings": [finding.to_dict() for finding in self.warnings],
            "stats": {key: _jsonable(value) for key, value in self.stats.items()},
        }

    def to_text(self) -> str:
        name = self.stats.get("source", {}).get("uri") or "input"
        lines = [
            f"{'OK' if self.ok else 'REJECTED'}: {name} "
            f"({_count(len(self.errors), 'error')}, {_count(len(self.warnings), 'warning')})"
        ]
        for heading, findings in (("ERROR", self.errors), ("WARNING", self.warnings)):
            for finding in findings:
                lines.append(f"{heading} [{finding.rule}] {finding.message}")
                lines.extend(f"    {_example_text(item)}" for item in finding.examples)
        stats = [(key, self.stats[key]) for key in _TEXT_STATS if self.stats.get(key) is not None]
        if stats:
            lines.append("stats:")
            lines.extend(f"    {key}: {_stat_text(value)}" for key, value in stats)
        return "\n".join(lines)


# The stats worth a human's glance; to_dict carries all of them.
_TEXT_STATS = (
    "rows",
    "series",
    "stores",
    "products",
    "date_min",
    "date_max",
    "freq",
    "periods_max",
    "history_needed",
    "series_ended_early",
    "series_inactive",
    "encoding",
    "compression",
    "delimiter",
    "decimal",
    "date_format",
    "columns",
    "regressors",
    "ignored_columns",
    "duplicates_merged",
)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _example_text(item: dict[str, Any]) -> str:
    parts = [f"line {item['line']}"] if "line" in item else []
    parts += [f"{key}={item[key]!r}" for key in item if key != "line"]
    return ", ".join(parts)


def _stat_text(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} -> {target}" for key, target in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, str):
        return repr(value) if value in {",", ";", "\t", "|", "."} else value
    return str(value)


def _jsonable(value: object) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    # numpy scalars register as numbers; anything else (timestamps, paths) travels as text.
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


class ContractViolationError(InvalidDatasetError):
    """A problem that stops validation early; the loader turns it into an error finding."""

    def __init__(self, rule: str, message: str, examples: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.finding = Finding(rule, message, examples or [])
