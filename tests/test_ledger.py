"""The rollout ledger's compare-and-swap: two writers of one generation never both win.

Locally the store runs on the real GCS emulator, which ignores preconditions, behind its file
lock; the Google Cloud path (no lock, ``if_generation_match`` alone) runs against Cloud
Storage's precondition rules, faked at the client's Blob methods with autospec.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fake_gcs import CloudStorageRules, cloud_storage_rules

from salesmesh.locks import file_lock
from salesmesh.rollout.ledger import LedgerConflictError, LedgerStore


@pytest.fixture
def cloud() -> Iterator[CloudStorageRules]:
    with cloud_storage_rules() as rules:
        yield rules


def gcp_store(cloud: CloudStorageRules) -> LedgerStore:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="p", credentials=AnonymousCredentials())
    return LedgerStore(lambda: client, "state", "salesmesh")


def local_store(bucket: Any, tmp_path: Path) -> LedgerStore:
    guard = partial(file_lock, tmp_path / "ledger.lock")
    return LedgerStore(lambda: bucket.client, bucket.name, "salesmesh", guard=guard)


@pytest.fixture(params=["local", "gcp"])
def store(request: Any, tmp_path: Path) -> LedgerStore:
    """The store on the emulator behind its lock, and on Cloud Storage's rules alone."""
    if request.param == "gcp":
        return gcp_store(request.getfixturevalue("cloud"))
    return local_store(request.getfixturevalue("bucket"), tmp_path)


def test_a_missing_ledger_reads_empty_at_generation_zero(store: LedgerStore) -> None:
    """No record yet: an empty one at generation 0, which a create-only write replaces."""
    first = store.read()
    assert first.generation == 0 and first.document["rollout"] is None
    assert first.document["history"] == [] and first.document["seq"] == 0
    written = store.write({**first.document, "seq": 1}, 0)
    assert written.generation > 0 and store.read().document["seq"] == 1
    with pytest.raises(LedgerConflictError):
        store.write({**first.document, "seq": 9}, 0)  # it exists now


def test_two_writers_of_one_generation_never_both_win(store: LedgerStore) -> None:
    """Eight writers read the same generation and write at once: exactly one succeeds."""
    store.write(store.read().document, 0)
    base = store.read()
    barrier = threading.Barrier(8)
    results: list[str] = []

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.write({**base.document, "seq": 100 + i}, base.generation)
            results.append(f"won {i}")
        except LedgerConflictError:
            results.append("lost")

    _run_all([partial(writer, i) for i in range(8)])
    assert sorted(results)[:7] == ["lost"] * 7 and len(results) == 8
    winner = int(next(r for r in results if r.startswith("won")).split()[1])
    assert store.read().document["seq"] == 100 + winner


def test_update_loses_no_change_under_contention(store: LedgerStore) -> None:
    """Concurrent read-modify-write updates all land: each retries on conflict."""

    def add(i: int) -> None:
        store.update(lambda doc: doc["queue"].append({"version_id": str(i)}))

    _run_all([partial(add, i) for i in range(6)])
    final = store.read().document
    assert sorted(e["version_id"] for e in final["queue"]) == [str(i) for i in range(6)]
    assert final["seq"] == 6


def test_a_retried_write_that_had_succeeded_is_our_own(cloud: CloudStorageRules) -> None:
    """A 412 whose stored record carries this write's id is a success, not a conflict."""
    store = gcp_store(cloud)
    base = store.read()
    cloud.replay_next_write = True
    written = store.write({**base.document, "seq": 5}, 0)
    assert written.document["seq"] == 5 and store.read().document["seq"] == 5


def test_a_record_that_is_not_a_ledger_is_refused(bucket: Any, tmp_path: Path) -> None:
    """Someone else's object at the ledger's name is an error that names it, not data."""
    from salesmesh.errors import SourceError

    bucket.blob("rollout/salesmesh.json").upload_from_string('{"hello": 1}')
    with pytest.raises(SourceError, match="not a salesmesh ledger"):
        local_store(bucket, tmp_path).read()


def _run_all(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
