"""File type sniffing: gzip is unwrapped, other formats are named, empty files are refused."""

from __future__ import annotations

import gzip
import io
import random
import zipfile

import pytest

from salesmesh.data import Contract, load_sales, validate_file


def test_gzip_file_is_decompressed_and_loaded(write_file, sales_text):
    """A .csv.gz is decompressed and validated like the plain CSV inside it."""
    path = write_file("sales.csv.gz", gzip.compress(sales_text().encode()))
    result = load_sales(path)
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["compression"] == "gzip"
    assert result.frame is not None
    assert len(result.frame) == 120


def test_gzip_detected_by_magic_without_suffix(write_file, sales_text):
    """Gzip content is recognised by its magic bytes even when the name says .csv."""
    path = write_file("sales.csv", gzip.compress(sales_text().encode()))
    report = validate_file(path)
    assert report.ok, report.to_text()
    assert report.stats["compression"] == "gzip"


def test_gz_suffix_on_plain_text_is_read_as_text(write_file, sales_text):
    """A .gz name over plain bytes (GCS decompressive transcoding) is read as plain CSV."""
    report = validate_file(write_file("sales.csv.gz", sales_text()))
    assert report.ok, report.to_text()
    assert report.stats["compression"] is None


def test_gzip_bomb_stops_at_decompressed_limit(write_file):
    """Decompression stops with size_limit once output passes max_decompressed_bytes."""
    bomb = gzip.compress(b"date,store_id,product_id,sales\n" + b"0" * 20_000_000)
    report = validate_file(write_file("bomb.csv.gz", bomb), Contract(max_decompressed_bytes=10**6))
    assert report.rules == ["size_limit"]
    assert "1,000,000" in report.errors[0].message
    assert "max_decompressed_bytes" in report.errors[0].message


def test_truncated_gzip_is_file_type_error(write_file, sales_text):
    """A gzip upload cut short is reported as truncated, not as a crash."""
    data = gzip.compress(sales_text(days=400).encode())
    report = validate_file(write_file("cut.csv.gz", data[: len(data) // 2]))
    assert report.rules == ["file_type"]
    assert "truncated" in report.errors[0].message


def test_concatenated_gzip_members_are_all_read(write_file, sales_text):
    """Two gzip members back to back decompress to their concatenation."""
    text = sales_text()
    head, tail = text[: len(text) // 2], text[len(text) // 2 :]
    path = write_file("two.csv.gz", gzip.compress(head.encode()) + gzip.compress(tail.encode()))
    assert load_sales(path).report.stats["rows"] == 120


def _xlsx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return buffer.getvalue()


def test_xlsx_is_refused_with_export_hint(write_file):
    """An Excel workbook is named as such and the message asks for a CSV export."""
    report = validate_file(write_file("sales.csv", _xlsx_bytes()))
    assert report.rules == ["file_type"]
    assert "Excel workbook (.xlsx); export it as CSV" in report.errors[0].message


def test_gzipped_xlsx_is_sniffed_after_decompression(write_file):
    """Content is sniffed again after gunzip, so a gzipped workbook is still named."""
    report = validate_file(write_file("sales.csv.gz", gzip.compress(_xlsx_bytes())))
    assert report.rules == ["file_type"]
    assert "Excel workbook" in report.errors[0].message


def test_zip_of_csv_is_named_with_its_members(write_file, sales_text):
    """A ZIP archive holding a CSV is refused and the message lists what is inside."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("vendas.csv", sales_text())
    report = validate_file(write_file("sales.zip", buffer.getvalue()))
    assert report.rules == ["file_type"]
    assert "ZIP archive (vendas.csv)" in report.errors[0].message


def test_xls_is_refused(write_file):
    """An Excel 97-2003 file (OLE2 magic) is named as .xls."""
    data = bytes.fromhex("d0cf11e0a1b11ae1") + b"\x00" * 504
    report = validate_file(write_file("sales.xls", data))
    assert report.rules == ["file_type"]
    assert "Excel 97-2003" in report.errors[0].message


@pytest.mark.parametrize(
    "content",
    [
        "\ufeff  <!DOCTYPE html><html><body><table><tr><td>date</td></tr></table></body></html>",
        "\n<HTML><table><tr><td>1</td></tr></table></HTML>",
        "<table><tr><th>date</th><th>sales</th></tr></table>",
    ],
)
def test_html_is_refused(write_file, content):
    """HTML (after whitespace or a BOM, any case) is refused as HTML, not parsed as CSV."""
    report = validate_file(write_file("sales.csv", content))
    assert report.rules == ["file_type"]
    assert "HTML" in report.errors[0].message


@pytest.mark.parametrize("content", ['{"date": "2024-01-01", "sales": 3}', ' [{"sales": 1}]'])
def test_json_is_refused(write_file, content):
    """A JSON document is named as JSON."""
    report = validate_file(write_file("sales.csv", content))
    assert report.rules == ["file_type"]
    assert "JSON" in report.errors[0].message


def test_parquet_is_refused(write_file):
    """A Parquet file is recognised by its PAR1 magic, whatever it is named."""
    # Parquet framing: magic, column chunks, footer metadata, its 4-byte length, magic again.
    # Built by hand so no Parquet writer (pyarrow) is needed to exercise the sniffer.
    footer = b"\x15\x00\x15\x1c\x2c\x15\x02\x15\x00\x15\x06\x15\x06\x00"
    body = b"\x15\x04\x15\x18\x15\x18\x4c\x15\x02\x15\x00\x12\x00\x00" + b"2024-01-01"
    raw = b"PAR1" + body + footer + len(footer).to_bytes(4, "little") + b"PAR1"
    report = validate_file(write_file("sales.csv", raw))
    assert report.rules == ["file_type"]
    assert "Parquet" in report.errors[0].message


def test_pdf_is_refused(write_file):
    """A PDF is named as a PDF document."""
    report = validate_file(write_file("sales.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"))
    assert report.rules == ["file_type"]
    assert "PDF" in report.errors[0].message


def test_binary_noise_is_refused(write_file):
    """Random bytes with NULs are refused as binary."""
    report = validate_file(write_file("sales.csv", b"\x00\x01" + random.Random(7).randbytes(4096)))
    assert report.rules == ["file_type"]
    assert "binary" in report.errors[0].message


@pytest.mark.parametrize("content", [b"", b"   \r\n\n", gzip.compress(b"", mtime=0)])
def test_empty_file_is_refused(write_file, content):
    """A file without any content is refused with rule empty."""
    report = validate_file(write_file("sales.csv", content))
    assert report.rules == ["empty"]


def test_header_only_is_refused(write_file):
    """A header with no data rows is refused with rule empty, naming the header line."""
    report = validate_file(write_file("sales.csv", "date,store_id,product_id,sales\r\n\r\n"))
    assert report.rules == ["empty"]
    assert "no data rows" in report.errors[0].message


def test_nul_byte_past_the_sniffed_head_is_refused_with_its_line(write_file, sales_text):
    """A NUL spliced into text beyond the first 8 KiB is refused, not read as a short value."""
    lines = sales_text(days=1000).splitlines(keepends=True)
    assert sum(map(len, lines[:900])) > 8192  # the NUL lies past the sniffed head
    lines[900] = lines[900].replace(",", ",\x00", 1)
    report = validate_file(write_file("nul.csv", "".join(lines)))
    assert report.rules == ["file_type"]
    assert "line 901" in report.errors[0].message


def test_surplus_fields_in_the_first_data_row_are_a_parse_error(write_file):
    """An unquoted thousands separator in the first row is refused, not silently truncated."""
    rows = "".join(f"2024-01-{d:02d},S1,P1,5\n" for d in range(2, 31))
    report = validate_file(
        write_file("thousands.csv", f"date,store,item,qty\n2024-01-01,S1,P1,1,234\n{rows}")
    )
    assert report.rules == ["parse"]
    assert report.errors[0].examples == [{"line": 2}]
