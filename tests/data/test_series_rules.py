"""Series-level rules: the normalised frame, duplicate keys and history length."""

from __future__ import annotations

import random

import pandas as pd

from salesmesh.data import Contract, load_sales, validate_file
from salesmesh.data.endings import periods_between


def test_frame_is_normalised_and_sorted(write_file, sales_text):
    """Shuffled rows come back sorted by store, product, date with canonical dtypes."""
    header, *rows = sales_text(series=(("S2", "P1"), ("S1", "P2"), ("S1", "P1"))).splitlines()
    random.Random(3).shuffle(rows)
    text = header + ",price\n" + "".join(f"{row},1.5\n" for row in rows)
    result = load_sales(write_file("sales.csv", text))
    assert result.report.ok, result.report.to_text()
    frame = result.frame
    assert frame is not None
    assert list(frame.columns) == ["date", "store_id", "product_id", "sales", "price"]
    assert [str(t) for t in frame.dtypes] == [
        "datetime64[ns]",
        "object",
        "object",
        "float64",
        "float64",
    ]
    assert isinstance(frame.index, pd.RangeIndex)
    keys = list(zip(frame["store_id"], frame["product_id"], frame["date"], strict=True))
    assert keys == sorted(keys)
    assert frame["store_id"].map(type).eq(str).all()
    assert (result.report.stats["series"], result.report.stats["stores"]) == (3, 2)
    assert result.report.stats["products"] == 2


def test_numeric_looking_ids_stay_text(write_file, sales_text):
    """Ids such as '007' keep their leading zeros: ids are text, not numbers."""
    result = load_sales(write_file("sales.csv", sales_text(series=(("007", "0001"),))))
    assert result.frame is not None
    assert set(result.frame["store_id"]) == {"007"}
    assert set(result.frame["product_id"]) == {"0001"}


def test_duplicate_keys_are_merged_by_the_documented_rule(write_file, sales_text):
    """Repeated (date, store, product) rows merge: sales summed, price mean, promo max."""
    header, *rows = sales_text().splitlines()
    text = header + ",price,promo\n" + "".join(f"{row},2,0\n" for row in rows)
    text += "2024-01-01,S1,P1,5,4,1\n2024-01-01,S1,P1,1,6,0\n"
    result = load_sales(write_file("sales.csv", text))
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    first = result.frame.iloc[0]
    assert (first["sales"], first["price"], first["promo"]) == (6.0, 4.0, 1.0)
    assert len(result.frame) == 120
    assert result.report.stats["duplicates_merged"] == 2
    warning = next(w for w in result.report.warnings if w.rule == "duplicates")
    assert "2 row(s)" in warning.message
    assert "line 122 repeats line 2 (2024-01-01/S1/P1)" in warning.message


def test_history_too_short_for_horizon(write_file, sales_text):
    """30 days cannot back a 28-day horizon: history_length says 30 and 56."""
    report = validate_file(write_file("sales.csv", sales_text(days=30)))
    assert report.rules == ["history_length"]
    message = report.errors[0].message
    assert "has 30 days of history" in message
    assert "horizon of 28 days needs at least 56" in message
    assert report.stats["history_needed"] == 56


def test_history_need_follows_the_season(write_file, sales_text):
    """With horizon 3 a daily file needs horizon + 2 weeks = 17 days, not 2 x horizon."""
    assert validate_file(write_file("a.csv", sales_text(days=17)), Contract(horizon=3)).ok
    report = validate_file(write_file("b.csv", sales_text(days=16)), Contract(horizon=3))
    assert report.rules == ["history_length"]
    assert "at least 17" in report.errors[0].message


def test_short_series_are_warned_about(write_file, sales_text):
    """A series shorter than the horizon is a warning, counted and named."""
    long_series = sales_text(days=60, series=(("S1", "P1"),))
    short_rows = sales_text(days=10, series=(("S9", "P9"),)).splitlines()[1:]
    result = load_sales(write_file("sales.csv", long_series + "\n".join(short_rows) + "\n"))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["short_series"] == 1
    warning = next(w for w in result.report.warnings if w.rule == "short_series")
    assert "1 of 2 series" in warning.message
    assert "S9/P9 (10)" in warning.message


def test_empty_store_id_is_error(write_file, sales_text):
    """An empty id cell is rule id_missing naming the line."""
    lines = sales_text().splitlines()
    lines[12] = lines[12].replace(",S1,", ",,")
    report = validate_file(write_file("sales.csv", "\n".join(lines)))
    assert report.rules == ["id_missing"]
    assert report.errors[0].examples == [{"line": 13, "column": "store_id", "value": ""}]


def _ending(days: dict[tuple[str, str], int], total: int = 200, step_days: int = 1) -> str:
    """Sales rows for each (store, product) over its first ``days[...]`` of ``total`` periods."""
    lines = ["date,store,sku,qty"]
    start = pd.Timestamp("2024-01-01")
    for (store, product), count in days.items():
        for i in range(min(count, total)):
            day = (start + pd.Timedelta(days=i * step_days)).date()
            lines.append(f"{day},{store},{product},{i % 7 + 1}")
    return "\n".join(lines) + "\n"


def test_series_that_end_early_are_reported_not_rejected(write_file):
    """Series stopping 30 and 120 days early: one warning with counts, examples, distances."""
    text = _ending({("S1", "P1"): 200, ("S1", "P2"): 170, ("S2", "P1"): 80})
    report = validate_file(write_file("sales.csv", text), Contract(horizon=14))
    assert report.ok, report.to_text()
    stats = report.stats
    assert (stats["series_ended_early"], stats["series_inactive"], stats["inactive_after"]) == (
        2,
        1,
        91,
    )
    [warning] = [w for w in report.warnings if w.rule == "ended_early"]
    assert warning.message.startswith("2 of 3 series have no rows up to the file's last date")
    assert "1 went silent at most 91 days before it and are forecast" in warning.message
    assert "1 have been silent for more than 91 days and are inactive" in warning.message
    assert warning.examples == [
        {"value": "S2/P1", "last_date": "2024-03-20", "periods": 120},
        {"value": "S1/P2", "last_date": "2024-06-18", "periods": 30},
    ]
    assert "series_ended_early: 2" in report.to_text()


def test_weekly_silence_is_counted_in_weeks(write_file):
    """Weekly data measures silence in weeks against a 13-week threshold."""
    text = _ending({("S1", "P1"): 60, ("S1", "P2"): 45}, total=60, step_days=7)
    report = validate_file(write_file("sales.csv", text), Contract(horizon=4))
    assert report.ok, report.to_text()
    [warning] = [w for w in report.warnings if w.rule == "ended_early"]
    assert warning.examples[0]["periods"] == 15
    assert (report.stats["series_inactive"], report.stats["inactive_after"]) == (1, 13)


def test_series_ending_together_raise_no_warning(write_file, sales_text):
    """When every series has rows up to the last date nothing is reported."""
    report = validate_file(write_file("sales.csv", sales_text()), Contract(horizon=7))
    assert [w.rule for w in report.warnings] == []
    assert (report.stats["series_ended_early"], report.stats["series_inactive"]) == (0, 0)


def test_silence_in_months_and_quarters_counts_calendar_periods():
    """Month starts a year apart are 12 months and 4 quarters; daily dates count days."""
    earlier = pd.to_datetime(["2023-03-01", "2024-01-01"]).to_numpy()
    later = pd.Timestamp("2024-03-01").to_datetime64()
    assert periods_between(earlier, later, "M").tolist() == [12, 2]
    assert periods_between(earlier, later, "Q").tolist() == [4, 0]
    assert periods_between(earlier, later, "D").tolist() == [366, 60]
