"""What ``salesmesh versions`` and ``salesmesh predict`` print: registry, traffic, forecasts.

Both commands work on any backend: they take the ports, not a backend, so the same code reads
the local mesh and Vertex AI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from salesmesh.gate.decide import brief
from salesmesh.ports import Endpoint, ModelRegistry
from salesmesh.rollout.deploy import CORRELATION_LABEL, RUN_LABEL
from salesmesh.rollout.steps import STATE_LABEL


def gather(
    registry: ModelRegistry,
    endpoint: Endpoint,
    ledger: Mapping[str, Any],
    accuracy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Versions (oldest first) with aliases, state, metrics and lineage, and the live split.

    A version's state and lineage come from the rollout ledger (``ledger``, its document); the
    registry's labels are only a copy, read for versions the ledger never saw. ``accuracy``:
    the live accuracy record's versions (:func:`salesmesh.accuracy.recorded`).
    """
    accuracy = accuracy or {}
    decided = ledger.get("versions") or {}
    registered = registry.versions()
    split = endpoint.traffic()
    deployed = {d.version_id: d.id for d in endpoint.deployed()}
    versions = []
    for version in registered:
        models = version.metrics.get("models") or {}
        figures = models.get("salesmesh") or {}
        naive = (models.get("seasonal_naive") or {}).get("mase")
        mase = figures.get("mase")
        known = decided.get(version.version_id) or {}
        versions.append(
            {
                "version_id": version.version_id,
                "aliases": list(version.aliases),
                "state": known.get("state") or version.labels.get(STATE_LABEL, ""),
                "reason": known.get("reason", ""),
                "run_id": known.get("run_id") or version.labels.get(RUN_LABEL, ""),
                "correlation_id": (
                    known.get("correlation_id") or version.labels.get(CORRELATION_LABEL, "")
                ),
                "created": version.created,
                "artifact_uri": version.artifact_uri,
                "source": (version.metrics.get("source") or {}).get("uri"),
                "metrics": figures,
                "relative_mase_vs_seasonal_naive": (
                    round(mase / naive, 4) if mase is not None and naive else None
                ),
                # why the gate let it through or kept it out, and on what evidence
                "gate": known.get("gate"),
                # its served forecasts scored against the actuals that arrived since
                "live": (accuracy.get(version.version_id) or {}).get("live"),
                "degraded": (accuracy.get(version.version_id) or {}).get("degraded"),
                "deployed_model_id": deployed.get(version.version_id),
                "traffic": split.get(deployed.get(version.version_id, ""), 0),
            }
        )
    by_id = {d.id: d.version_id for d in endpoint.deployed()}
    traffic = [
        {"deployed_model_id": model, "version_id": by_id.get(model), "percent": share}
        for model, share in split.items()
    ]
    rollout = ledger.get("rollout")
    queued = [entry["version_id"] for entry in ledger.get("queue") or []]
    return {"versions": versions, "traffic": traffic, "rollout": rollout, "queued": queued}


def render(gathered: Mapping[str, Any], model: str, endpoint: str) -> str:
    """A table of versions, then the endpoint's split."""
    versions = gathered["versions"]
    if not versions:
        return f"model {model}: no versions yet (upload sales data to train the first one)"
    rows = [
        ("VERSION", "ALIASES", "STATE", "MASE", "LIVE MASE", "VS NAIVE", "GATE", "TRAFFIC", "RUN")
    ]
    for v in versions:
        mase = v["metrics"].get("mase")
        relative = v["relative_mase_vs_seasonal_naive"]
        rows.append(
            (
                v["version_id"],
                ",".join(v["aliases"]) or "-",
                v["state"] or "-",
                "-" if mase is None else f"{mase:.4f}",
                _live(v.get("live"), v.get("degraded")),
                "-" if relative is None else f"{relative:.3f}",
                brief(v.get("gate")),
                f"{v['traffic']}%" if v["deployed_model_id"] else "not deployed",
                v["run_id"] or "-",
            )
        )
    lines = [f"model {model}: {len(versions)} version(s)", *_table(rows)]
    gated = [v for v in versions if v["state"] == "gated" and v["reason"]]
    lines += [f"  version {v['version_id']} gated: {v['reason']}" for v in gated[-3:]]
    lines.append("")
    split = gathered["traffic"]
    lines.append(f"endpoint {endpoint}: " + ("nothing deployed" if not split else "traffic split"))
    for entry in split:
        lines.append(
            f"  deployed model {entry['deployed_model_id']} "
            f"(version {entry['version_id']}): {entry['percent']}%"
        )
    rollout = gathered.get("rollout")
    if rollout:
        lines.append(
            f"rollout in progress: version {rollout['version_id']} {rollout['state']}: "
            f"{rollout.get('reason', '')}"
        )
    if gathered.get("queued"):
        lines.append("queued for rollout: version(s) " + ", ".join(gathered["queued"]))
    return "\n".join(lines)


def render_forecast(response: Mapping[str, Any]) -> str:
    """One block per prediction: the series and who answered, then a table of ``date  sales``
    and the quantiles (``p10`` .. ``p90``) the forecast carries, lowest level first."""
    lines = []
    for prediction in response.get("predictions", []):
        days = prediction["forecast"]
        lines.append(
            f"{prediction['store_id']} / {prediction['product_id']}: "
            f"{len(days)}-day forecast "
            f"(deployed model {response.get('deployedModelId', '?')})"
        )
        columns = ["sales", *_quantile_columns(days[0] if days else {})]
        lines.append("  " + f"{'date':<10}" + "".join(f"{name:>10}" for name in columns))
        lines += ["  " + f"{day['date']:<10}" + _cells(day, columns) for day in days]
    return "\n".join(lines)


def _quantile_columns(entry: Mapping[str, Any]) -> list[str]:
    """An entry's quantile keys (``p10``, ``p2.5`` ...) by level: a response that went through
    Vertex AI's protobuf Struct need not keep the server's key order."""
    levels: dict[str, float] = {}
    for key in entry:
        try:
            levels[key] = float(key[1:]) if key.startswith("p") else math.nan
        except ValueError:
            continue
    return sorted((key for key, level in levels.items() if 0 < level < 100), key=levels.__getitem__)


def _cells(day: Mapping[str, Any], columns: Sequence[str]) -> str:
    return "".join(
        f"{day[name]:10.2f}" if isinstance(day.get(name), int | float) else f"{'-':>10}"
        for name in columns
    )


def _live(live: Mapping[str, Any] | None, degraded: str | None) -> str:
    """Live MASE and the points behind it, flagged when degraded."""
    if not live:
        return "-"
    text = f"{live['mase']:.4f} ({live['points']} pts)"
    return text + " DEGRADED" if degraded else text


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
