"""Single-flight locks: the fcntl lock across real processes, the GCS lease by its preconditions.

The GCS emulator ignores generation preconditions (DESIGN §6), so the lease is exercised against
the real ``storage.Blob`` signatures (autospec) over a tiny store that enforces them as GCS does.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from google.api_core.exceptions import NotFound, PreconditionFailed
from google.cloud import storage

from salesmesh.locks import GcsLease, LockTimeoutError, file_lock

_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from salesmesh.locks import file_lock
    with file_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_file_lock_excludes_another_process(tmp_path: Path) -> None:
    """While another process holds the lock, taking it waits, then times out clearly."""
    lock = tmp_path / "locks" / "deploy.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(LockTimeoutError, match=r"still locked after 0\.3s"),
            file_lock(lock, timeout=0.3),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with file_lock(lock, timeout=5):  # the kernel released a dead holder's lock
        pass


def test_file_lock_serialises_threads(tmp_path: Path) -> None:
    """Blocks under one lock never overlap."""
    lock, inside, overlaps = tmp_path / "l.lock", [], []

    def work() -> None:
        with file_lock(lock):
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.02)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []


class Store:
    """One GCS object's generations, with ifGenerationMatch enforced as Cloud Storage does."""

    def __init__(self) -> None:
        self.generation = 0  # 0: absent
        self.created = datetime.now(UTC)
        self.counter = 100
        self.client = mock.create_autospec(storage.Client, instance=True)
        self.client.bucket.return_value.blob.side_effect = lambda name: self.blob()

    def blob(self) -> Any:
        blob = mock.create_autospec(storage.Blob, instance=True)
        blob.generation = None

        def upload(data: str, if_generation_match: int) -> None:
            if if_generation_match != self.generation:
                raise PreconditionFailed("generation does not match")
            self.counter += 1
            self.generation, self.created = self.counter, datetime.now(UTC)
            blob.generation = self.generation

        def reload() -> None:
            if not self.generation:
                raise NotFound("no such object")
            blob.generation, blob.time_created = self.generation, self.created

        def delete(if_generation_match: int) -> None:
            if not self.generation:
                raise NotFound("no such object")
            if if_generation_match != self.generation:
                raise PreconditionFailed("generation does not match")
            self.generation = 0

        blob.upload_from_string.side_effect = upload
        blob.reload.side_effect = reload
        blob.delete.side_effect = delete
        return blob


def test_lease_is_held_once_and_released() -> None:
    """A second holder waits while the lease is held; release frees it for the next."""
    store = Store()
    lease = GcsLease(store.client, "state", "salesmesh/locks/deploy", ttl=600, timeout=1.5)
    with lease():
        assert store.generation
        with pytest.raises(LockTimeoutError, match="gs://state/salesmesh/locks/deploy"), lease():
            pass
    assert store.generation == 0
    with lease():
        pass
    store.client.bucket.assert_called_with("state")


def test_stale_lease_is_broken_by_generation() -> None:
    """A lease older than its ttl (its holder died) is deleted and taken over."""
    store = Store()
    store.generation, store.created = 7, datetime.now(UTC) - timedelta(hours=1)
    with GcsLease(store.client, "state", "lock", ttl=600, timeout=5)():
        assert store.generation > 7
    assert store.generation == 0
