"""Numbers in the file: decimal-comma detection, sales and regressor rules.

Rules: sales are finite, non-negative numbers with no empty cells; price is a number >= 0;
promo is 0/1 (also true/false, yes/no, sim/não, s/n); any other regressor is numeric.
Empty regressor cells are allowed and later forward-filled within their series.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from salesmesh.data.coded import BoolArray, Coded, FloatArray
from salesmesh.data.report import ValidationReport, describe, empty_cells, examples

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_COMMA_DECIMAL = re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d+")
_DOT_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+(?:,\d*)?")
_COMMA_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_DOT_DECIMAL = re.compile(r"[+-]?\d*\.\d+")
_NON_FINITE = frozenset({"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
# Spreadsheet placeholders for "no value": treated like an empty cell, not like a bad number.
_MISSING_TOKENS = frozenset({"na", "n/a", "#n/a", "null", "none", "-", "--"})
_PROMO_TOKENS = {
    **dict.fromkeys(("1", "true", "t", "yes", "y", "sim", "s", "verdadeiro", "x"), 1.0),
    **dict.fromkeys(("0", "false", "f", "no", "n", "nao", "não", "falso"), 0.0),
}


def detect_decimal(delimiter: str, columns: Iterable[Coded]) -> str:
    """',' when the delimiter frees the comma and numbers such as '12,5' or '1.234,56' occur."""
    if delimiter == ",":
        return "."
    comma = dot = 0
    for column in columns:
        for value in column.uniques:
            if _COMMA_DECIMAL.fullmatch(value):
                comma += 1
            elif _DOT_DECIMAL.fullmatch(value) and not _DOT_THOUSANDS.fullmatch(value):
                dot += 1
    return "," if comma and comma >= dot else "."


@dataclass(frozen=True)
class Numbers:
    """One float per unique value, with what went wrong for those that are not numbers."""

    values: FloatArray
    blank: BoolArray  # placeholder such as 'NA': counts as an empty cell
    non_finite: BoolArray
    invalid: BoolArray


def parse_numbers(column: Coded, decimal: str) -> Numbers:
    size = len(column.uniques)
    values = np.full(size, np.nan)
    blank = np.zeros(size, dtype=bool)
    non_finite = np.zeros(size, dtype=bool)
    invalid = np.zeros(size, dtype=bool)
    for index, text in enumerate(column.uniques):
        number = _to_float(text, decimal)
        if number is not None:
            values[index] = number
        elif text.lower() in _MISSING_TOKENS:
            blank[index] = True
        elif text.lower() in _NON_FINITE:
            non_finite[index] = True
        else:
            invalid[index] = True
    return Numbers(values, blank, non_finite, invalid)


def _to_float(text: str, decimal: str) -> float | None:
    if decimal == ",":
        if _DOT_THOUSANDS.fullmatch(text):
            text = text.replace(".", "")
        text = text.replace(",", ".")
    elif _COMMA_THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    if not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    # '1e999' passes the pattern and overflows to inf: not a finite quantity either.
    return number if np.isfinite(number) else None


def check_sales(column: Coded, decimal: str, report: ValidationReport) -> FloatArray:
    """Row sales as float; records sales_missing/_numeric/_finite/_negative errors."""
    numbers = parse_numbers(column, decimal)
    missing = column.missing | np.append(numbers.blank, False)[column.codes]
    if missing.any():
        rows = np.flatnonzero(missing)
        cells = [_cell(column, row) for row in rows[:5]]
        message, found = empty_cells(column.label, column.name, column.lines[rows], cells)
        report.error("sales_missing", f"{message}; write 0 for days without sales", found)
    _flag(report, column, numbers.invalid, "sales_numeric", "is not a number")
    _flag(report, column, numbers.non_finite, "sales_finite", "holds NaN/inf, not a quantity")
    _flag(
        report,
        column,
        numbers.values < 0,
        "sales_negative",
        "is negative",
        "; returns are not sales: net them out of the day's sales or drop those rows",
    )
    return column.take(numbers.values, np.nan)


def check_regressor(
    column: Coded, name: str, decimal: str, report: ValidationReport
) -> FloatArray | None:
    """Row values (NaN where empty) or None when the column breaks its rule."""
    if name == "promo":
        return _check_promo(column, decimal, report)
    numbers = parse_numbers(column, decimal)
    bad = numbers.invalid | numbers.non_finite
    if _flag(report, column, bad, "regressor_numeric", "is not a number"):
        return None
    if name == "price" and _flag(
        report, column, numbers.values < 0, "price_negative", "is negative"
    ):
        return None
    return column.take(numbers.values, np.nan)


def non_numeric(column: Coded, decimal: str) -> BoolArray:
    """Per unique value: True where it is neither a finite number nor a blank placeholder."""
    numbers = parse_numbers(column, decimal)
    return numbers.invalid | numbers.non_finite


def _check_promo(column: Coded, decimal: str, report: ValidationReport) -> FloatArray | None:
    flags = np.array([_promo_flag(text, decimal) for text in column.uniques], dtype=np.float64)
    blank = np.array([text.lower() in _MISSING_TOKENS for text in column.uniques], dtype=bool)
    bad = np.isnan(flags) & ~blank
    if _flag(report, column, bad, "promo_values", "is not 0/1 (nor yes/no, true/false)"):
        return None
    return column.take(flags, np.nan)


def _promo_flag(text: str, decimal: str) -> float:
    token = _PROMO_TOKENS.get(text.lower())
    if token is not None:
        return token
    number = _to_float(text, decimal)
    return number if number in (0.0, 1.0) else np.nan


def _flag(
    report: ValidationReport,
    column: Coded,
    unique_mask: BoolArray,
    rule: str,
    problem: str,
    hint: str = "",
) -> bool:
    """Record one error for rows holding flagged uniques; True when there were any."""
    if not unique_mask.any():
        return False
    count = len(column.rows_where(unique_mask))
    found = column.first_rows(unique_mask)
    listed = examples([line for line, _ in found], [value for _, value in found], column.name)
    report.error(
        rule,
        f"column {column.label} {problem} on {count:,} row(s) "
        f"({int(unique_mask.sum()):,} distinct value(s)): {describe(listed)}{hint}",
        listed,
    )
    return True


def _cell(column: Coded, row: int) -> str:
    code = column.codes[row]
    return "" if code < 0 else str(column.uniques[code])
