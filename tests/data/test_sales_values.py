"""Sales values: numeric, finite, non-negative and present, with lines and values cited."""

from __future__ import annotations

from salesmesh.data import Contract, load_sales, validate_file


def _with_sales(sales_text, replacements: dict[int, str]) -> str:
    """The default file with the sales cell of some 0-based line indexes replaced."""
    lines = sales_text().splitlines()
    for index, value in replacements.items():
        lines[index] = lines[index].rsplit(",", 1)[0] + "," + value
    return "\n".join(lines) + "\n"


def test_non_numeric_sales_cite_lines_and_values(write_file, sales_text):
    """Text in sales is a sales_numeric error listing file lines and values."""
    text = _with_sales(sales_text, {3: "abc", 50: "12kg"})
    report = validate_file(write_file("sales.csv", text))
    assert report.rules == ["sales_numeric"]
    assert report.errors[0].examples == [
        {"line": 4, "column": "sales", "value": "abc"},
        {"line": 51, "column": "sales", "value": "12kg"},
    ]
    assert "line 4: 'abc', line 51: '12kg'" in report.errors[0].message


def test_examples_are_capped_at_five(write_file, sales_text):
    """However many rows are bad, a finding carries five examples and the true count."""
    text = _with_sales(sales_text, {index: "x" for index in range(1, 40)})
    report = validate_file(write_file("sales.csv", text))
    assert len(report.errors[0].examples) == 5
    assert "39 row(s)" in report.errors[0].message


def test_non_finite_sales_are_rejected(write_file, sales_text):
    """'inf' and 'NaN' are numbers to Python but not sales: rule sales_finite."""
    report = validate_file(write_file("sales.csv", _with_sales(sales_text, {2: "inf", 5: "NaN"})))
    assert report.rules == ["sales_finite"]
    assert [e["value"] for e in report.errors[0].examples] == ["inf", "NaN"]


def test_negative_sales_are_rejected_as_returns(write_file, sales_text):
    """Negative sales are an error that says returns are not sales."""
    report = validate_file(write_file("sales.csv", _with_sales(sales_text, {6: "-3"})))
    assert report.rules == ["sales_negative"]
    assert report.errors[0].examples == [{"line": 7, "column": "sales", "value": "-3"}]
    assert "returns are not sales" in report.errors[0].message


def test_missing_sales_cells_are_errors(write_file, sales_text):
    """Empty and 'NA' sales cells are sales_missing errors naming the lines."""
    report = validate_file(write_file("sales.csv", _with_sales(sales_text, {2: "", 9: "NA"})))
    assert report.rules == ["sales_missing"]
    assert [e["line"] for e in report.errors[0].examples] == [3, 10]
    assert "2 row(s)" in report.errors[0].message


def test_all_sales_problems_reported_together(write_file, sales_text):
    """One pass reports every broken sales rule, not just the first."""
    text = _with_sales(sales_text, {2: "", 3: "abc", 4: "-1", 5: "inf"})
    report = validate_file(write_file("sales.csv", text))
    assert sorted(report.rules) == [
        "sales_finite",
        "sales_missing",
        "sales_negative",
        "sales_numeric",
    ]


def test_decimal_comma_sales(write_file):
    """With ';' and decimal commas, '2,5' and '1.234,5' are 2.5 and 1234.5."""
    rows = "".join(
        f"2024-01-{d:02d};S1;P1;{'1.234,5' if d == 2 else '2,5'}\n" for d in range(1, 31)
    )
    result = load_sales(write_file("sales.csv", "date;store;sku;qty\n" + rows), Contract(horizon=7))
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert result.frame["sales"].tolist()[:2] == [2.5, 1234.5]


def test_whitespace_around_numbers_is_ignored(write_file, sales_text):
    """Padded cells such as ' 7 ' are read as 7."""
    result = load_sales(write_file("sales.csv", _with_sales(sales_text, {1: " 7 "})))
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert result.frame["sales"].iloc[0] == 7.0
