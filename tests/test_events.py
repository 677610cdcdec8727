"""CloudEvents to StorageObject, run and correlation ids, and which uploads are data files."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import CloudEvent, from_http

from salesmesh.errors import BadEventError, MeshError
from salesmesh.events import (
    RUN_ID_PATTERN,
    StorageObject,
    correlation_id,
    is_data_file,
    run_id,
)

EVENTS = Path(__file__).parent / "events"
FINALIZED = "google.cloud.storage.object.v1.finalized"
GENERATION = "1793697267318412"


def load_event(name: str) -> CloudEvent:
    """A fixture parsed the way functions-framework parses a binary-mode request."""
    fixture = json.loads((EVENTS / name).read_text())
    return from_http(fixture["headers"], json.dumps(fixture["data"]))


def fixture_data(name: str = "storage_finalized.json") -> dict[str, Any]:
    """The StorageObjectData body of a fixture, as a fresh dict a test may change."""
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())["data"]
    return data


def finalized(data: Any) -> CloudEvent:
    """A finalize CloudEvent carrying ``data``."""
    attributes = {"type": FINALIZED, "source": "//storage.googleapis.com/projects/_/buckets/b"}
    return CloudEvent(attributes, data)


class AttributesAndData:
    """The least an event may be: attributes by key and a ``.data`` attribute."""

    def __init__(self, attributes: dict[str, str], data: Any) -> None:
        self._attributes = attributes
        self.data = data

    def __getitem__(self, key: str) -> str:
        return self._attributes[key]


# -- parsing ------------------------------------------------------------------------------


def test_real_shaped_finalize_event_gives_every_field():
    """Every StorageObjectData field we keep is read from the Eventarc-shaped fixture."""
    upload = StorageObject.from_cloud_event(load_event("storage_finalized.json"))
    assert upload == StorageObject(
        bucket="salesmesh-data",
        name="uploads/sample_sales.csv",
        generation=GENERATION,
        metageneration="1",
        content_type="text/csv",
        size=1076608,
        md5_hash="CVsJ5OGrtTtvI/2jwK7oiw==",
        crc32c="bYWX3Q==",
        time_created="2026-11-03T09:14:27.318Z",
        updated="2026-11-03T09:14:27.318Z",
    )


def test_uri_and_identity():
    """uri is gs://bucket/name and identity is (bucket, name, generation)."""
    upload = StorageObject.from_data(fixture_data())
    assert upload.uri == "gs://salesmesh-data/uploads/sample_sales.csv"
    assert upload.identity == ("salesmesh-data", "uploads/sample_sales.csv", GENERATION)


@pytest.mark.parametrize("name", sorted(p.name for p in EVENTS.glob("*.json")))
def test_every_fixture_has_eventarc_headers_matching_its_data(name):
    """Each fixture's ce-source names its bucket and ce-subject its object, as Eventarc's do."""
    event = load_event(name)
    data = event.get_data()
    assert event["specversion"] == "1.0"
    assert event["source"] == f"//storage.googleapis.com/projects/_/buckets/{data['bucket']}"
    assert event["subject"] == f"objects/{data['name']}"
    assert data["kind"] == "storage#object"
    assert data["id"] == f"{data['bucket']}/{data['name']}/{data['generation']}"


def test_integers_are_accepted_as_json_numbers_too():
    """generation, metageneration and size as JSON numbers parse like their string forms."""
    data = fixture_data()
    data.update(generation=int(GENERATION), metageneration=1, size=1076608)
    assert StorageObject.from_data(data) == StorageObject.from_data(fixture_data())


def test_generation_with_leading_zeros_is_the_same_generation():
    """'0042' and 42 name one generation, so they must give one run id."""
    padded = StorageObject.from_data({"bucket": "b-1", "name": "x.csv", "generation": "0042"})
    plain = StorageObject.from_data({"bucket": "b-1", "name": "x.csv", "generation": 42})
    assert padded.generation == "42"
    assert run_id(padded) == run_id(plain)


def test_minimal_data_takes_defaults():
    """Only bucket, name and generation are required; the rest default to None (or '1')."""
    upload = StorageObject.from_data({"bucket": "b-1", "name": "x.csv", "generation": "7"})
    assert (upload.metageneration, upload.size, upload.content_type) == ("1", None, None)


def test_duck_typed_event_with_only_data_attribute():
    """Any object with __getitem__ for attributes and .data is accepted."""
    event = AttributesAndData({"type": FINALIZED}, fixture_data())
    assert StorageObject.from_cloud_event(event).generation == GENERATION


def test_undecoded_json_bytes_are_decoded():
    """Data delivered as JSON bytes (no JSON content type) is decoded, not refused."""
    event = AttributesAndData({"type": FINALIZED}, json.dumps(fixture_data()).encode())
    assert StorageObject.from_cloud_event(event).name == "uploads/sample_sales.csv"


# -- bad events ---------------------------------------------------------------------------


def test_bad_event_error_is_a_mesh_error():
    """BadEventError belongs to the one error family."""
    assert issubclass(BadEventError, MeshError)


def test_wrong_event_type_is_refused():
    """A metadataUpdated event is not an upload and says which type was expected."""
    with pytest.raises(BadEventError) as caught:
        StorageObject.from_cloud_event(load_event("storage_metadata_updated.json"))
    assert str(caught.value) == (
        "event type is 'google.cloud.storage.object.v1.metadataUpdated', "
        "expected 'google.cloud.storage.object.v1.finalized'"
    )


def test_event_without_type_is_refused():
    """An event with no type attribute says so."""
    with pytest.raises(BadEventError, match=r"^the CloudEvent has no 'type' attribute$"):
        StorageObject.from_cloud_event(AttributesAndData({}, fixture_data()))


def test_data_that_is_not_json_is_refused():
    """Undecodable bytes are reported as not JSON."""
    event = AttributesAndData({"type": FINALIZED}, b"\x00not json")
    with pytest.raises(BadEventError, match=r"^event data is not JSON: "):
        StorageObject.from_cloud_event(event)


@pytest.mark.parametrize(
    ("data", "kind"), [(None, "NoneType"), (["bucket"], "list"), (b"[]", "list")]
)
def test_data_that_is_not_an_object_is_refused(data, kind):
    """Data must be a JSON object; the message names what arrived instead."""
    with pytest.raises(BadEventError) as caught:
        StorageObject.from_cloud_event(AttributesAndData({"type": FINALIZED}, data))
    assert str(caught.value) == f"event data must be an object, got {kind}"


@pytest.mark.parametrize("key", ["bucket", "name", "generation"])
def test_missing_required_field_is_named(key):
    """A finalize event without bucket, name or generation names the missing field."""
    data = fixture_data()
    del data[key]
    with pytest.raises(BadEventError) as caught:
        StorageObject.from_cloud_event(finalized(data))
    assert str(caught.value) == f"event data has no {key!r}"


@pytest.mark.parametrize("key", ["bucket", "name"])
def test_empty_required_text_is_named(key):
    """An empty bucket or name is as useless as a missing one."""
    data = fixture_data()
    data[key] = ""
    with pytest.raises(BadEventError) as caught:
        StorageObject.from_data(data)
    assert str(caught.value) == f"event data {key!r} is empty"


@pytest.mark.parametrize(
    ("key", "value"),
    [("bucket", 7), ("name", ["a"]), ("contentType", 1), ("md5Hash", {}), ("updated", 0)],
)
def test_text_field_of_wrong_type_is_named(key, value):
    """String fields holding anything else name the field and the value."""
    data = fixture_data()
    data[key] = value
    with pytest.raises(BadEventError) as caught:
        StorageObject.from_data(data)
    assert str(caught.value) == f"event data {key!r} must be a string, got {value!r}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("generation", "abc"),
        ("generation", -1),
        ("generation", True),
        ("generation", 1.5),
        ("generation", str(2**63)),
        ("metageneration", "1.0"),
        ("size", "12.5"),
        ("size", "-3"),
        ("size", False),
        ("size", ""),
    ],
)
def test_integer_field_that_is_not_an_int64_is_named(key, value):
    """generation, metageneration and size must be non-negative int64s, as number or text."""
    data = fixture_data()
    data[key] = value
    with pytest.raises(BadEventError) as caught:
        StorageObject.from_data(data)
    assert str(caught.value) == f"event data {key!r} must be a non-negative int64, got {value!r}"


# -- ids ----------------------------------------------------------------------------------


def test_run_id_is_r_and_16_hex_of_sha256_of_identity():
    """run_id = 'r-' + sha256('bucket/name#generation')[:16], pinned for the fixture."""
    upload = StorageObject.from_cloud_event(load_event("storage_finalized.json"))
    expected = hashlib.sha256(f"salesmesh-data/uploads/sample_sales.csv#{GENERATION}".encode())
    assert run_id(upload) == "r-" + expected.hexdigest()[:16]
    assert run_id(upload) == "r-4de576e7d2bcac8c"  # ids already on jobs must never change


def test_redelivery_gives_the_same_run_id():
    """The same generation, parsed again from a new event, gives the same id."""
    first = StorageObject.from_cloud_event(load_event("storage_finalized.json"))
    again = StorageObject.from_data(fixture_data())
    assert run_id(first) == run_id(again)


def test_metadata_does_not_change_the_run_id():
    """Only bucket, name and generation count: a new metageneration is the same upload."""
    data = fixture_data()
    data.update(metageneration="3", updated="2026-11-04T00:00:00.000Z", size="1")
    assert run_id(StorageObject.from_data(data)) == run_id(StorageObject.from_data(fixture_data()))


@pytest.mark.parametrize(
    "change", [{"generation": "1793697267318413"}, {"name": "uploads/other.csv"}, {"bucket": "x-y"}]
)
def test_another_generation_name_or_bucket_gives_another_run_id(change):
    """A re-upload (new generation) or another object is a new run."""
    data = fixture_data()
    data.update(change)
    assert run_id(StorageObject.from_data(data)) != run_id(StorageObject.from_data(fixture_data()))


@pytest.mark.parametrize(
    "name", ["UPLOADS/Vendas Março.CSV", "a" * 1024, "uploads/x#1", "ü/日本.csv"]
)
def test_run_id_is_a_valid_vertex_label_for_any_object_name(name):
    """Any name gives a lowercase id of 18 chars that Vertex AI accepts as a label value."""
    upload = StorageObject.from_data({"bucket": "salesmesh-data", "name": name, "generation": 1})
    for value in (run_id(upload), correlation_id(upload)):
        assert RUN_ID_PATTERN.match(value)
        assert len(value) == 18


def test_correlation_id_names_the_upload_with_the_same_digest():
    """correlation_id is 'c-' + the run id's digest: related, but never confused with it."""
    upload = StorageObject.from_data(fixture_data())
    assert correlation_id(upload) == "c-4de576e7d2bcac8c"
    assert correlation_id(upload) != run_id(upload)


def test_run_id_pattern_refuses_what_vertex_refuses():
    """The pattern rejects uppercase, a leading digit and more than 63 characters."""
    assert [bool(RUN_ID_PATTERN.match(v)) for v in ("r-ab", "R-ab", "1-ab", "r" * 64)] == [
        True,
        False,
        False,
        False,
    ]


# -- data files ---------------------------------------------------------------------------


def upload_named(name: str) -> StorageObject:
    """An object in the data bucket with this name."""
    return StorageObject(bucket="salesmesh-data", name=name, generation="1")


@pytest.mark.parametrize(
    "name",
    [
        "uploads/sales.csv",
        "uploads/SALES.CSV",
        "uploads/2026/11/sales.csv.gz",
        "uploads/sales.CSV.GZ",
        "uploads/sales.tsv",
        "uploads/sales.txt",
    ],
)
def test_data_files_under_the_upload_prefix_are_accepted(name):
    """CSV, gzipped CSV, TSV and TXT under the prefix, in any case, are data files."""
    assert is_data_file(upload_named(name), "uploads/") == (True, "")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("uploads/", "a folder placeholder, not a file"),
        ("uploads/2026/", "a folder placeholder, not a file"),
        ("quarantine/uploads/sales.csv", "inside the quarantine prefix 'quarantine/'"),
        ("uploads/sales.csv.error.json", "a quarantine error report"),
        ("uploads/sales.csv.ERROR.JSON", "a quarantine error report"),
        ("sales.csv", "outside the upload prefix 'uploads/'"),
        ("runs/r-1/model.txt", "outside the upload prefix 'uploads/'"),
        ("uploadsX/sales.csv", "outside the upload prefix 'uploads/'"),
        (
            "uploads/sales.parquet",
            "not a data file: the name must end with ('.csv', '.csv.gz', '.tsv', '.txt')",
        ),
        (
            "uploads/sales.csv.tmp",
            "not a data file: the name must end with ('.csv', '.csv.gz', '.tsv', '.txt')",
        ),
    ],
)
def test_everything_else_is_ignored_with_a_reason(name, reason):
    """Folders, quarantine, error reports, other prefixes and other types say why they're out."""
    assert is_data_file(upload_named(name), "uploads/") == (False, reason)


def test_fixtures_for_folder_and_error_report_are_ignored():
    """The folder-placeholder and error-report fixtures are not data files."""
    folder = StorageObject.from_cloud_event(load_event("storage_finalized_folder.json"))
    report = StorageObject.from_cloud_event(load_event("storage_finalized_error_report.json"))
    assert is_data_file(folder, "uploads/") == (False, "a folder placeholder, not a file")
    assert is_data_file(report, "uploads/") == (
        False,
        "inside the quarantine prefix 'quarantine/'",
    )


def test_quarantine_prefix_is_configurable():
    """A custom quarantine prefix is honoured even inside a whole-bucket upload prefix."""
    check = is_data_file(upload_named("rejected/sales.csv"), "", quarantine_prefix="rejected/")
    assert check == (False, "inside the quarantine prefix 'rejected/'")


def test_check_is_truthy_only_when_accepted():
    """`if is_data_file(...)` means accepted, though the result is a (bool, reason) pair."""
    assert is_data_file(upload_named("uploads/a.csv"), "uploads/")
    assert not is_data_file(upload_named("other/a.csv"), "uploads/")
    assert is_data_file(upload_named("other/a.csv"), "uploads/").accepted is False


def test_fixture_posted_to_a_real_functions_framework_app(tmp_path):
    """functions-framework parses the fixture as a binary-mode request our parser accepts."""
    from functions_framework import create_app

    seen = tmp_path / "seen.txt"
    source = tmp_path / "handler.py"
    source.write_text(
        textwrap.dedent(
            f"""
            import functions_framework
            from pathlib import Path
            from salesmesh.events import StorageObject, run_id

            @functions_framework.cloud_event
            def handler(event):
                Path({str(seen)!r}).write_text(run_id(StorageObject.from_cloud_event(event)))
            """
        )
    )
    fixture = json.loads((EVENTS / "storage_finalized.json").read_text())
    app = create_app("handler", str(source), "cloudevent")
    response = app.test_client().post("/", headers=fixture["headers"], json=fixture["data"])
    assert response.status_code == 200
    assert seen.read_text() == "r-4de576e7d2bcac8c"


def test_shared_modules_import_no_cloud_sdk():
    """events, settings and logs load no google.*, cloudevents or functions-framework module."""
    # the SDKs' *-nspkg.pth files create bare 'google' namespaces at start-up: count only new ones
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import salesmesh.events, salesmesh.settings, salesmesh.logs\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('google', 'cloudevents', 'functions_framework', 'pandas')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
