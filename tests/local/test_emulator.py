"""The in-process storage emulator turns every object creation into exactly one event."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from salesmesh.events import StorageObject
from salesmesh.local.emulator import StorageEmulator


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[StorageEmulator]:
    with StorageEmulator(tmp_path / "gcs") as running:
        running.ensure_buckets(["hook-test", "hook-other"])
        yield running


def only_event(events: queue.Queue[dict[str, Any]]) -> dict[str, Any]:
    """The one event queued so far; fails if there are none or several."""
    event = events.get(timeout=2)
    assert events.empty(), f"more than one event: {event} and {events.get()}"
    return event


def check(event: dict[str, Any], blob: Any) -> None:
    """The event names the blob's bucket, name and generation, in Eventarc's shape."""
    blob.reload()
    assert (event["bucket"], event["name"]) == (blob.bucket.name, blob.name)
    assert event["generation"] == str(blob.generation)
    assert event["metageneration"] == "1"
    assert event["size"] == str(blob.size)
    assert event["md5Hash"] == blob.md5_hash
    identity = (blob.bucket.name, blob.name, event["generation"])
    assert StorageObject.from_data(event).identity == identity


def test_simple_upload_queues_one_event(emulator: StorageEmulator) -> None:
    """A simple upload yields one finalize event with the object's identity."""
    blob = emulator.client().bucket("hook-test").blob("uploads/a.csv")
    blob.upload_from_string("date,store_id,product_id,sales\n", content_type="text/csv")
    event = only_event(emulator.events)
    check(event, blob)
    assert event["contentType"] == "text/csv"


def test_resumable_upload_queues_one_event(emulator: StorageEmulator) -> None:
    """A chunked resumable upload yields one event, on completion, not one per chunk."""
    blob = emulator.client().bucket("hook-test").blob("big.bin", chunk_size=256 * 1024)
    blob.upload_from_string(b"x" * (600 * 1024))
    check(only_event(emulator.events), blob)


def test_copy_queues_one_event_for_the_copy(emulator: StorageEmulator) -> None:
    """copy_blob yields one event for the destination object only."""
    client = emulator.client()
    source = client.bucket("hook-test").blob("src.txt")
    source.upload_from_string("hello")
    only_event(emulator.events)
    copied = client.bucket("hook-test").copy_blob(source, client.bucket("hook-other"), "dst.txt")
    check(only_event(emulator.events), copied)


def test_failed_create_queues_nothing_and_objects_survive_restart(tmp_path: Path) -> None:
    """An upload to a missing bucket queues nothing; stored objects outlive a restart."""
    with StorageEmulator(tmp_path / "gcs") as first:
        first.ensure_buckets(["kept"])
        first.client().bucket("kept").blob("x").upload_from_string("1")
        first.events.get(timeout=2)
        with pytest.raises(Exception, match="404"):
            first.client().bucket("missing").blob("y").upload_from_string("2")
        assert first.events.empty()
    with StorageEmulator(tmp_path / "gcs") as second:
        assert [b.name for b in second.client().list_blobs("kept")] == ["x"]


def test_objects_download_after_a_restart_on_another_port(tmp_path: Path) -> None:
    """A blob read with its metadata downloads from the restarted emulator, not the old port."""
    with StorageEmulator(tmp_path / "gcs") as first:
        first.ensure_buckets(["kept"])
        first.client().bucket("kept").blob("runs/r-1/manifest.json").upload_from_string(b"{}")
        old = first.host
    with StorageEmulator(tmp_path / "gcs") as second:
        assert second.host != old
        blob = second.client().bucket("kept").get_blob("runs/r-1/manifest.json")
        assert blob is not None and second.host in blob.media_link
        assert blob.download_as_bytes(timeout=5) == b"{}"
