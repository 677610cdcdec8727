"""Helpers of the sales-history tests: sample rows as the contract gives them, upload entries,
the mesh's buckets with the real local launcher."""

from __future__ import annotations

import pandas as pd

from salesmesh.data import Contract, load_sales_bytes
from salesmesh.sales import UploadEntry


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
