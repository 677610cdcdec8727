"""Fixtures of the sales-history tests: a history in a fresh state bucket on the real emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from salesmesh.sales import HistoryStore, open_history
from salesmesh.settings import Settings


@pytest.fixture
def settings(bucket: Any, tmp_path: Path) -> Settings:
    """The test bucket as the state bucket, on the local backend (so the file-lock guard)."""
    return Settings(state_bucket=bucket.name, state_dir=tmp_path / "state", horizon=7)


@pytest.fixture
def history(settings: Settings, bucket: Any) -> HistoryStore:
    """The model's empty history, guarded as the local mesh guards it."""
    return open_history(settings, lambda: bucket.client)
