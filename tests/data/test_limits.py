"""Limits: size, rows and columns are refused early, with the limit and how to raise it."""

from __future__ import annotations

import gzip

from salesmesh.data import Contract, load_sales, validate_file


def test_oversized_file_is_refused_before_reading(write_file, sales_text):
    """Over max_bytes the file is refused from its stat: no md5, because nothing was read."""
    path = write_file("sales.csv", sales_text())
    size = path.stat().st_size
    result = load_sales(path, Contract(max_bytes=size - 1))
    assert result.report.rules == ["size_limit"]
    assert f"{size:,} bytes" in result.report.errors[0].message
    assert "Contract.max_bytes" in result.report.errors[0].message
    assert result.source.md5 is None
    assert result.source.size == size


def test_limit_applies_to_compressed_size(write_file, sales_text):
    """max_bytes counts the stored (compressed) bytes, so a small .gz of a big file passes."""
    data = gzip.compress(sales_text().encode())
    text_size = len(sales_text().encode())
    report = validate_file(write_file("sales.csv.gz", data), Contract(max_bytes=text_size // 2))
    assert len(data) < text_size // 2
    assert report.ok, report.to_text()


def test_too_many_rows_is_refused(write_file, sales_text):
    """More data rows than max_rows is rule row_limit naming both numbers."""
    report = validate_file(write_file("sales.csv", sales_text()), Contract(max_rows=100))
    assert report.rules == ["row_limit"]
    assert "120" in report.errors[0].message
    assert "limit of 100" in report.errors[0].message
    assert "Contract.max_rows" in report.errors[0].message


def test_too_many_columns_is_refused(write_file):
    """A header wider than max_columns is rule column_limit."""
    header = ",".join(["date", "store", "sku", "qty"] + [f"x{i}" for i in range(10)])
    report = validate_file(write_file("sales.csv", header + "\n"), Contract(max_columns=8))
    assert report.rules == ["column_limit"]
    assert "14 columns" in report.errors[0].message
    assert "Contract.max_columns" in report.errors[0].message
