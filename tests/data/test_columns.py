"""Column roles: aliases, the configured mapping, missing and clashing columns, extras."""

from __future__ import annotations

import pytest

from salesmesh.data import Contract, load_sales, validate_file


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (("data", "loja", "produto", "vendas"), ("date", "store_id", "product_id", "sales")),
        (("Day", "Shop", "SKU", "Qty"), ("date", "store_id", "product_id", "sales")),
        (
            ("  Fecha ", "Tienda", "Artigo", " Quantidade "),
            ("date", "store_id", "product_id", "sales"),
        ),
        (("ds", "location", "item_id", "y"), ("date", "store_id", "product_id", "sales")),
        (
            ("DATE", "Store ID", "Product-ID", "Units Sold"),
            ("date", "store_id", "product_id", "sales"),
        ),
    ],
)
def test_aliases_map_to_canonical_names(write_file, sales_text, header, expected):
    """Aliases match regardless of case, accents, spaces and punctuation."""
    result = load_sales(write_file("sales.csv", sales_text(header=header)))
    assert result.report.ok, result.report.to_text()
    assert list(result.report.stats["columns"].values()) == list(expected)
    assert result.frame is not None
    assert list(result.frame.columns) == ["date", "store_id", "product_id", "sales"]


def test_mapping_names_unusual_columns(write_file, sales_text):
    """Contract.mapping gives roles to names no alias knows, matched case/accent-insensitively."""
    text = sales_text(header=("Dia do Mês", "Unidade", "Cod Item", "Qtd Vendida"))
    mapping = {"dia do mes": "date", "Unidade": "store_id", "COD ITEM": "product_id"}
    mapping["Qtd Vendida"] = "sales"
    result = load_sales(write_file("sales.csv", text), Contract(mapping=mapping))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["columns"] == {
        "Dia do Mês": "date",
        "Unidade": "store_id",
        "Cod Item": "product_id",
        "Qtd Vendida": "sales",
    }


def test_mapping_wins_over_alias(write_file):
    """A mapped column loses its alias role: 'units' as pack_size leaves 'qtd' as the sales."""
    rows = "".join(f"2024-01-{d:02d},S1,P1,6,{d}\n" for d in range(1, 31))
    path = write_file("sales.csv", "date,store,item,units,qtd\n" + rows)
    result = load_sales(path, Contract(mapping={"units": "pack_size"}, horizon=7))
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert result.frame["sales"].tolist()[:3] == [1.0, 2.0, 3.0]
    assert result.frame["pack_size"].tolist()[:3] == [6.0, 6.0, 6.0]


def test_missing_date_column_lists_found_and_accepted(write_file):
    """Without a date column the error names the columns found and the accepted aliases."""
    report = validate_file(write_file("sales.csv", "when,store,sku,qty\n2024-01-01,S1,P1,3\n"))
    assert report.rules == ["required_columns"]
    message = report.errors[0].message
    assert "missing required column date" in message
    assert "'when', 'store', 'sku', 'qty'" in message
    assert "date: date, day, data, dia, fecha, ds, week, month" in message


def test_missing_sales_column_is_error(write_file):
    """Without a sales column the file is rejected with rule required_columns."""
    report = validate_file(
        write_file("sales.csv", "date,store,sku,revenue_eur\n2024-01-01,S1,P1,3\n")
    )
    assert report.rules == ["required_columns"]
    assert "missing required column sales" in report.errors[0].message


def test_wrong_delimiter_hints_at_delimiter(write_file):
    """A space-separated file shows up as one column and the message suggests the delimiter."""
    report = validate_file(write_file("sales.csv", "date store sales\n2024-01-01 S1 3\n"))
    assert report.rules == ["required_columns"]
    assert "is the delimiter one of" in report.errors[0].message


def test_two_columns_for_one_role_is_error(write_file):
    """'store' and 'loja' both meaning store_id is an error naming both."""
    text = "date,store,loja,sku,qty\n2024-01-01,S1,L1,P1,3\n"
    report = validate_file(write_file("sales.csv", text))
    assert report.rules == ["duplicate_columns"]
    assert "'store' and 'loja' both map to store_id" in report.errors[0].message


def test_without_store_column_all_rows_are_one_store(write_file, sales_text):
    """No store column: a single_store warning and store_id 'all' for every row."""
    text = sales_text(header=("date", "product", "sales"))
    text = "\n".join(line.replace(",S1,", ",", 1) for line in text.splitlines())
    result = load_sales(write_file("sales.csv", text))
    assert result.report.ok, result.report.to_text()
    assert [w.rule for w in result.report.warnings] == ["single_store"]
    assert result.frame is not None
    assert set(result.frame["store_id"]) == {"all"}
    assert set(result.frame["product_id"]) == {"P1", "P2"}


def test_without_product_column_all_rows_are_one_product(write_file, sales_text):
    """No product column: a single_product warning and product_id 'all'."""
    text = sales_text(header=("date", "store", "sales"), series=(("S1", ""),))
    text = "\n".join(line.replace(",S1,,", ",S1,", 1) for line in text.splitlines())
    result = load_sales(write_file("sales.csv", text))
    assert result.report.ok, result.report.to_text()
    assert [w.rule for w in result.report.warnings] == ["single_product"]
    assert result.frame is not None
    assert set(result.frame["product_id"]) == {"all"}


def test_extra_numeric_columns_are_kept_under_their_folded_name(write_file):
    """An unknown numeric column is kept as floats under its folded name; declared known in
    advance, it is a regressor."""
    rows = "".join(f"2024-01-{d:02d},S1,P1,{d},{20 + d / 10:.1f},x{d}\n" for d in range(1, 31))
    text = "date,store,sku,qty,Temperatura (°C),Comentário\n" + rows
    contract = Contract(horizon=7, regressors=("Temperatura (°C)",))
    result = load_sales(write_file("sales.csv", text), contract)
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["regressors"] == ["temperatura_c"]
    assert result.frame is not None
    assert result.frame["temperatura_c"].iloc[0] == 20.1
    assert str(result.frame["temperatura_c"].dtype) == "float64"
    dropped = [w for w in result.report.warnings if w.rule == "dropped_columns"]
    assert len(dropped) == 1
    assert "'Comentário' (not numeric, e.g. line 2: 'x1')" in dropped[0].message


def test_mapping_to_unknown_column_warns(write_file, sales_text):
    """A mapping entry naming a column the file lacks is reported as mapping_unused."""
    report = validate_file(
        write_file("sales.csv", sales_text()), Contract(mapping={"Qtd": "sales"})
    )
    assert report.ok
    assert [w.rule for w in report.warnings] == ["mapping_unused"]
    assert "'Qtd'" in report.warnings[0].message
