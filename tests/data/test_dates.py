"""Dates: one format per file, ambiguity resolved by regular spacing, frequency inferred."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from salesmesh.data import Contract, load_sales, validate_file


@pytest.mark.parametrize(
    "fmt", ["%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y%m%d"]
)
def test_each_accepted_format_is_detected(write_file, sales_text, fmt):
    """Every accepted format is detected and gives the same normalised dates."""
    result = load_sales(write_file("sales.csv", sales_text(date_format=fmt)))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["date_format"] == fmt
    assert result.frame is not None
    assert str(result.frame["date"].dtype) == "datetime64[ns]"
    assert result.frame["date"].iloc[0] == result.frame["date"].iloc[0].normalize()
    assert (result.report.stats["date_min"], result.report.stats["date_max"]) == (
        "2024-01-01",
        "2024-02-29",
    )


def test_midnight_time_part_is_accepted(write_file, sales_text):
    """ISO dates carrying a 00:00:00 time (a common export artefact) are plain dates."""
    result = load_sales(write_file("sales.csv", sales_text(date_format="%Y-%m-%d 00:00:00")))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["date_format"] == "%Y-%m-%d"


def test_time_of_day_is_not_a_date(write_file, sales_text):
    """A time other than midnight means the column is not plain dates: date_format error."""
    text = sales_text().replace("2024-01-05,S1,P1", "2024-01-05 13:45:00,S1,P1")
    report = validate_file(write_file("sales.csv", text))
    assert report.rules == ["date_format"]
    assert report.errors[0].examples == [
        {"line": 6, "column": "date", "value": "2024-01-05 13:45:00"}
    ]


def _monthly(fmt: str, day: int, years: int = 5) -> str:
    lines = ["date,store,sku,qty"]
    for year in range(2020, 2020 + years):
        for month in range(1, 13):
            lines.append(f"{date(year, month, day):{fmt}},S1,P1,{month}")
    return "\n".join(lines) + "\n"


def test_ambiguous_day_first_monthly_file(write_file):
    """dd/mm monthly dates (all days <= 12) are read day-first, with a date_ambiguous warning."""
    result = load_sales(write_file("sales.csv", _monthly("%d/%m/%Y", 1)), Contract(horizon=12))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["date_format"] == "%d/%m/%Y"
    assert result.report.stats["freq"] == "MS"
    warning = next(w for w in result.report.warnings if w.rule == "date_ambiguous")
    assert "chose %d/%m/%Y" in warning.message
    assert "%m/%d/%Y" in warning.message


def test_ambiguous_month_first_monthly_file(write_file):
    """US monthly dates on the 5th read month-first because that reading is evenly spaced."""
    result = load_sales(write_file("sales.csv", _monthly("%m/%d/%Y", 5)), Contract(horizon=12))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["date_format"] == "%m/%d/%Y"
    assert [w.rule for w in result.report.warnings] == ["date_ambiguous"]
    assert result.frame is not None
    assert result.frame["date"].iloc[0] == pd.Timestamp("2020-01-01")  # moved to month start


def test_unparseable_dates_name_lines_and_values(write_file, sales_text):
    """Values that fit no format are reported with their line numbers and text."""
    lines = sales_text().splitlines()
    lines[3] = lines[3].replace("2024-01-03", "2024-13-03")
    lines[9] = lines[9].replace("2024-01-09", "yesterday")
    report = validate_file(write_file("sales.csv", "\n".join(lines)))
    assert report.rules == ["date_format"]
    assert report.errors[0].examples == [
        {"line": 4, "column": "date", "value": "2024-13-03"},
        {"line": 10, "column": "date", "value": "yesterday"},
    ]
    assert "2 row(s) whose values match none of the accepted" in report.errors[0].message


def test_mixed_formats_are_an_error(write_file, sales_text):
    """ISO and dd/mm/yyyy in one file is a date_format error naming both formats."""
    lines = sales_text().splitlines()
    lines[20] = lines[20].replace("2024-01-20", "20/01/2024")
    report = validate_file(write_file("sales.csv", "\n".join(lines)))
    assert report.rules == ["date_format"]
    message = report.errors[0].message
    assert "mixes date formats" in message
    assert "%Y-%m-%d (line 2: '2024-01-01')" in message
    assert "%d/%m/%Y (line 21: '20/01/2024')" in message


def test_configured_date_format_is_used(write_file, sales_text):
    """Contract.date_format reads a format outside the detected list."""
    text = sales_text(date_format="%d %b %Y")
    result = load_sales(write_file("sales.csv", text), Contract(date_format="%d %b %Y"))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["date_format"] == "%d %b %Y"


def test_configured_date_format_mismatch_is_reported(write_file, sales_text):
    """Values not matching the configured format are errors that name the format."""
    report = validate_file(write_file("sales.csv", sales_text()), Contract(date_format="%d/%m/%Y"))
    assert report.rules == ["date_format"]
    assert "Contract.date_format '%d/%m/%Y'" in report.errors[0].message


def test_empty_date_cell_is_error(write_file, sales_text):
    """An empty date cell is a date_missing error naming the line."""
    lines = sales_text().splitlines()
    lines[7] = "," + lines[7].split(",", 1)[1]
    report = validate_file(write_file("sales.csv", "\n".join(lines)))
    assert report.rules == ["date_missing"]
    assert report.errors[0].examples == [{"line": 8, "column": "date", "value": ""}]


def test_weekly_frequency_is_anchored_on_weekday(write_file, sales_text):
    """Sunday-to-Sunday dates give freq W-SUN."""
    text = sales_text(days=60, step_days=7, start=date(2023, 1, 1))  # a Sunday
    report = validate_file(write_file("sales.csv", text))
    assert report.ok, report.to_text()
    assert report.stats["freq"] == "W-SUN"


def test_month_end_dates_move_to_month_start(write_file):
    """Monthly data dated at month end becomes MS with dates on the 1st."""
    lines = ["date,store,sku,qty"]
    for year in range(2020, 2025):
        for month in range(1, 13):
            end = date(year + month // 12, month % 12 + 1, 1).toordinal() - 1
            lines.append(f"{date.fromordinal(end):%Y-%m-%d},S1,P1,1")
    result = load_sales(write_file("sales.csv", "\n".join(lines)), Contract(horizon=12))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["freq"] == "MS"
    assert result.report.stats["dates_moved_to_period_start"] == 60
    assert result.frame is not None
    assert result.frame["date"].dt.day.unique().tolist() == [1]


def test_quarterly_frequency(write_file):
    """Quarter-start dates give a QS alias anchored on their first month."""
    lines = ["date,store,sku,qty"] + [
        f"{year}-{month:02d}-01,S1,P1,5" for year in range(2015, 2025) for month in (2, 5, 8, 11)
    ]
    result = load_sales(write_file("sales.csv", "\n".join(lines)), Contract(horizon=4))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["freq"] == "QS-FEB"


def test_irregular_spacing_is_frequency_error(write_file, sales_text):
    """Dates three days apart match no supported period: rule frequency."""
    report = validate_file(write_file("sales.csv", sales_text(step_days=3)))
    assert report.rules == ["frequency"]
    assert "usually 3 days apart" in report.errors[0].message
