"""``salesmesh upload FILE``: put a sales file where train_trigger listens, showing progress."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from salesmesh.errors import SourceError

CHUNK = 8 * 1024 * 1024  # resumable chunks (a multiple of 256 KiB, as the API requires)


class _Progress:
    """A file wrapper that reports how much has been read, at most once per percent."""

    def __init__(self, handle: BinaryIO, total: int, label: str, out: TextIO) -> None:
        self._handle, self._total, self._label, self._out = handle, max(total, 1), label, out
        self._done = 0
        self._shown = -1

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._done += len(chunk)
        percent = min(100, self._done * 100 // self._total)
        if percent != self._shown:
            self._shown = percent
            end = "\n" if percent == 100 else ""
            self._out.write(f"\r{self._label}: {percent:3d}% of {self._total:,} bytes{end}")
            self._out.flush()
        return chunk

    def __getattr__(self, name: str) -> Any:  # tell(), seek() ... as the client needs them
        return getattr(self._handle, name)


def upload(
    path: Path, client: Any, bucket: str, name: str, progress: TextIO = sys.stderr
) -> dict[str, Any]:
    """Upload ``path`` to ``gs://bucket/name``; return the object's identity."""
    if not path.is_file():
        raise SourceError(f"{path} is not a file")
    size = path.stat().st_size
    blob = client.bucket(bucket).blob(name)
    if size > CHUNK:
        blob.chunk_size = CHUNK  # resumable: a dropped connection resumes, not restarts
    content_type = "application/gzip" if path.suffix == ".gz" else "text/csv"
    try:
        with path.open("rb") as handle:
            reader = _Progress(handle, size, f"uploading {path.name}", progress)
            blob.upload_from_file(reader, size=size, content_type=content_type)
    except Exception as exc:  # the SDK raises many unrelated types; all mean "not uploaded"
        raise SourceError(f"upload of {path} to gs://{bucket}/{name} failed: {exc}") from exc
    blob.reload()
    return {"uri": f"gs://{bucket}/{name}", "generation": str(blob.generation), "bytes": size}
