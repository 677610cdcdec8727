"""The latency fault switch: make one model version slow on the local mesh, at run time.

``salesmesh fault latency --version V --ms N`` writes ``<state_dir>/faults.json``; from then on
the local router (:mod:`salesmesh.local.routing`) waits N ms before it proxies a request to any
deployed model of registry version V. The wait happens after the router took the request's
start time, so it is part of the latency the router measures: its stats, the ``Metrics`` port
and therefore the local monitor see the version slow down, as Cloud Monitoring would see a slow
Vertex AI deployment. ``salesmesh fault clear`` removes it (one version, or all).

The switch exists in the local mesh only, by construction: only the local router reads the
file, and the command refuses to run with ``SALESMESH_BACKEND=gcp``. Nothing restarts: the
router rereads the file when its inode, mtime or size changes (one ``os.stat`` a request).

The file: ``{"latency_ms": {"<version id>": <milliseconds>, ...}}``, replaced whole
(:func:`~salesmesh.local.processes.write_json`), so a reader sees the old switch or the new.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from salesmesh.errors import MeshError
from salesmesh.local.processes import file_key, read_json, write_json

FAULTS_FILE = "faults.json"
MAX_MS = 60_000  # the router's upstream timeout is 60 s: a longer wait is a timeout, not latency


class FaultError(MeshError):
    """A fault switch was refused (bad version or latency, or a backend without the switch), or
    its file is damaged; the message says which and what to do."""


def path(state_dir: Path) -> Path:
    """``<state_dir>/faults.json``."""
    return Path(state_dir) / FAULTS_FILE


def latencies(state_dir: Path) -> dict[str, float]:
    """Version id -> injected milliseconds, as the switch stands now ({} when off)."""
    try:
        return _parse(read_json(path(state_dir)))
    except (ValueError, AttributeError) as exc:
        raise FaultError(
            f"{path(state_dir)} is damaged ({exc}): `salesmesh fault clear` removes it"
        ) from exc


def set_latency(state_dir: Path, version_id: str, ms: float) -> dict[str, float]:
    """Make version ``version_id`` ``ms`` milliseconds slower; the whole switch afterwards."""
    if not version_id or not isinstance(version_id, str):
        raise FaultError(
            f"a model version id is needed (see `salesmesh versions`), got {version_id!r}"
        )
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 < ms <= MAX_MS:
        raise FaultError(f"the latency must be above 0 and at most {MAX_MS} ms, got {ms!r}")
    found = latencies(state_dir)
    found[version_id] = float(ms)
    write_json(path(state_dir), {"latency_ms": found})
    return found


def clear(state_dir: Path, version_id: str | None = None) -> dict[str, float]:
    """Remove the latency of ``version_id`` (every one if None); the switch afterwards."""
    # clearing everything must work on a damaged file too: it is how one gets rid of it
    found = {} if version_id is None else latencies(state_dir)
    found.pop(version_id or "", None)
    if found:
        write_json(path(state_dir), {"latency_ms": found})
    else:
        path(state_dir).unlink(missing_ok=True)
    return found


def _parse(document: Mapping[str, object] | None) -> dict[str, float]:
    """The switch in ``document``; ValueError for one this module would not have written."""
    if document is None:
        return {}
    table = document.get("latency_ms", {})
    if not isinstance(table, dict):
        raise ValueError(f'"latency_ms" must be an object, got {table!r}')
    parsed: dict[str, float] = {}
    for version_id, ms in table.items():
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
            raise ValueError(f"version {version_id}: latency must be milliseconds, got {ms!r}")
        parsed[str(version_id)] = float(ms)
    return parsed


class LatencyFaults:
    """The router's view of the switch: reread only when the file changed."""

    def __init__(self, state_dir: Path) -> None:
        self.path = path(state_dir)
        self._key: tuple[int, int, int] | None = None
        self._table: dict[str, float] = {}
        self._lock = threading.Lock()

    def seconds(self, version_id: str) -> float:
        """How long to hold a request for ``version_id`` before proxying it (0.0: none)."""
        key = file_key(self.path)
        if key != self._key:
            with self._lock:
                try:
                    self._table = _parse(read_json(self.path)) if key else {}
                except (ValueError, AttributeError) as exc:
                    # a broken switch is reported once and means no fault, never a crash
                    print(f"router: ignoring unreadable {self.path}: {exc}", file=sys.stderr)
                    self._table = {}
                self._key = key
        return self._table.get(version_id, 0.0) / 1000.0
