"""The trainer's side of the history: wait for a burst to settle, release the claim, read HEAD.

For ``--data salesmesh-history://…?run=R&quiet=Q`` the trainer, in this order:

1. waits until HEAD has not moved for ``Q`` seconds (at most ``10 x Q``), still holding the
   pending claim, so uploads that keep arriving fold into this run;
2. releases the claim (only if run ``R`` holds it): from here on a new upload launches a new
   run, and anything merged before is in what step 3 reads;
3. resolves HEAD to a snapshot, reads its rows (sha256 checked) and records
   ``sales/<model>/runs/R.json`` (the snapshot it trains on and its uploads);
4. checks the whole history against the data contract, history length included, through the
   same validator every upload went through (the rows are written as CSV in memory for it).

A URI with a snapshot id trains on that snapshot and touches no claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from salesmesh.data import Contract, LoadResult, SourceInfo, load_sales_bytes
from salesmesh.data.source import md5_base64
from salesmesh.errors import SourceError
from salesmesh.ports import rfc3339
from salesmesh.sales import snapshot as snap
from salesmesh.sales.pending import PendingRun
from salesmesh.sales.snapshot import Snapshot
from salesmesh.sales.store import HistoryStore
from salesmesh.sales.uri import HistoryUri

QUIET_FACTOR = 10  # a stream that never pauses still trains after quiet x this
# The trainer backtests from the data ends of up to EARLIER runs before it (each costs about
# one more backtest origin), found among the last LOOKBACK snapshots.
EARLIER, LOOKBACK = 2, 20


@dataclass(frozen=True)
class Resolved:
    """The snapshot a run trains on, its rows checked against the contract, and its URI."""

    snapshot: Snapshot
    loaded: LoadResult
    uri: HistoryUri
    # the last dates of the snapshots before it (newest first, each once): where the runs
    # that may be serving now ended their data, so the gate can score them on what came after
    earlier_ends: tuple[str, ...] = ()

    def identity(self) -> dict[str, Any]:
        """The manifest's ``data`` entry: the pinned URI, the snapshot and its uploads."""
        s = self.snapshot
        return {
            "uri": str(self.uri),
            "generation": s.id,  # the history's version, as an upload's generation is its own
            "md5": self.loaded.source.md5,
            "bytes": s.bytes,
            "rows": s.rows,
            "snapshot": {
                "id": s.id,
                "seq": s.seq,
                "sha256": s.sha256,
                "series": s.series,
                "date_min": s.date_min,
                "date_max": s.date_max,
                "uploads": [
                    {"uri": u.uri, "correlation_id": u.correlation_id, "rows": u.rows}
                    for u in s.uploads
                ],
            },
        }


def resolve(
    uri: HistoryUri,
    store: HistoryStore,
    contract: Contract,
    say: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Resolved:
    """Steps 1-4 of the module; SourceError when the history is empty or unreadable."""
    if uri.run is not None:
        if uri.quiet > 0:
            waited = wait_until_still(store, uri.quiet, sleep)
            say(f"the history was still for {uri.quiet:g} s (waited {waited:.1f} s)")
        released = PendingRun(store).release(uri.run)
        say(f"pending claim {'released' if released else 'not held by this run'}")
    snapshot = store.snapshot(uri.snapshot) if uri.snapshot else store.current()
    if snapshot is None:
        raise SourceError(f"the sales history {uri} is empty: no upload was merged into it yet")
    data = store.parquet(snapshot)
    rows = snap.decode(data, snapshot.sha256, store.parquet_uri(snapshot.id))
    pinned = uri.pinned(snapshot.id)
    if uri.run is not None:
        record = store.record("runs", uri.run)
        entry = {
            "run_id": uri.run,
            "snapshot": snapshot.id,
            "seq": snapshot.seq,
            "rows": snapshot.rows,
            "uploads": [u.uri for u in snapshot.uploads],
            "resolved": rfc3339(),
        }
        record.write(entry, record.read().generation)
    say(
        f"training on snapshot {snapshot.id}: {snapshot.rows:,} rows from "
        f"{len(snapshot.uploads)} upload(s)"
    )
    text = rows.to_csv(index=False, date_format="%Y-%m-%d").encode()
    source = SourceInfo(str(pinned), snapshot.bytes, snapshot.id, md5_base64(data))
    loaded = load_sales_bytes(text, str(pinned), contract, source=source)
    return Resolved(snapshot, loaded, pinned, earlier_ends(store, snapshot))


def earlier_ends(store: HistoryStore, snapshot: Snapshot, limit: int = EARLIER) -> tuple[str, ...]:
    """Up to ``limit`` distinct last dates of ``snapshot``'s ancestors, before its own, newest
    first (looking back at most ``LOOKBACK`` snapshots)."""
    ends: list[str] = []
    current, seen = snapshot, 0
    while current.parent is not None and seen < LOOKBACK and len(ends) < limit:
        try:
            current = store.snapshot(current.parent)
        except SourceError:
            break  # an ancestor gone (cleaned up): the gate falls back, nothing is lost
        seen += 1
        end = current.date_max
        if end and (snapshot.date_max is None or end < snapshot.date_max) and end not in ends:
            ends.append(end)
    return tuple(ends)


def wait_until_still(
    store: HistoryStore,
    quiet: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Wait until HEAD's generation has not changed for ``quiet`` seconds; the seconds waited."""
    start = clock()
    last, since = store.head.read().generation, start
    while clock() - since < quiet and clock() - start < quiet * QUIET_FACTOR:
        sleep(min(0.5, quiet / 4))
        generation = store.head.read().generation
        if generation != last:
            last, since = generation, clock()
    return clock() - start
