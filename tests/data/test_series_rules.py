"""Series-level rules: the normalised frame, duplicate keys and history length."""

from __future__ import annotations

import random

import pandas as pd

from salesmesh.data import Contract, load_sales, validate_file


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
