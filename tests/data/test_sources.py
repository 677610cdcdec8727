"""Reading sources: local paths and gs:// objects on the real GCS emulator, with identity."""

from __future__ import annotations

import base64
import gzip
import hashlib

import pytest

from salesmesh.data import Contract, load_sales, read_source
from salesmesh.errors import SourceError


def test_local_source_info_has_size_and_gcs_style_md5(write_file, sales_text):
    """A local read reports the size and the md5 base64-encoded like GCS md5Hash."""
    data = sales_text().encode()
    path = write_file("sales.csv", data)
    read, info = read_source(path)
    assert read == data
    assert info.size == len(data)
    assert info.md5 == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert (info.uri, info.generation) == (str(path), None)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("/nonexistent/sales.csv", "no such file"),
        ("s3://bucket/sales.csv", "unsupported URI scheme 's3'"),
        ("gs://bucket-only", "expected gs://BUCKET/OBJECT"),
        ("gs://bucket/folder/", "expected gs://BUCKET/OBJECT"),
    ],
)
def test_unreadable_local_or_bad_uri_raises_source_error(uri, fragment):
    """Missing files and malformed URIs raise SourceError with a specific message."""
    with pytest.raises(SourceError, match=fragment):
        load_sales(uri)


def test_directory_is_source_error(tmp_path):
    """A directory is not a sales file."""
    with pytest.raises(SourceError, match="is a directory"):
        load_sales(tmp_path)


def test_gcs_read_reports_generation_and_md5(bucket, sales_text):
    """gs:// reads return the object bytes with its generation and md5Hash from metadata."""
    data = sales_text().encode()
    blob = bucket.blob("uploads/sales.csv")
    blob.upload_from_string(data, content_type="text/csv")
    blob.reload()
    read, info = read_source(f"gs://{bucket.name}/uploads/sales.csv")
    assert read == data
    assert info.generation == str(blob.generation)
    assert info.md5 == blob.md5_hash == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert (info.size, info.content_type) == (len(data), "text/csv")


def test_gcs_gzip_object_loads(bucket, sales_text):
    """A .csv.gz object is downloaded compressed and validated after decompression."""
    bucket.blob("sales.csv.gz").upload_from_string(
        gzip.compress(sales_text().encode()), content_type="application/gzip"
    )
    result = load_sales(f"gs://{bucket.name}/sales.csv.gz")
    assert result.report.ok, result.report.to_text()
    assert result.report.stats["compression"] == "gzip"
    assert result.frame is not None
    assert len(result.frame) == 120


def test_gcs_missing_object_names_existing_bucket(bucket):
    """A missing object raises SourceError saying the bucket itself exists."""
    with pytest.raises(SourceError, match=rf"object gs://{bucket.name}/x.csv not found \(bucket"):
        read_source(f"gs://{bucket.name}/x.csv")
    with pytest.raises(SourceError, match="exists"):
        read_source(f"gs://{bucket.name}/x.csv")


def test_gcs_missing_bucket_is_source_error(bucket):
    """A missing bucket raises SourceError saying the bucket is not found."""
    with pytest.raises(SourceError, match="bucket no-such-bucket-xyz not found"):
        read_source("gs://no-such-bucket-xyz/sales.csv")


def test_gcs_oversized_object_is_refused_from_metadata(bucket, sales_text):
    """An object over max_bytes is a size_limit finding carrying the blob's identity."""
    bucket.blob("big.csv").upload_from_string(sales_text().encode())
    result = load_sales(f"gs://{bucket.name}/big.csv", Contract(max_bytes=100))
    assert result.report.rules == ["size_limit"]
    assert "over the limit of 100 bytes" in result.report.errors[0].message
    assert result.source.generation is not None
    assert result.frame is None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("gs://b/x.csv#1700000000000001", ("gs://b/x.csv", 1700000000000001)),
        ("gs://b/x.csv", ("gs://b/x.csv", None)),
        ("gs://b/odd#name.csv", ("gs://b/odd#name.csv", None)),
    ],
)
def test_a_generation_suffix_is_split_from_the_uri(uri, expected):
    """gsutil's '#generation' names one version; other '#' stay part of the name."""
    from salesmesh.data.source import split_generation

    assert split_generation(uri) == expected


def test_gcs_read_of_a_pinned_generation_reports_that_generation(bucket, sales_text):
    """Reading 'gs://b/x.csv#GEN' returns that version and records its generation."""
    blob = bucket.blob("pinned.csv")
    blob.upload_from_string(sales_text())
    blob.reload()
    data, info = read_source(f"gs://{bucket.name}/pinned.csv#{blob.generation}")
    assert data == sales_text().encode()
    assert info.generation == str(blob.generation)
