"""Encodings and line endings: UTF-8 with or without BOM, UTF-16, cp1252/Latin-1, CRLF, CR."""

from __future__ import annotations

from salesmesh.data import load_sales, validate_file


def test_utf8_bom_is_stripped_from_first_header(write_file, sales_text):
    """A UTF-8 BOM does not glue itself to the first column name."""
    path = write_file("sales.csv", b"\xef\xbb\xbf" + sales_text().encode())
    result = load_sales(path)
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["encoding"] == "utf-8-sig"
    assert result.report.stats["columns"]["date"] == "date"


def test_utf8_without_bom_keeps_accented_ids(write_file, sales_text):
    """UTF-8 without BOM is detected and accented ids survive intact."""
    text = sales_text(series=(("São Paulo", "Café"),))
    result = load_sales(write_file("sales.csv", text.encode("utf-8")))
    assert result.report.stats["encoding"] == "utf-8"
    assert result.frame is not None
    assert set(result.frame["store_id"]) == {"São Paulo"}
    assert set(result.frame["product_id"]) == {"Café"}


def test_utf16_tab_export_from_excel(write_file, sales_text):
    """Excel 'Unicode text' (UTF-16 LE with BOM, tab-separated, CRLF) loads."""
    text = sales_text(sep="\t", newline="\r\n", series=(("Loja Ç", "P1"),))
    path = write_file("sales.txt", text.encode("utf-16"))  # BOM + native (LE) order
    result = load_sales(path)
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["encoding"] == "utf-16-le"
    assert result.report.stats["delimiter"] == "\t"
    assert result.frame is not None
    assert set(result.frame["store_id"]) == {"Loja Ç"}
    assert len(result.frame) == 60


def test_utf16_big_endian_with_bom(write_file, sales_text):
    """UTF-16 BE with its BOM is decoded as such."""
    path = write_file("sales.csv", b"\xfe\xff" + sales_text().encode("utf-16-be"))
    report = validate_file(path)
    assert report.ok, report.to_text()
    assert report.stats["encoding"] == "utf-16-be"


def test_utf16_without_bom_is_recognised(write_file, sales_text):
    """UTF-16 LE without BOM is recognised from its NUL pattern rather than called binary."""
    report = validate_file(write_file("sales.csv", sales_text().encode("utf-16-le")))
    assert report.ok, report.to_text()
    assert report.stats["encoding"] == "utf-16-le"


def test_broken_utf16_is_encoding_error(write_file, sales_text):
    """A UTF-16 file with an unpaired surrogate is an encoding error naming where."""
    data = "\ufeff".encode("utf-16-le") + sales_text().encode("utf-16-le") + b"\x00\xd8"
    report = validate_file(write_file("sales.csv", data))
    assert report.rules == ["encoding"]
    assert "utf-16-le" in report.errors[0].message


def test_latin1_export_is_decoded_as_cp1252(write_file, sales_text):
    """Bytes that are not UTF-8 are read as cp1252, so 'São' written in Latin-1 survives."""
    text = sales_text(series=(("São Paulo", "Pão"),))
    result = load_sales(write_file("sales.csv", text.encode("latin-1")))
    assert result.report.stats["encoding"] == "cp1252"
    assert result.frame is not None
    assert set(result.frame["store_id"]) == {"São Paulo"}


def test_crlf_line_endings(write_file, sales_text):
    """CRLF files load with no stray carriage returns in the last column."""
    result = load_sales(write_file("sales.csv", sales_text(newline="\r\n")))
    assert result.report.ok, result.report.to_text()
    assert result.frame is not None
    assert result.frame["sales"].tolist()[:3] == [0.0, 1.0, 2.0]


def test_mixed_line_endings(write_file, sales_text):
    """LF, CRLF and lone CR endings mixed in one file still give one row per line."""
    lines = sales_text().splitlines()
    endings = ["\r\n", "\n", "\r"]
    text = "".join(line + endings[i % 3] for i, line in enumerate(lines))
    result = load_sales(write_file("sales.csv", text))
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["rows"] == 120
