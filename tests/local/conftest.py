"""Fixtures for the local mesh tests: clean-up of stray training jobs."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state folder; training jobs still running when the test ends are stopped by pid."""
    yield tmp_path / "state"
    for record in (tmp_path / "state" / "runs").glob("*/run.json"):
        run = json.loads(record.read_text())
        if run["state"] in ("queued", "running") and run["pid"]:
            with suppress(ProcessLookupError):
                os.killpg(run["pid"], signal.SIGTERM)
