"""Helpers of the sales-history tests: sample rows as the contract gives them, upload entries,
the mesh's buckets with the real local launcher."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from salesmesh.backends.local import LocalTrainingLauncher
from salesmesh.data import Contract, load_sales_bytes
from salesmesh.sales import UploadEntry
from salesmesh.settings import Settings


def rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A sample frame as the contract normalises it (what train_trigger merges)."""
    text = frame.to_csv(index=False).encode()
    loaded = load_sales_bytes(text, "test.csv", Contract(horizon=7, require_history=False))
    assert loaded.report.ok and loaded.frame is not None, loaded.report.to_text()
    return loaded.frame


def entry(name: str, generation: int = 1) -> UploadEntry:
    """An upload entry as intake makes it (the counts are the merge's to fill)."""
    return UploadEntry(
        f"gs://data/uploads/{name}#{generation}", f"c-{name}-{generation}", 0, 0, 0, 0, ""
    )


def keyed(frame: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """(store, product, date) -> sales, to compare histories by content."""
    return {
        (str(s), str(p), str(pd.Timestamp(d).date())): float(v)
        for s, p, d, v in frame[["store_id", "product_id", "date", "sales"]].itertuples(index=False)
    }


def mesh_parts(bucket: Any, tmp_path: Path, quiet: float) -> tuple[Settings, LocalTrainingLauncher]:
    """Data (``bucket``), model and state buckets on the emulator, and the real local launcher
    whose trainers share the state folder (and so the history's lock), as in the mesh."""
    client = bucket.client
    models = client.create_bucket(f"{bucket.name[:50]}-models")
    states = client.create_bucket(f"{bucket.name[:50]}-state")
    settings = Settings(
        data_bucket=bucket.name,
        model_bucket=models.name,
        state_bucket=states.name,
        horizon=7,
        state_dir=tmp_path / "state",
        history_quiet=quiet,
    )
    env = {**os.environ, "SALESMESH_STATE_DIR": str(settings.state_dir)}
    return settings, LocalTrainingLauncher(settings.state_dir, env=env)
