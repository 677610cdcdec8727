"""Live accuracy: the forecasts the serving versions serve, scored as the actual sales arrive.

After every merge into the sales history, ``train_trigger`` calls :func:`update`: for each
version serving traffic (the champion, and a canary in progress, as the rollout ledger says),
the forecast it serves (its run's ``gate.json`` ``forecast`` table: from the day after its data
ended, checked against the run's manifest) is scored against the snapshot's actuals for those
dates. Figures, over every (series, date) both have:

- ``mase``: absolute error scaled per series by the in-sample seasonal-naive error its backtest
  used at its last window, averaged; the same scale as the backtest MASE beside it (a series
  the backtest never scored, having started since, has no scale and is left out of it);
- ``wape``: total absolute error / total actual sales, in %;
- ``bias``: (total forecast - total actual) / total actual, in %.

They are kept per version in ``accuracy/<endpoint>.json`` in the state bucket (compare-and-
swap; the rollout ledger is left to ``deploy_model``). A version is **degraded** when its live
MASE exceeds its backtest MASE by more than ``SALESMESH_LIVE_MARGIN`` (25 %) over at least
``SALESMESH_LIVE_MIN_POINTS`` (28) points: reported once, at WARNING with the figures, and
published to the alerts topic as an open incident of the policy ``salesmesh live accuracy``
(Cloud Monitoring's 1.2 shape, :func:`incident`). ``alert_handler`` logs it with the version's
story and rolls nothing back: the versions before it forecast from older data still, so the
answer is newer data (or ``salesmesh rollback`` by hand).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from salesmesh import artifact
from salesmesh.alerts.incident import ACCURACY_POLICY
from salesmesh.cas import CasConflictError, CasObject, Guard
from salesmesh.errors import MeshError
from salesmesh.locks import file_lock
from salesmesh.logs import Logger
from salesmesh.ports import rfc3339
from salesmesh.settings import Settings

SERVING = ("deployed", "rolling_out")  # ledger states of versions that take traffic
POLICY = ACCURACY_POLICY  # the incidents' policy_name; alert_handler knows it
METRIC = "salesmesh/live_accuracy/mase"
ATTEMPTS = 5  # compare-and-swap retries of the accuracy record


@dataclass(frozen=True)
class Live:
    """A version's served forecasts scored against the actuals that arrived since."""

    points: int
    series: int
    first: str  # the first and last dates scored
    last: str
    mase: float
    wape: float | None
    bias: float | None
    backtest_mase: float | None

    def degraded(self, margin: float, min_points: int) -> bool:
        """Whether live MASE is worse than the backtest's by more than ``margin``."""
        backtest = self.backtest_mase
        return (
            self.points >= min_points
            and backtest is not None
            and self.mase > backtest * (1 + margin)
        )


def score(evidence: Mapping[str, Any], actuals: pd.DataFrame) -> Live | None:
    """Score a run's served ``forecast`` (its gate.json) against ``actuals`` (``series_id,
    date, sales``); None when no date it forecasts has an actual yet."""
    table = evidence.get("forecast") or {}
    forecast = pd.DataFrame({k: table.get(k, []) for k in ("series", "date", "forecast")})
    if forecast.empty:
        return None
    forecast["date"] = pd.to_datetime(forecast["date"])
    known = actuals.rename(columns={"series_id": "series"}).assign(
        date=lambda f: pd.to_datetime(f["date"])
    )
    known = known[known["date"] >= forecast["date"].min()]  # only what came after its data
    both = forecast.merge(known[["series", "date", "sales"]], on=["series", "date"])
    both = both.dropna(subset=["forecast", "sales"])
    # a series its backtest never scored (it started since) has no scale: not in MASE
    both["scale"] = both["series"].map(_scales(evidence))
    scaled = both.dropna(subset=["scale"])
    if scaled.empty:
        return None
    error = (both["forecast"] - both["sales"]).abs()
    total = float(both["sales"].sum())
    return Live(
        points=len(both),
        series=int(both["series"].nunique()),
        first=both["date"].min().date().isoformat(),
        last=both["date"].max().date().isoformat(),
        mase=round(
            float(((scaled["forecast"] - scaled["sales"]).abs() / scaled["scale"]).mean()), 6
        ),
        wape=round(100 * float(error.sum()) / total, 4) if total > 0 else None,
        bias=round(100 * float((both["forecast"] - both["sales"]).sum()) / total, 4)
        if total > 0
        else None,
        backtest_mase=_backtest_mase(evidence),
    )


def _scales(evidence: Mapping[str, Any]) -> pd.Series:
    """Each series' scale at the backtest's last window (the one nearest its data's end)."""
    table = pd.DataFrame(
        {k: (evidence.get("backtest") or {}).get(k, []) for k in ("series", "window", "scale")}
    )
    if table.empty:
        return pd.Series(dtype=float)
    last = table[table["window"] == table["window"].max()]
    scales: pd.Series = pd.to_numeric(last.groupby("series")["scale"].first(), errors="coerce")
    usable: pd.Series = scales[np.isfinite(scales) & (scales > 0)]
    return usable


def _backtest_mase(evidence: Mapping[str, Any]) -> float | None:
    table = evidence.get("backtest") or {}
    frame = pd.DataFrame({k: table.get(k, []) for k in ("model", "scale")}).dropna()
    if frame.empty:
        return None
    value = float((frame["model"] / frame["scale"]).mean())
    return round(value, 6) if math.isfinite(value) else None


def update(
    settings: Settings,
    storage: Callable[[], Any],
    actuals: pd.DataFrame,
    snapshot: str,
    log: Logger,
    read: Callable[..., Mapping[str, bytes | None]] = artifact.read_files,
) -> dict[str, Live]:
    """Score every serving version against ``actuals`` (the snapshot's rows as ``series_id,
    date, sales``), record the figures and report newly degraded versions; by version id."""
    from salesmesh import runtime

    versions = (runtime.ledger(settings, storage).read().document or {}).get("versions") or {}
    scored: dict[str, Live] = {}
    for version_id, entry in sorted(versions.items()):
        if entry.get("state") not in SERVING or not entry.get("artifact_uri"):
            continue
        try:
            data = read(entry["artifact_uri"], ("gate.json",)).get("gate.json")
            if data is None:
                continue  # a run older than its gate evidence: nothing served to score
            live = score(json.loads(data), actuals)
        except (MeshError, ValueError) as exc:
            log.warning(f"live accuracy of version {version_id} not scored: {exc}")
            continue
        if live is not None:
            scored[version_id] = live
    if scored:
        _record(settings, storage, scored, snapshot, log)
    return scored


def _record(
    settings: Settings,
    storage: Callable[[], Any],
    scored: Mapping[str, Live],
    snapshot: str,
    log: Logger,
) -> None:
    """Write the figures into the accuracy record; warn once per newly degraded version."""
    record = accuracy_record(settings, storage)
    for _ in range(ATTEMPTS):
        found = record.read()
        document = found.document or {"versions": {}}
        newly: list[tuple[str, Live]] = []
        now = rfc3339()
        for version_id, live in scored.items():
            entry = document["versions"].setdefault(version_id, {})
            bad = live.degraded(settings.live_margin, settings.live_min_points)
            if bad and not entry.get("degraded"):
                entry["degraded"] = now
                newly.append((version_id, live))
            entry.update(live=asdict(live), snapshot=snapshot, scored=now)
        try:
            record.write(document, found.generation)
        except CasConflictError:
            continue
        for version_id, live in newly:
            _publish(settings, incident(settings, version_id, live), log)
            log.warning(
                f"version {version_id}'s live accuracy degraded: MASE {live.mase:.3f} over "
                f"{live.points} points ({live.first}..{live.last}) against "
                f"{live.backtest_mase or 0:.3f} in its backtest, over the "
                f"{settings.live_margin:.0%} margin",
                version=version_id,
                live=asdict(live),
            )
        return
    log.warning(f"live accuracy not recorded: {record.uri} kept changing")


def incident(settings: Settings, version_id: str, live: Live) -> dict[str, Any]:
    """The open incident a degraded version is published as (Cloud Monitoring's 1.2 shape,
    which :func:`salesmesh.alerts.incident.parse` reads); the version is a metric label."""
    import time

    threshold = (live.backtest_mase or 0.0) * (1 + settings.live_margin)
    summary = (
        f"Live MASE of version {version_id} is {live.mase:.3f} over {live.points} points "
        f"({live.first}..{live.last}), above {threshold:.3f} ({live.backtest_mase or 0:.3f} in "
        f"its backtest + {settings.live_margin:.0%})."
    )
    return {
        "version": "1.2",
        "incident": {
            "incident_id": f"live-accuracy-{settings.endpoint_id}-v{version_id}",
            "scoping_project_id": settings.project or "local",
            "url": "",
            "started_at": int(time.time()),
            "ended_at": None,
            "state": "open",
            "summary": summary,
            "observed_value": f"{live.mase:.3f}",
            "threshold_value": f"{threshold:.3f}",
            "resource": {
                "type": "aiplatform.googleapis.com/Endpoint",
                "labels": {"endpoint_id": settings.endpoint_id},
            },
            "metric": {
                "type": METRIC,
                "displayName": "Live MASE",
                "labels": {"version": version_id},
            },
            "policy_name": POLICY,
            "condition_name": f"live MASE over backtest MASE + {settings.live_margin:.0%}",
            "documentation": {"content": "", "mime_type": "text/markdown", "subject": POLICY},
        },
    }


def _publish(settings: Settings, payload: Mapping[str, Any], log: Logger) -> None:
    """Publish an incident to the alerts topic; a failure is logged (the record keeps it)."""
    from salesmesh.alerts.topic import alerts_topic

    try:
        message = alerts_topic(settings).publish(json.dumps(payload).encode())
    except (MeshError, OSError) as exc:
        log.warning(f"live-accuracy incident not published to the alerts topic: {exc}")
        return
    log.info(f"live-accuracy incident published to the alerts topic as message {message}")


def accuracy_record(settings: Settings, storage: Callable[[], Any]) -> CasObject:
    """``accuracy/<endpoint>.json`` in the state bucket; locally behind a file lock, as the
    emulator ignores preconditions."""
    guard: Guard | None = None
    name = settings.endpoint_id
    if settings.backend == "local":
        guard = partial(file_lock, settings.state_dir / "locks" / f"accuracy-{name}.lock")
    return CasObject(storage, settings.state_bucket, f"accuracy/{name}.json", guard=guard)


def recorded(settings: Settings, storage: Callable[[], Any]) -> dict[str, Any]:
    """The accuracy record's versions (version id -> live, snapshot, scored, degraded)."""
    return dict((accuracy_record(settings, storage).read().document or {}).get("versions") or {})
