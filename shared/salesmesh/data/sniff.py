"""What kind of bytes these are: gzip is unwrapped, non-CSV formats are named, text is decoded.

The result is always UTF-8 without a byte-order mark, so the CSV parser sees one encoding
whatever the exporter wrote (UTF-8 with or without BOM, UTF-16 "Unicode text", cp1252/Latin-1).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

from salesmesh.data.report import ContractViolationError

GZIP_MAGIC = b"\x1f\x8b"
SNIFF_BYTES = 8192
_CHUNK = 1 << 20
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # expect a gzip header and trailer, not raw zlib

# Magic numbers of formats people upload instead of CSV, with what to tell them.
_BINARY_FORMATS = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls); export it as CSV"),
    (b"PAR1", "a Parquet file; export it as CSV"),
    (b"%PDF", "a PDF document; export the data as CSV"),
)
_TEXT_FORMATS = (
    ("<!doctype html", "an HTML page, not CSV; export the data as CSV"),
    ("<html", "an HTML page, not CSV; export the data as CSV"),
    ("<table", "an HTML table, not CSV; export the data as CSV"),
    ("<?xml", "an XML document (perhaps an Excel XML spreadsheet); export it as CSV"),
)
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# Control bytes that have no place in a text file; tab, newlines and form feed are fine.
_CONTROL = bytes(set(range(32)) - {9, 10, 12, 13}) + b"\x7f"


@dataclass(frozen=True)
class Decoded:
    """CSV text as UTF-8 bytes, with how it arrived."""

    data: bytes
    encoding: str
    compression: str | None


def decode(raw: bytes, name: str, max_decompressed_bytes: int) -> Decoded:
    """Unwrap gzip, reject non-CSV formats and decode to UTF-8; raises ContractViolationError."""
    compression = None
    if raw.startswith(GZIP_MAGIC):
        raw = gunzip(raw, max_decompressed_bytes)
        compression = "gzip"
        if raw.startswith(GZIP_MAGIC):
            raise ContractViolationError(
                "file_type", f"{name} is gzip inside gzip; compress it once"
            )
    if not raw or raw.isspace():
        raise ContractViolationError("empty", f"{name} is empty: no header and no rows")
    _reject_binary_formats(raw, name)
    data, encoding = _to_utf8(raw, name)
    _reject_text_formats(data, name)
    return Decoded(data, encoding, compression)


def gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress gzip (all members) in chunks, stopping as soon as output passes `limit`."""
    out = bytearray()
    inflater = zlib.decompressobj(_GZIP_WBITS)
    view = memoryview(raw)
    pos = 0
    try:
        while True:
            if inflater.unconsumed_tail:
                piece: bytes | memoryview = inflater.unconsumed_tail
            elif pos < len(view):
                piece = view[pos : pos + _CHUNK]
                pos += len(piece)
            else:
                break
            # max_length bounds memory: a bomb never expands more than one chunk past the limit.
            out += inflater.decompress(piece, _CHUNK)
            _check_size(len(out), limit)
            if inflater.eof:
                # Concatenated members are legal gzip (appended exports); NUL padding is not data.
                rest = (inflater.unused_data + bytes(view[pos:])).lstrip(b"\x00")
                if not rest:
                    return bytes(out)
                view, pos = memoryview(rest), 0
                inflater = zlib.decompressobj(_GZIP_WBITS)
        out += inflater.flush()
    except zlib.error as exc:
        raise ContractViolationError("file_type", f"corrupt gzip stream: {exc}") from exc
    _check_size(len(out), limit)
    if not inflater.eof:
        raise ContractViolationError("file_type", "gzip stream is truncated (incomplete upload?)")
    return bytes(out)


def _check_size(size: int, limit: int) -> None:
    if size > limit:
        raise ContractViolationError(
            "size_limit",
            f"decompressed content exceeds {limit:,} bytes "
            "(raise Contract.max_decompressed_bytes to accept it)",
        )


def _reject_binary_formats(raw: bytes, name: str) -> None:
    for magic, what in _BINARY_FORMATS:
        if raw.startswith(magic):
            raise ContractViolationError("file_type", f"{name} is {what}")
    if raw.startswith(b"PK\x03\x04"):
        raise ContractViolationError("file_type", f"{name} is {_describe_zip(raw)}")


def _describe_zip(raw: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        names = []
    if not names or any(entry.startswith("xl/") for entry in names):
        return "an Excel workbook (.xlsx); export it as CSV"
    if any(entry.endswith(".ods") or entry == "content.xml" for entry in names):
        return "an OpenDocument spreadsheet (.ods); export it as CSV"
    shown = ", ".join(names[:3])
    return f"a ZIP archive ({shown}); upload the CSV itself or gzip it (.csv.gz)"


def _to_utf8(raw: bytes, name: str) -> tuple[bytes, str]:
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return _decode_strict(raw[len(bom) :], encoding, name), encoding
    utf16 = _utf16_without_bom(raw[:SNIFF_BYTES])
    if utf16:
        return _decode_strict(raw, utf16, name), utf16
    head = raw[:SNIFF_BYTES]
    control = sum(head.count(byte.to_bytes(1, "big")) for byte in _CONTROL)
    if b"\x00" in head or control > len(head) // 10:
        raise ContractViolationError(
            "file_type", f"{name} is a binary file, not CSV text (control bytes in the first 8 KiB)"
        )
    nul = raw.find(b"\x00")  # past the sniffed head: text with binary spliced in
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise ContractViolationError(
            "file_type",
            f"{name} holds a NUL byte at line {line}: binary data inside text, not CSV",
            [{"line": line}],
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return raw, "utf-8"
    # Bytes that are not UTF-8 are almost always a Windows/Latin-1 export; cp1252 is its
    # superset except five undefined bytes, for which plain Latin-1 decodes everything.
    for encoding in ("cp1252", "latin-1"):
        try:
            return raw.decode(encoding).encode("utf-8"), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _utf16_without_bom(head: bytes) -> str | None:
    # ASCII text in UTF-16 has a NUL in every other byte; which half tells the byte order.
    pairs = len(head) // 2
    if pairs < 4:
        return None
    even_nul = head[0 : 2 * pairs : 2].count(0)
    odd_nul = head[1 : 2 * pairs : 2].count(0)
    if odd_nul > 0.8 * pairs and even_nul == 0:
        return "utf-16-le"
    if even_nul > 0.8 * pairs and odd_nul == 0:
        return "utf-16-be"
    return None


def _decode_strict(raw: bytes, encoding: str, name: str) -> bytes:
    try:
        text = raw.decode(encoding.removesuffix("-sig"))
        # Already UTF-8: validating was the point, re-encoding 100 MB would be waste.
        return raw if encoding == "utf-8-sig" else text.encode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContractViolationError(
            "encoding",
            f"{name} is declared {encoding} but has bytes that are not {encoding} near line "
            f"{line} (byte offset {exc.start}): {raw[exc.start : exc.start + 8]!r}",
            [{"line": line, "value": repr(raw[exc.start : exc.start + 8])}],
        ) from exc


def _reject_text_formats(data: bytes, name: str) -> None:
    head = data[:512].lstrip().lower()
    for prefix, what in _TEXT_FORMATS:
        if head.startswith(prefix.encode()):
            raise ContractViolationError("file_type", f"{name} is {what}")
    if head[:1] in (b"{", b"["):
        raise ContractViolationError(
            "file_type", f"{name} is JSON, not CSV; export the data as CSV"
        )
