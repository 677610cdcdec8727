"""Local single-flight: an ``fcntl`` lock on a file under the state folder.

Every process of the local mesh shares one disk, so a file lock serialises the read-modify-write
of records the storage emulator cannot guard itself (it ignores generation preconditions), and
the kernel releases it if the holder dies. On Google Cloud nothing needs it: the rollout ledger
is compare-and-swap on the object generation (:mod:`salesmesh.rollout.ledger`).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
