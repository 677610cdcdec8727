"""Fixtures shared by every test package: the real GCS emulator and a fresh bucket on it."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def emulator_host() -> Iterator[str]:
    """A real in-memory gcp-storage-emulator, shared by the whole session."""
    # a hard import: the emulator is a dev dependency, and gs:// paths must never skip quietly
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(emulator_host: str, monkeypatch: pytest.MonkeyPatch, request: Any) -> Any:
    """A fresh bucket on the emulator, with the environment pointing the client at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "salesmesh-test")
    from salesmesh.data.source import storage_client

    # the emulator lives for the session, so two modules' same-named tests need distinct buckets
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return storage_client().create_bucket(f"b-{stem}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state folder; training jobs still running when the test ends are stopped."""
    from salesmesh.backends.local import LocalTrainingLauncher

    yield tmp_path / "state"
    LocalTrainingLauncher(tmp_path / "state").stop_unfinished()
