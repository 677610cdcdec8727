"""Single-flight locks: one deployment at a time, across processes and machines.

Locally every process of the mesh shares one disk, so an ``fcntl`` lock on a file under the
state folder serialises them, and the kernel releases it if the holder dies. On Google Cloud
function instances share nothing but Cloud Storage: :class:`GcsLease` holds an object created
only if absent (``if_generation_match=0``, atomic in GCS) and deleted on release; a holder that
died is recognised by the lease's age and its lease is broken, by generation, so two breakers
cannot both win. (Capping deploy_model at one instance in Terraform is the natural companion;
the lease makes the rule hold whatever the cap.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from salesmesh.errors import MeshError


class LockTimeoutError(MeshError):
    """A lock stayed held by someone else past the wait allowed; nothing was changed."""


@contextmanager
def file_lock(path: Path, timeout: float = 600.0, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeoutError(f"{path} still locked after {timeout:g}s") from None
                time.sleep(poll)  # a lock wait: bounded by timeout
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class GcsLease:
    """A lease on ``gs://bucket/name``: at most one holder at a time while it is younger than
    ``ttl`` seconds (make ``ttl`` longer than the longest holder can live: the function's
    timeout)."""

    def __init__(
        self, client: Any, bucket: str, name: str, ttl: float = 600.0, timeout: float = 540.0
    ) -> None:
        self._client, self._bucket, self._name = client, bucket, name
        self.uri = f"gs://{bucket}/{name}"
        self.ttl = ttl
        self.timeout = timeout

    def _blob(self) -> Any:
        return self._client.bucket(self._bucket).blob(self._name)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        generation = self._acquire()
        try:
            yield
        finally:
            self._release(generation)

    def _acquire(self) -> int:
        from google.api_core import exceptions

        deadline = time.monotonic() + self.timeout
        holder = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        while True:
            blob = self._blob()
            try:
                blob.upload_from_string(holder, if_generation_match=0)
                return int(blob.generation)
            except exceptions.PreconditionFailed:
                self._break_if_stale()
            if time.monotonic() > deadline:
                raise LockTimeoutError(f"{self.uri} still held after {self.timeout:g}s")
            time.sleep(1.0)  # another deployment is running: it takes seconds to minutes

    def _break_if_stale(self) -> None:
        from google.api_core import exceptions

        blob = self._blob()
        try:
            blob.reload()
        except exceptions.NotFound:
            return  # released meanwhile: the next attempt takes it
        created = blob.time_created or datetime.now(UTC)
        if (datetime.now(UTC) - created).total_seconds() > self.ttl:
            # only the lease we looked at: if someone else broke and retook it, this fails
            with suppress(exceptions.PreconditionFailed, exceptions.NotFound):
                blob.delete(if_generation_match=blob.generation)

    def _release(self, generation: int) -> None:
        from google.api_core import exceptions

        # not found or another generation: broken as stale by another holder, theirs now
        with suppress(exceptions.PreconditionFailed, exceptions.NotFound):
            self._blob().delete(if_generation_match=generation)
