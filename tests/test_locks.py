"""The fcntl lock across real processes and threads (the local mesh's single-flight guard)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from salesmesh.locks import LockTimeoutError, file_lock

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
