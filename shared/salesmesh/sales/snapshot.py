"""Snapshots: the whole sales history after one merge, as an immutable Parquet file + manifest.

``sales/<model>/snapshots/<id>.parquet`` holds the rows (date, store_id, product_id, sales,
then regressors); ``<id>.json`` beside it, the manifest: the parent snapshot, the upload this
merge took in, every upload the snapshot contains with its row counts, the totals, and the
sha256 of the Parquet file, which every read checks.

**Identity.** A snapshot's id is derived from its lineage: ``s<seq>-<12 hex of sha256(parent
id, mode, upload URI#generation)>``. The merge is deterministic, so those inputs fix the
content, and a merge retried after a crash (a redelivered event, the same parent) names the
same objects, finds them written and reuses them instead of leaving an orphan per attempt, as a
random uuid would. A hash of the Parquet bytes alone would not do: two lineages can hold equal
rows (an identical re-export) yet contain different uploads, and the manifest says which.
The sequence number in front sorts a listing in merge order.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from salesmesh.errors import SourceError

SCHEMA = 1
MERGE = "merge"
REPLACE = "replace"


@dataclass(frozen=True)
class UploadEntry:
    """One upload as the history took it in: ``uri`` is ``gs://bucket/name#generation``."""

    uri: str
    correlation_id: str
    rows: int
    added: int
    corrected: int
    unchanged: int
    merged: str  # RFC 3339, when its snapshot was made

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UploadEntry:
        """The entry a manifest holds."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Snapshot:
    """A snapshot's manifest. ``uploads``: those it contains (since the last replace), oldest
    first; ``seen``: the correlation ids of every upload ever merged into its lineage, replaced
    ones too, so a late redelivery of one is still recognised."""

    model: str
    id: str
    seq: int
    parent: str | None
    mode: str
    created: str
    upload: UploadEntry
    uploads: tuple[UploadEntry, ...]
    seen: tuple[str, ...]
    rows: int
    series: int
    date_min: str | None
    date_max: str | None
    columns: tuple[str, ...]
    sha256: str
    bytes: int

    @property
    def added(self) -> int:
        """Rows the last merge added."""
        return self.upload.added

    @property
    def corrected(self) -> int:
        """Rows the last merge corrected."""
        return self.upload.corrected

    def to_dict(self) -> dict[str, Any]:
        """The manifest as stored (JSON-ready)."""
        out = asdict(self)
        out |= {"schema": SCHEMA, "added": self.added, "corrected": self.corrected}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Snapshot:
        """A stored manifest; SourceError naming ``where`` if it is not one."""
        try:
            if data.get("schema") != SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r}, expected {SCHEMA}")
            return cls(
                model=str(data["model"]),
                id=str(data["id"]),
                seq=int(data["seq"]),
                parent=data["parent"],
                mode=str(data["mode"]),
                created=str(data["created"]),
                upload=UploadEntry.from_dict(data["upload"]),
                uploads=tuple(UploadEntry.from_dict(u) for u in data["uploads"]),
                seen=tuple(data["seen"]),
                rows=int(data["rows"]),
                series=int(data["series"]),
                date_min=data["date_min"],
                date_max=data["date_max"],
                columns=tuple(data["columns"]),
                sha256=str(data["sha256"]),
                bytes=int(data["bytes"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{where} is not a sales snapshot manifest: {exc}") from exc


def snapshot_id(parent: str | None, seq: int, mode: str, upload_uri: str) -> str:
    """The id of the snapshot that merging ``upload_uri`` into ``parent`` makes."""
    key = f"{parent or ''}\n{mode}\n{upload_uri}".encode()
    return f"s{seq:06d}-{hashlib.sha256(key).hexdigest()[:12]}"


def contents(
    parent: Snapshot | None, entry: UploadEntry, mode: str
) -> tuple[tuple[UploadEntry, ...], tuple[str, ...]]:
    """(uploads contained, uploads seen) after merging ``entry`` into ``parent``."""
    kept = () if parent is None or mode == REPLACE else parent.uploads
    seen = () if parent is None else parent.seen
    return (*kept, entry), (*seen, entry.correlation_id)


def encode(frame: pd.DataFrame) -> bytes:
    """The history as Parquet bytes (zstd): the same frame always gives the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def decode(data: bytes, expected_sha256: str, where: str) -> pd.DataFrame:
    """The rows of a snapshot's Parquet bytes, refused unless their sha256 is the manifest's."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise SourceError(
            f"{where} has sha256 {actual[:16]}…, its manifest says {expected_sha256[:16]}…: the "
            "snapshot was altered or damaged; refusing to read it (restore it, or upload the "
            "whole history again under the replace prefix)"
        )
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame: pd.DataFrame = pq.read_table(pa.BufferReader(data)).to_pandas()
    return frame


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def columns_of(frame: pd.DataFrame) -> Sequence[str]:
    """The history's column names, as the manifest lists them."""
    return [str(c) for c in frame.columns]
