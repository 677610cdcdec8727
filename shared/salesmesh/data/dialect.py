"""How the CSV text is laid out: header line, delimiter, row count, and the raw string table.

The delimiter is the candidate that splits the header into the most fields while splitting a
sample of rows into that same number (quotes respected). Every cell is read as text; numbers
and dates are interpreted later, where a bad value can be reported with its line number.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass

import pandas as pd

from salesmesh.data.report import ContractViolationError

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_CHARS = 256 * 1024
_SAMPLE_ROWS = 200
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PARSER_LINE = re.compile(r"line (\d+)")
_PARSER_ROW = re.compile(r"row (\d+)")


@dataclass(frozen=True)
class Dialect:
    """The header (cleaned names in file order), the delimiter and where the data starts."""

    delimiter: str
    header: tuple[str, ...]
    header_line: int  # 1-based line number of the header in the file

    def line_of(self, position: int) -> int:
        """1-based file line of the data row at 0-based `position` (blank lines included)."""
        return self.header_line + 1 + position


def sniff_dialect(data: bytes) -> Dialect:
    """Find the header and the delimiter; raises ContractViolationError when there is no header."""
    sample = data[:_SAMPLE_CHARS].decode("utf-8", errors="replace")
    # Not str.splitlines: it also breaks on \x85 and friends, which Latin-1 text may hold.
    lines = _LINE_BREAK.split(sample)
    if len(data) > _SAMPLE_CHARS and lines:
        lines.pop()  # probably cut mid-line
    skipped = 0
    while skipped < len(lines) and not lines[skipped].strip():
        skipped += 1
    if skipped == len(lines):
        raise ContractViolationError("empty", "the file has no header line: it is blank")
    header_text = lines[skipped]
    rows = [line for line in lines[skipped + 1 : skipped + 1 + _SAMPLE_ROWS] if line.strip()]
    best = (-1.0, 0, ",")
    for delimiter in DELIMITERS:
        width = len(_split(header_text, delimiter))
        if width < 2:
            continue
        widths = [len(_split(row, delimiter)) for row in rows]
        fit = sum(w == width for w in widths) / len(widths) if widths else 1.0
        best = max(best, (fit, width, delimiter), key=lambda item: (item[0], item[1]))
    delimiter = best[2]
    header = tuple(name.strip().lstrip("\ufeff").strip() for name in _split(header_text, delimiter))
    return Dialect(delimiter, header, skipped + 1)


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter), [])


def count_lines(data: bytes) -> int:
    """Number of lines, counting LF, CRLF and lone CR endings alike, without splitting."""
    newlines = data.count(b"\n")
    lone_cr = data.count(b"\r")
    if lone_cr:
        lone_cr -= data.count(b"\r\n")
    return newlines + lone_cr + (0 if data.endswith((b"\n", b"\r")) else 1)


def read_table(data: bytes, dialect: Dialect) -> pd.DataFrame:
    """All cells as str, columns numbered by position, one row per line.

    Blank lines are kept as rows of empty cells so that row position maps straight to a file line
    (quoted fields spanning lines are the one case where it does not).
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            table = pd.read_csv(
                io.BytesIO(data),
                sep=dialect.delimiter,
                header=None,
                names=list(range(len(dialect.header))),
                skiprows=dialect.header_line,
                index_col=False,
                dtype=str,
                # Empty cells stay "" (cheaper than NA detection); coding turns them into MISSING.
                na_filter=False,
                skip_blank_lines=False,
                encoding="utf-8",
                engine="c",
            )
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise ContractViolationError(*_parser_finding(str(exc))) from exc
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        # pandas drops the surplus fields of the first data row with only a warning; later
        # rows raise ParserError above. Losing values silently is never acceptable.
        line = dialect.line_of(0)
        raise ContractViolationError(
            "parse",
            f"line {line} has more fields than the header's {len(dialect.header)}: an unquoted "
            f"{dialect.delimiter!r} inside a value (a thousands separator?) or a missing header "
            "column",
            [{"line": line}],
        )
    return table


def _parser_finding(text: str) -> tuple[str, str, list[dict[str, object]]]:
    message = text.replace("Error tokenizing data. C error: ", "").strip()
    line = _PARSER_LINE.search(message)
    row = _PARSER_ROW.search(message)
    # The C parser counts "lines" from 1 but "rows" from 0, both over the whole file.
    number = int(line.group(1)) if line else int(row.group(1)) + 1 if row else None
    where = f" at line {number}" if number is not None else ""
    if "EOF inside string" in message:
        message += " (a quote is opened and never closed)"
    examples: list[dict[str, object]] = [{"line": number}] if number is not None else []
    return "parse", f"the CSV cannot be parsed{where}: {message}", examples
