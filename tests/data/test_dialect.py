"""Delimiters, decimal commas, quoting and unparseable CSV."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from salesmesh.data import Contract, load_sales, validate_file

_HEAD = (
    "Data;Loja;Produto;Vendas;Preço;Promoção\r\n"
    "01/03/2024;Loja Centro;Arroz 5kg;12,5;1.234,56;sim\r\n"
    "02/03/2024;Loja Centro;Arroz 5kg;3;1.234,56;não\r\n"
    "03/03/2024;Loja Centro;Arroz 5kg;0,25;19,9;Não\r\n"
)
# 60 days in all, so a 28-day horizon has the history it needs.
PORTUGUESE_EXPORT = _HEAD + "".join(
    f"{(date(2024, 3, 4) + timedelta(days=i)):%d/%m/%Y};Loja Centro;Arroz 5kg;1;19,9;não\r\n"
    for i in range(57)
)


def test_portuguese_semicolon_decimal_comma_latin1_export(write_file):
    """A pt-BR export (Latin-1, ';', decimal comma, dd/mm/yyyy, sim/não) is read correctly."""
    path = write_file("vendas.csv", PORTUGUESE_EXPORT.encode("latin-1"))
    result = load_sales(path)
    assert result.report.ok, result.report.to_text()
    stats = result.report.stats
    assert (stats["encoding"], stats["delimiter"], stats["decimal"]) == ("cp1252", ";", ",")
    assert stats["date_format"] == "%d/%m/%Y"
    assert stats["columns"] == {
        "Data": "date",
        "Loja": "store_id",
        "Produto": "product_id",
        "Vendas": "sales",
        "Preço": "price",
        "Promoção": "promo",
    }


def test_portuguese_export_values(write_file):
    """Decimal commas and thousands dots become floats; sim/não become 1/0."""
    path = write_file("vendas.csv", PORTUGUESE_EXPORT.encode("latin-1"))
    result = load_sales(path)
    assert result.frame is not None
    head = result.frame.head(3)
    assert head["sales"].tolist() == [12.5, 3.0, 0.25]
    assert head["price"].tolist() == [1234.56, 1234.56, 19.9]
    assert head["promo"].tolist() == [1.0, 0.0, 0.0]
    assert head["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-03-01",
        "2024-03-02",
        "2024-03-03",
    ]


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_detected(write_file, sales_text, sep):
    """Each supported delimiter is detected and recorded."""
    report = validate_file(write_file("sales.csv", sales_text(sep=sep)))
    assert report.ok, report.to_text()
    assert report.stats["delimiter"] == sep
    assert report.stats["decimal"] == "."


def test_semicolon_with_dot_decimals_keeps_dot(write_file):
    """A ';' file whose numbers use '.' decimals is not mistaken for decimal comma."""
    rows = "".join(f"2024-01-{d:02d};S1;P1;{d}.5;2.25\n" for d in range(1, 31))
    result = load_sales(
        write_file("s.csv", "date;store;item;qty;price\n" + rows), Contract(horizon=7)
    )
    assert result.report.stats["decimal"] == "."
    assert result.frame is not None
    assert result.frame["sales"].iloc[0] == 1.5
    assert result.frame["price"].iloc[0] == 2.25


def test_quoted_fields_hold_delimiters(write_file):
    """Quoted ids may contain the delimiter and quotes; quoted thousands use ','."""
    rows = "".join(
        f'2024-01-{d:02d},"Loja, Centro","Copo ""grande""","1,234.5"\n' for d in range(1, 31)
    )
    result = load_sales(write_file("s.csv", "date,store,sku,qty\n" + rows), Contract(horizon=7))
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert result.frame["store_id"].iloc[0] == "Loja, Centro"
    assert result.frame["product_id"].iloc[0] == 'Copo "grande"'
    assert result.frame["sales"].iloc[0] == 1234.5


def test_row_with_extra_field_is_parse_error_with_line(write_file, sales_text):
    """A row with more fields than the header is a parse finding naming its file line."""
    lines = sales_text().splitlines()
    lines[4] += ",oops"
    report = validate_file(write_file("sales.csv", "\n".join(lines) + "\n"))
    assert report.rules == ["parse"]
    assert "line 5" in report.errors[0].message
    assert report.errors[0].examples == [{"line": 5}]


def test_unterminated_quote_is_parse_error(write_file, sales_text):
    """A quote opened and never closed is reported as such, with where it starts."""
    lines = sales_text().splitlines()
    lines[7] = lines[7].replace("S1", '"S1')
    report = validate_file(write_file("sales.csv", "\n".join(lines) + "\n"))
    assert report.rules == ["parse"]
    assert "never closed" in report.errors[0].message
    assert "line 8" in report.errors[0].message


def test_blank_lines_keep_line_numbers_right(write_file, sales_text):
    """Blank lines are skipped but later findings still cite the real file line."""
    lines = sales_text().splitlines()
    lines[10] = lines[10].rsplit(",", 1)[0] + ",abc"
    lines.insert(3, "")
    lines.insert(3, "  ")
    report = validate_file(write_file("sales.csv", "\n".join(lines) + "\n"))
    assert report.rules == ["sales_numeric"]
    assert report.errors[0].examples == [{"line": 13, "column": "sales", "value": "abc"}]
