"""Publishing run folders to the emulator in tests (a module, not conftest: its name is unique)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def upload_folder(client: Any, folder: Path, uri: str) -> str:
    """Copy a local run folder to ``gs://bucket/prefix`` on ``client``, manifest last."""
    from salesmesh.artifact import MANIFEST
    from salesmesh.data.source import split_gcs_uri

    bucket_name, prefix = split_gcs_uri(uri.rstrip("/") + "/x")
    prefix = prefix[:-1]
    bucket = client.bucket(bucket_name)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    for path in [*files, folder / MANIFEST]:
        bucket.blob(prefix + path.relative_to(folder).as_posix()).upload_from_filename(str(path))
    return uri.rstrip("/")


def variant(artifact: Path, target: Path, mase: float) -> Path:
    """A copy of a run whose backtest says the model scored ``mase``, manifest rewritten."""
    from salesmesh.artifact import MANIFEST, write_manifest

    shutil.copytree(artifact, target)
    metrics = json.loads((target / "metrics.json").read_text())
    metrics["models"]["salesmesh"]["mase"] = mase
    (target / "metrics.json").write_text(json.dumps(metrics))
    extra = json.loads((target / MANIFEST).read_text())
    (target / MANIFEST).unlink()
    write_manifest(target, {k: extra[k] for k in ("data", "model", "metrics")})
    return target
