"""Dates: one format per file, chosen among the common ones, and the period they step by.

When a file could be day-first or month-first (no day above 12), the reading whose dates are
more evenly spaced wins and a warning says so. Monthly and quarterly dates are moved to the
start of their period so that one period has one label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from salesmesh.data.coded import BoolArray, Coded, IntArray
from salesmesh.data.report import ValidationReport, describe, empty_cells, examples

FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y%m%d")
# A time of day is tolerated only when it is midnight: exporters add it to plain dates.
_MIDNIGHT = re.compile(r"[ T]00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?$")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_MONTHS = ("JAN", "FEB", "MAR")
DAY_NS = 86_400 * 10**9

DateArray = npt.NDArray[np.datetime64]


@dataclass(frozen=True)
class Frequency:
    """A pandas offset alias and its family (D, W, M, Q), inferred from the usual spacing.

    `alias` and `family` are empty when the usual step fits none of the supported periods.
    """

    alias: str
    family: str
    step_days: int


def parse_dates(
    column: Coded, forced: str | None, report: ValidationReport
) -> tuple[DateArray, str] | None:
    """One datetime64 per unique value and the format used; None after recording errors."""
    if column.missing.any():
        rows = np.flatnonzero(column.missing)
        report.error("date_missing", *empty_cells(column.label, column.name, column.lines[rows]))
    # A configured format with a time part must see the time; others drop a midnight time.
    keep_time = forced is not None and "%H" in forced
    texts = pd.Index(
        [value if keep_time else _MIDNIGHT.sub("", value) for value in column.uniques], dtype=object
    )
    formats = (forced,) if forced else FORMATS
    parsed = {
        fmt: pd.to_datetime(texts, format=fmt, errors="coerce").normalize() for fmt in formats
    }
    complete = [fmt for fmt in formats if not parsed[fmt].isna().any()]
    if not complete:
        _report_mismatch(column, parsed, forced, report)
        return None
    chosen = complete[0]
    if len(complete) > 1:
        chosen = _disambiguate(column, {fmt: parsed[fmt] for fmt in complete}, report)
    if column.missing.any():
        return None
    return parsed[chosen].to_numpy(dtype="datetime64[ns]"), chosen


def _report_mismatch(
    column: Coded, parsed: dict[str, pd.DatetimeIndex], forced: str | None, report: ValidationReport
) -> None:
    fits = np.full(len(column.uniques), "", dtype=object)
    for fmt in reversed(parsed):  # the first format in the list that fits wins
        fits[np.asarray(parsed[fmt].notna())] = fmt
    unmatched: BoolArray = fits == ""
    accepted = (
        f"do not match Contract.date_format {forced!r}"
        if forced
        else f"match none of the accepted date formats ({', '.join(parsed)})"
    )
    if unmatched.any():
        found = column.first_rows(unmatched)
        listed = examples([line for line, _ in found], [value for _, value in found], column.name)
        count = len(column.rows_where(unmatched))
        report.error(
            "date_format",
            f"column {column.label} has {count:,} row(s) whose values {accepted}: "
            f"{describe(listed)}",
            listed,
        )
        return
    # Every value parses with some format, but no single format parses them all.
    groups = []
    listed = []
    for fmt in dict.fromkeys(fits):
        (line, value), *_ = column.first_rows(fits == fmt, limit=1)
        groups.append(f"{fmt} (line {line}: {value!r})")
        listed += examples([line], [value], column.name)
    report.error(
        "date_format",
        f"column {column.label} mixes date formats: {' and '.join(groups)}; use one format "
        "throughout, or set Contract.date_format / --date-format",
        listed[:5],
    )


def _disambiguate(
    column: Coded, candidates: dict[str, pd.DatetimeIndex], report: ValidationReport
) -> str:
    first = next(iter(candidates.values()))
    if all(index.equals(first) for index in candidates.values()):
        return next(iter(candidates))  # every reading gives the same dates (e.g. 01/01/2024)
    scores = {fmt: _regularity(index) for fmt, index in candidates.items()}
    chosen = max(scores, key=lambda fmt: scores[fmt])  # ties keep list order: day-first
    others = ", ".join(fmt for fmt in candidates if fmt != chosen)
    runner_up = max(score[0] for fmt, score in scores.items() if fmt != chosen)
    (line, value), *_ = column.first_rows(np.ones(len(column.uniques), dtype=bool), limit=1)
    report.warn(
        "date_ambiguous",
        f"column {column.label} fits both {chosen} and {others} (no day above 12, e.g. line "
        f"{line}: {value!r}); chose {chosen} because its dates are more evenly spaced "
        f"({scores[chosen][0]:.0%} vs {runner_up:.0%} of gaps are the usual period). "
        "Set Contract.date_format / --date-format if that is wrong",
        examples([line], [value], column.name),
    )
    return chosen


def _regularity(index: pd.DatetimeIndex) -> tuple[float, float]:
    """How evenly sorted distinct dates are spaced: the share of gaps in the most common
    period (so monthly 28-31 day gaps count as one), then the share of the most common gap."""
    steps = np.diff(np.sort(index.unique().asi8)) // DAY_NS
    if len(steps) == 0:
        return 0.0, 0.0
    periods = np.select(
        [steps == 7, (steps >= 28) & (steps <= 31), (steps >= 89) & (steps <= 92)],
        [-7, -30, -91],
        default=steps,
    )
    return _mode_share(periods), _mode_share(steps)


def _mode_share(values: npt.NDArray[Any]) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float(counts.max() / len(values))


def infer_frequency(step_days: IntArray, dates: DateArray) -> Frequency | None:
    """The period from the most common step between a series' consecutive dates."""
    if len(step_days) == 0:
        return None
    values, counts = np.unique(step_days, return_counts=True)
    step = int(values[counts.argmax()])
    if step == 1:
        return Frequency("D", "D", step)
    if step == 7:
        weekday = int(np.bincount(pd.DatetimeIndex(dates).dayofweek, minlength=7).argmax())
        return Frequency(f"W-{_WEEKDAYS[weekday]}", "W", step)
    if 28 <= step <= 31:
        return Frequency("MS", "M", step)
    if 89 <= step <= 92:
        months = pd.DatetimeIndex(dates).month.to_numpy()
        anchor = int(np.bincount((months - 1) % 3, minlength=3).argmax())
        return Frequency(f"QS-{_MONTHS[anchor]}", "Q", step)
    return Frequency("", "", step)


def snap(dates: DateArray, frequency: Frequency | None) -> DateArray:
    """Move monthly and quarterly dates to the first day of their period."""
    if frequency is None or frequency.family not in ("M", "Q"):
        return dates
    rule = "M"
    if frequency.family == "Q":
        # A quarter starting in FEB is pandas' quarter ending in JAN.
        start = _MONTHS.index(frequency.alias.removeprefix("QS-"))
        rule = f"Q-{('DEC', 'JAN', 'FEB')[start]}"
    starts = pd.DatetimeIndex(dates).to_period(rule).to_timestamp()
    return starts.to_numpy(dtype="datetime64[ns]")
