"""Merging an upload's rows into the history: keyed by (store, product, date), the later wins.

Pure pandas, no storage: :func:`merge_rows` takes the history as it stands (None when there is
none, or when the upload replaces it) and the upload's contract-normalised frame, and returns
the new history with a count of what changed. A row of the upload whose key the history already
holds *corrects* it when any value differs (sales, price, promo, another regressor), and is
*unchanged* otherwise, so a full re-export of the same data reports zero corrections rather
than every row. The result is sorted by key, so one input always gives one output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

KEY = ["store_id", "product_id", "date"]
# the columns every history has, in this order; regressors follow, sorted by name
CORE = ["date", "store_id", "product_id", "sales"]


@dataclass(frozen=True)
class MergeCounts:
    """What one merge did: rows of the upload new to the history (``added``), rows whose
    values it changed (``corrected``) or repeated as they were (``unchanged``)."""

    upload_rows: int
    added: int
    corrected: int
    unchanged: int

    def describe(self) -> str:
        """``120 rows: 100 added, 5 corrected, 15 unchanged``."""
        return (
            f"{self.upload_rows:,} rows: {self.added:,} added, {self.corrected:,} corrected, "
            f"{self.unchanged:,} unchanged"
        )


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """The history's own layout: ids as text, dates as timestamps, values as float64,
    core columns first, regressors after in name order, one row per key."""
    extra = sorted(c for c in frame.columns if c not in CORE)
    out = pd.DataFrame(
        {
            "date": pd.to_datetime(frame["date"]).astype("datetime64[ns]"),
            "store_id": frame["store_id"].astype(str),
            "product_id": frame["product_id"].astype(str),
            "sales": frame["sales"].astype(np.float64),
            **{name: frame[name].astype(np.float64) for name in extra},
        }
    )
    if out.duplicated(KEY).any():
        # the contract merges duplicate keys before we see a frame; two here is a bug upstream
        raise ValueError("a sales frame repeats a (store_id, product_id, date) key")
    return out


def merge_rows(
    history: pd.DataFrame | None, upload: pd.DataFrame
) -> tuple[pd.DataFrame, MergeCounts]:
    """The history with ``upload`` merged in (its rows win), and what changed."""
    new = normalise(upload)
    if history is None or history.empty:
        merged = new.sort_values(KEY, kind="stable").reset_index(drop=True)
        return merged, MergeCounts(len(new), len(new), 0, 0)
    old = normalise(history)
    layout = CORE + sorted((set(old.columns) | set(new.columns)) - set(CORE))
    old = old.reindex(columns=layout)
    new = new.reindex(columns=layout)
    old_keyed = old.set_index(KEY)
    new_keyed = new.set_index(KEY)
    common = new_keyed.index.intersection(old_keyed.index)
    values = [c for c in layout if c not in KEY]
    before = old_keyed.loc[common, values]
    after = new_keyed.loc[common, values]
    # NaN == NaN here: a regressor missing from both is not a correction
    same = (before == after) | (before.isna() & after.isna())
    corrected = int((~same.all(axis=1)).sum())
    kept = old_keyed.drop(index=common)
    merged = pd.concat([kept, new_keyed]).sort_index(kind="stable").reset_index()
    counts = MergeCounts(
        upload_rows=len(new),
        added=len(new) - len(common),
        corrected=corrected,
        unchanged=len(common) - corrected,
    )
    return merged[layout], counts


class Extent(NamedTuple):
    """How much a history holds: rows, series and its first and last dates."""

    rows: int
    series: int
    date_min: str | None
    date_max: str | None


def extent(frame: pd.DataFrame) -> Extent:
    """Rows, series and date range of a history, for its manifest."""
    if frame.empty:
        return Extent(0, 0, None, None)
    series = frame.groupby(["store_id", "product_id"], sort=False).ngroups
    first, last = frame["date"].min(), frame["date"].max()
    return Extent(len(frame), int(series), str(first.date()), str(last.date()))
