"""The gate on two registered versions: their evidence read from their runs, then :func:`judge`.

A version's registry metrics carry only the backtest summary (Vertex AI keeps 8 KB a version),
so the gate reads each run's ``gate.json`` and ``series.csv`` from its artifact folder, each
checked against the run's manifest (:func:`salesmesh.artifact.read_files`). A run older than
``gate.json`` is gated by the pooled-MASE rule; coverage comes from ``series.csv`` either way.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from salesmesh import artifact
from salesmesh.errors import ArtifactIntegrityError, SourceError
from salesmesh.gate.compare import GateSettings
from salesmesh.gate.decide import Coverage
from salesmesh.gate.evidence import FILE, GATE, judge
from salesmesh.ports import ModelVersion
from salesmesh.rollout.policy import GateDecision

SERIES = "series.csv"
# reads some files of a run, each checked against its manifest (artifact.read_files)
Reader = Callable[[str, Iterable[str]], Mapping[str, bytes | None]]


class Run:
    """What the gate knows of one version's run: its metrics with the ``gate`` evidence, the
    series it forecasts and the series its data shows silent."""

    def __init__(self, version: ModelVersion, read: Reader = artifact.read_files) -> None:
        files = read(version.artifact_uri, (FILE, SERIES))
        self.metrics: dict[str, Any] = dict(version.metrics)
        if (evidence := files.get(FILE)) is not None:
            self.metrics[GATE] = _json(evidence, version.artifact_uri)
        self.served, self.silent = _series(files.get(SERIES), version.artifact_uri)


def judge_versions(
    challenger: ModelVersion,
    champion: ModelVersion | None,
    settings: GateSettings,
    read: Reader = artifact.read_files,
) -> GateDecision:
    """Gate ``challenger`` against ``champion``; a run that cannot be read is gated by what
    can be: an unreadable challenger is kept out, an unreadable champion's evidence ignored."""
    try:
        mine = Run(challenger, read)
    except (ArtifactIntegrityError, SourceError) as exc:
        return GateDecision(False, f"the challenger's run cannot be read: {exc}")
    if champion is None:
        return judge(mine.metrics, None, settings)
    try:
        theirs = Run(champion, read)
    except (ArtifactIntegrityError, SourceError) as exc:
        decision = judge(mine.metrics, dict(champion.metrics), settings)
        note = f"the champion's run cannot be read ({exc})"
        return replace(decision, evidence={**(decision.evidence or {}), "note": note})
    coverage = None
    if theirs.served is not None and mine.served is not None:
        coverage = Coverage(theirs.served, mine.served, theirs.served - mine.silent)
    return judge(mine.metrics, theirs.metrics, settings, coverage)


def _json(data: bytes, uri: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ArtifactIntegrityError(f"artifact {uri}: {FILE} is not JSON: {exc}") from exc


def _series(data: bytes | None, uri: str) -> tuple[frozenset[str] | None, frozenset[str]]:
    """(series forecast, series silent too long to be) from a run's ``series.csv``; an older
    table without an ``active`` column forecasts every series it lists."""
    if data is None:
        return None, frozenset()
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode())))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ArtifactIntegrityError(f"artifact {uri}: {SERIES} is unreadable: {exc}") from exc
    if rows and "series_id" not in rows[0]:
        raise ArtifactIntegrityError(f"artifact {uri}: {SERIES} has no series_id column")
    silent = frozenset(r["series_id"] for r in rows if r.get("active", "True") == "False")
    return frozenset(r["series_id"] for r in rows) - silent, silent
