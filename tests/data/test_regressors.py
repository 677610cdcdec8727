"""Regressors: price >= 0, promo 0/1 (yes/no words too), gaps forward-filled per series."""

from __future__ import annotations

import pytest

from salesmesh.data import Contract, load_sales, validate_file

HORIZON = Contract(horizon=7)


def _file(price: list[str], promo: list[str] | None = None, header: str = "price,promo") -> str:
    promo = promo or ["0"] * len(price)
    rows = [
        f"2024-01-{day + 1:02d},S1,P1,{day % 5},{p},{q}\n"
        for day, (p, q) in enumerate(zip(price, promo, strict=True))
    ]
    return f"date,store,sku,qty,{header}\n" + "".join(rows)


def test_non_numeric_price_is_error(write_file):
    """Text in price is a regressor_numeric error with line and value."""
    prices = ["9.9"] * 30
    prices[4] = "free"
    report = validate_file(write_file("sales.csv", _file(prices)), HORIZON)
    assert report.rules == ["regressor_numeric"]
    assert report.errors[0].examples == [{"line": 6, "column": "price", "value": "free"}]


def test_negative_price_is_error(write_file):
    """A negative price is rule price_negative."""
    prices = ["9.9"] * 30
    prices[2] = "-1.5"
    report = validate_file(write_file("sales.csv", _file(prices)), HORIZON)
    assert report.rules == ["price_negative"]
    assert report.errors[0].examples == [{"line": 4, "column": "price", "value": "-1.5"}]


def test_promo_words_become_flags(write_file):
    """yes/no, true/false, sim/não, s/n (any case) become 1/0."""
    words = ["yes", "No", "TRUE", "false", "sim", "Não", "S", "n", "1", "0"] * 3
    result = load_sales(write_file("sales.csv", _file(["1"] * 30, words)), HORIZON)
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert result.frame["promo"].tolist()[:10] == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def test_promo_outside_zero_one_is_error(write_file):
    """promo = 2 is rule promo_values."""
    promo = ["0"] * 30
    promo[9] = "2"
    report = validate_file(write_file("sales.csv", _file(["1"] * 30, promo)), HORIZON)
    assert report.rules == ["promo_values"]
    assert report.errors[0].examples == [{"line": 11, "column": "promo", "value": "2"}]


def test_missing_regressor_values_are_forward_filled(write_file):
    """Empty price cells take the series' previous price (its next one at the start)."""
    prices = [str(10 + day) for day in range(30)]
    prices[0] = ""
    prices[5] = ""
    prices[6] = "NA"
    result = load_sales(write_file("sales.csv", _file(prices)), HORIZON)
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert result.frame["price"].tolist()[:8] == [11, 11, 12, 13, 14, 14, 14, 17]
    warning = next(w for w in result.report.warnings if w.rule == "regressor_missing")
    assert "3 row(s) (lines 2, 7, 8);" in warning.message


def test_fill_does_not_leak_across_series(write_file):
    """A series' first missing price is back-filled from that series, not the previous one."""
    rows = [f"2024-01-{d:02d},S1,P1,1,5\n" for d in range(1, 31)]
    rows += [f"2024-01-{d:02d},S1,P2,1,{'' if d == 1 else 99}\n" for d in range(1, 31)]
    result = load_sales(
        write_file("sales.csv", "date,store,sku,qty,price\n" + "".join(rows)), HORIZON
    )
    assert result.frame is not None
    first_p2 = result.frame[result.frame["product_id"] == "P2"]["price"].iloc[0]
    assert first_p2 == 99


def test_mapped_non_numeric_regressor_is_error(write_file):
    """A column the mapping declares as a regressor must be numeric (regressor_numeric)."""
    text = _file(["1"] * 30, header="price,Feriado").replace(",0\n", ",x\n")
    report = validate_file(
        write_file("sales.csv", text), Contract(mapping={"Feriado": "holiday"}, horizon=7)
    )
    assert report.rules == ["regressor_numeric"]
    assert report.errors[0].examples[0] == {"line": 2, "column": "Feriado", "value": "x"}


def test_empty_extra_column_is_dropped(write_file):
    """A column with no values at all (e.g. a trailing delimiter) is dropped with a warning."""
    rows = "".join(f"2024-01-{d:02d};S1;P1;3;\n" for d in range(1, 31))
    result = load_sales(write_file("sales.csv", "date;store;sku;qty;\n" + rows), HORIZON)
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert list(result.frame.columns) == ["date", "store_id", "product_id", "sales"]
    assert [w.rule for w in result.report.warnings] == ["dropped_columns"]


def _extras(write_file, contract: Contract):
    """A file with price, promo, revenue (sales x price) and a planned discount column."""
    rows = "".join(
        f"2024-01-{d:02d},S1,P1,{d % 5},2.5,0,{d % 5 * 2.5},{d % 3}\n" for d in range(1, 31)
    )
    text = "date,store,sku,qty,price,promo,Revenue,Planned Discount\n" + rows
    return load_sales(write_file("sales.csv", text), contract)


def test_only_columns_known_in_advance_are_regressors(write_file):
    """price and promo are regressors; other numeric columns are reported ignored, and why."""
    result = _extras(write_file, HORIZON)
    assert result.report.ok, result.report.to_text()
    stats = result.report.stats
    assert stats["regressors"] == ["price", "promo"]
    assert stats["ignored_columns"] == ["revenue", "planned_discount"]
    warning = next(w for w in result.report.warnings if w.rule == "not_known_in_advance")
    assert "'Revenue'" in warning.message and "'Planned Discount'" in warning.message
    assert "--regressor NAME" in warning.message
    assert result.frame is not None and "revenue" in result.frame.columns  # kept, not used


def test_declared_regressor_becomes_one_by_its_file_name(write_file):
    """A column declared known in advance (by the file's own name) is a regressor too."""
    result = _extras(write_file, Contract(horizon=7, regressors=("planned discount",)))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["regressors"] == ["price", "promo", "planned_discount"]
    assert result.report.stats["ignored_columns"] == ["revenue"]


def test_declared_regressor_absent_from_the_file_is_warned(write_file):
    """Declaring a column the file lacks (a typo) is a regressor_absent warning naming it."""
    result = _extras(write_file, Contract(horizon=7, regressors=("holliday",)))
    assert result.report.ok
    warning = next(w for w in result.report.warnings if w.rule == "regressor_absent")
    assert "'holliday'" in warning.message


def test_declared_regressor_must_be_numeric(write_file):
    """A declared column with text in it is a regressor_numeric error, not silently dropped."""
    text = _file(["1"] * 30, header="price,Feriado").replace(",0\n", ",x\n")
    report = validate_file(
        write_file("sales.csv", text), Contract(horizon=7, regressors=("Feriado",))
    )
    assert report.rules == ["regressor_numeric"]


def test_key_columns_cannot_be_declared_regressors():
    """Declaring sales (or a key column) known in advance is refused at construction."""
    with pytest.raises(ValueError, match="not date, store_id, product_id, sales"):
        Contract(regressors=("sales",))
