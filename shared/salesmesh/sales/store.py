"""One versioned sales history per model, in the state bucket.

``gs://<state>/sales/<model>/``::

    HEAD.json                   the current snapshot's id, moved by compare-and-swap
    snapshots/<id>.parquet      the whole history after one merge; written once, never changed
    snapshots/<id>.json         its manifest (:class:`~salesmesh.sales.snapshot.Snapshot`)
    uploads/<correlation>.json  an upload that was handled: its snapshot and its run
    runs/<run_id>.json          the snapshot a training run resolved and trained on
    pending-run.json            the run that has not resolved the history yet (:mod:`.pending`)

A merge reads HEAD, merges the upload into HEAD's rows, writes the new snapshot (create-only)
and moves HEAD from the generation it read. Concurrent merges serialize there: the loser of a
race re-reads HEAD and merges again, so every upload's rows end in HEAD exactly once. A merge
is idempotent per upload generation: an upload whose correlation id HEAD's lineage has seen
merges nothing.
"""

from __future__ import annotations

import builtins
import json
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pandas as pd

from salesmesh import cas
from salesmesh.errors import MeshError, SourceError
from salesmesh.locks import file_lock
from salesmesh.ports import rfc3339
from salesmesh.sales import snapshot as snap
from salesmesh.sales.merge import extent, merge_rows
from salesmesh.sales.snapshot import Snapshot, UploadEntry
from salesmesh.settings import Settings

PREFIX = "sales/"
HEAD = "HEAD.json"


class HistoryConflictError(MeshError):
    """HEAD kept moving under a merge: it gave up; a redelivery of the upload merges again."""


@dataclass(frozen=True)
class Merged:
    """What merging one upload did: ``merged`` or ``duplicate`` (its lineage had it), and the
    snapshot that is HEAD for it now."""

    action: str
    snapshot: Snapshot
    attempts: int = 1
    # the snapshot's rows, when this merge made it (spares a reader downloading them again)
    rows: pd.DataFrame | None = field(default=None, compare=False, repr=False)


class HistoryStore:
    """The sales history of one model: snapshots, HEAD, and what was handled."""

    def __init__(
        self,
        client: Callable[[], Any],
        bucket: str,
        model: str,
        *,
        guard: cas.Guard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bucket = bucket
        self.model = model
        self.prefix = f"{PREFIX}{model}/"
        self.guard = guard
        self.clock = clock
        self.head = cas.CasObject(client, bucket, self.prefix + HEAD, guard=guard)
        self._client = client

    @property
    def client(self) -> Any:
        """The storage client (HEAD's, built on first use)."""
        return self.head.client

    def object(self, relative: str) -> cas.CasObject:
        """The JSON object ``sales/<model>/<relative>``, read and written by CAS."""
        return cas.CasObject(self._client, self.bucket, self.prefix + relative, guard=self.guard)

    def record(self, kind: str, key: str) -> cas.CasObject:
        """The JSON object ``sales/<model>/<kind>/<key>.json`` (kind: uploads, runs)."""
        return self.object(f"{kind}/{key}.json")

    def current(self) -> Snapshot | None:
        """HEAD's snapshot, or None while the history is empty."""
        return self._at_head()[0]

    def _at_head(self) -> tuple[Snapshot | None, int]:
        pointer = self.head.read()
        if pointer.document is None:
            return None, 0
        return self.snapshot(str(pointer.document["snapshot"])), pointer.generation

    def snapshot(self, snapshot_id: str) -> Snapshot:
        """The manifest of snapshot ``snapshot_id``; SourceError if it is missing."""
        name = f"{self.prefix}snapshots/{snapshot_id}.json"
        with cas.storage_errors("read", f"gs://{self.bucket}/{name}"):
            blob = self.client.bucket(self.bucket).get_blob(name)
            if blob is None:
                raise SourceError(f"snapshot gs://{self.bucket}/{name} is missing")
            return Snapshot.from_dict(json.loads(blob.download_as_bytes()), blob.name)

    def rows(self, snapshot: Snapshot) -> pd.DataFrame:
        """The snapshot's rows, after checking the Parquet file against its manifest."""
        return snap.decode(self.parquet(snapshot), snapshot.sha256, self.parquet_uri(snapshot.id))

    def parquet(self, snapshot: Snapshot) -> bytes:
        """The snapshot's Parquet bytes as stored (unchecked: :meth:`rows` checks them)."""
        with cas.storage_errors("read", self.parquet_uri(snapshot.id)):
            blob = self.client.bucket(self.bucket).blob(self.parquet_name(snapshot.id))
            data: bytes = blob.download_as_bytes()
        return data

    def parquet_uri(self, snapshot_id: str) -> str:
        """``gs://`` URI of the snapshot's Parquet file."""
        return f"gs://{self.bucket}/{self.parquet_name(snapshot_id)}"

    def parquet_name(self, snapshot_id: str) -> str:
        """Where the snapshot's rows live, in the state bucket."""
        return f"{self.prefix}snapshots/{snapshot_id}.parquet"

    def merge(
        self, entry: UploadEntry, frame: pd.DataFrame, *, replace: bool, attempts: int = 100
    ) -> Merged:
        """Merge an upload's rows (``frame``, contract-normalised) into HEAD, or, with
        ``replace``, make them the whole history. Retries on a lost race; see the module."""
        mode = snap.REPLACE if replace else snap.MERGE
        for attempt in range(1, attempts + 1):
            parent, generation = self._at_head()
            if parent is not None and entry.correlation_id in parent.seen:
                return Merged("duplicate", parent, attempt)
            old = None if parent is None or replace else self.rows(parent)
            rows, counts = merge_rows(old, frame)
            entry = UploadEntry(
                entry.uri,
                entry.correlation_id,
                counts.upload_rows,
                counts.added,
                counts.corrected,
                counts.unchanged,
                rfc3339(),
            )
            made = self._write(parent, entry, mode, rows)
            try:
                self.head.write(
                    {"schema": snap.SCHEMA, "snapshot": made.id, "seq": made.seq}, generation
                )
            except cas.CasConflictError:
                time.sleep(random.uniform(0.0, 0.05 * min(attempt, 10)))  # spread the racers
                continue
            return Merged("merged", made, attempt, rows)
        raise HistoryConflictError(
            f"{self.head.uri} kept moving: {entry.uri} was not merged after {attempts} attempts; "
            "a redelivery of the upload will try again"
        )

    def _write(
        self, parent: Snapshot | None, entry: UploadEntry, mode: str, rows: pd.DataFrame
    ) -> Snapshot:
        """The snapshot's Parquet file then its manifest, each created only if absent: a retry
        of the same merge (same id) finds them and reuses what is stored."""
        seq = 1 if parent is None else parent.seq + 1
        parent_id = None if parent is None else parent.id
        snapshot_id = snap.snapshot_id(parent_id, seq, mode, entry.uri)
        data = snap.encode(rows)
        guard = self.guard or nullcontext
        name = self.parquet_name(snapshot_id)
        if not cas.create_only(
            self.client, self.bucket, name, data, "application/vnd.apache.parquet", guard
        ):
            data = self.client.bucket(self.bucket).blob(name).download_as_bytes()
        uploads, seen = snap.contents(parent, entry, mode)
        size = extent(rows)
        made = Snapshot(
            model=self.model,
            id=snapshot_id,
            seq=seq,
            parent=parent_id,
            mode=mode,
            created=entry.merged,
            upload=entry,
            uploads=uploads,
            seen=seen,
            columns=tuple(snap.columns_of(rows)),
            sha256=snap.sha256(data),
            bytes=len(data),
            rows=size.rows,
            series=size.series,
            date_min=size.date_min,
            date_max=size.date_max,
        )
        manifest = f"{self.prefix}snapshots/{snapshot_id}.json"
        text = json.dumps(made.to_dict(), indent=1, sort_keys=True).encode() + b"\n"
        if not cas.create_only(self.client, self.bucket, manifest, text, "application/json", guard):
            return self.snapshot(snapshot_id)
        return made

    def lineage(self, limit: int | None = None) -> builtins.list[Snapshot]:
        """HEAD's snapshot and its ancestors, newest first (at most ``limit``)."""
        found: list[Snapshot] = []
        current = self.current()
        while current is not None and (limit is None or len(found) < limit):
            found.append(current)
            current = None if current.parent is None else self.snapshot(current.parent)
        return found

    def runs(self) -> builtins.list[dict[str, Any]]:
        """Every run that resolved this history: run id, snapshot, when; oldest first."""
        prefix = f"{self.prefix}runs/"
        with cas.storage_errors("list", f"gs://{self.bucket}/{prefix}"):
            blobs = list(self.client.list_blobs(self.bucket, prefix=prefix))
            records = [json.loads(blob.download_as_bytes()) for blob in blobs]
        return sorted(records, key=lambda r: (str(r.get("resolved")), str(r.get("run_id"))))


def open_history(
    settings: Settings,
    client: Callable[[], Any],
    *,
    bucket: str | None = None,
    model: str | None = None,
) -> HistoryStore:
    """The history of ``model`` (default: the settings' model) in ``bucket`` (default: the
    state bucket). On the local backend a file lock under the state folder stands in for the
    preconditions the storage emulator ignores, as for the rollout ledger."""
    model = model or settings.model_name
    guard = None
    if settings.backend == "local":
        guard = partial(file_lock, settings.state_dir / "locks" / f"sales-{model}.lock")
    return HistoryStore(client, bucket or settings.state_bucket, model, guard=guard)
