"""Promotion decisions, as pure functions: the gate, the canary plan and which models retire.

No I/O and no cloud SDK here: :mod:`salesmesh.rollout.deploy` feeds these the registry's and the
endpoint's state and carries out what they return, so every rule is testable on plain data.

The promotion gate is :mod:`salesmesh.gate`; :func:`gate` here is its fallback for runs
trained before they left gate evidence (``gate.json``). It compares backtest metrics
(``metrics.json`` of each run, summarised on each registry
version as ``{"protocol": {...}, "models": {"salesmesh": {"mase": ...}, ...}}``). MASE is scaled
by each series' own in-sample seasonal-naive error, so it can be compared across two uploads of
the same business when both were backtested the same way: same horizon, frequency, season
length and number of origins. The rules, in order:

1. The challenger must have a finite backtest MASE.
2. If there is a champion backtested under the same protocol, the challenger's MASE may exceed
   the champion's by at most ``tolerance`` (relative: 0.05 allows 5 % worse). Under a
   different protocol the two are not comparable; the reason says so and rule 3 decides.
3. It must not be worse than its own seasonal-naive baseline by more than the tolerance: a
   model that loses to "same day last week" is never promoted, not even the first one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from salesmesh.ports import DeployedModel, Health, allocate

MODEL = "salesmesh"  # the key of our model's figures in metrics["models"]
BASELINE = "seasonal_naive"
# what must match for two backtests to be comparable
PROTOCOL_KEYS = ("horizon", "freq", "season_length", "origins")
# share of the canary's live requests that may fail before it is rolled back
MAX_CANARY_ERROR_RATE = 0.01
# the monitoring policy's latency line (p99 over 500 ms): a canary already past it never
# takes all traffic
MAX_CANARY_P99_MS = 500.0


@dataclass(frozen=True)
class GateDecision:
    """Whether a challenger may take traffic, and why (the reason is logged either way)."""

    passed: bool
    reason: str
    challenger_mase: float | None = None
    champion_mase: float | None = None
    # what the decision rested on, as plain JSON for the version's record (see salesmesh.gate)
    evidence: Mapping[str, Any] | None = None


def summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run's ``metrics.json`` a registry version carries: protocol and figures
    without the per-step breakdown."""
    protocol = dict(metrics.get("protocol") or {})
    if isinstance(protocol.get("origins"), list):
        protocol["origins"] = len(protocol["origins"])
    models = {
        name: {k: v for k, v in figures.items() if k != "by_horizon"}
        for name, figures in (metrics.get("models") or {}).items()
        if isinstance(figures, Mapping)
    }
    return {"protocol": protocol, "models": models}


def gate(
    challenger: Mapping[str, Any], champion: Mapping[str, Any] | None, tolerance: float
) -> GateDecision:
    """Apply the rules in the module docstring to two metric summaries (see :func:`summary`)."""
    mase = _mase(challenger, MODEL)
    if mase is None:
        return GateDecision(False, "the challenger's metrics have no finite backtest MASE")
    best = None if champion is None else _mase(champion, MODEL)
    if champion is None:
        verdict = "no champion yet"
    elif best is None or (differs := _protocol_difference(challenger, champion)):
        why = "the champion has no finite backtest MASE" if best is None else differs
        verdict = f"not comparable with the champion ({why})"
    elif mase > best * (1 + tolerance):
        return GateDecision(
            False,
            f"backtest MASE {mase:.4f} is worse than the champion's {best:.4f} by "
            f"{mase / best - 1:.1%}, over the {tolerance:.0%} tolerance",
            mase,
            best,
        )
    else:
        change = "better than" if mase < best else "within tolerance of"
        verdict = f"backtest MASE {mase:.4f} is {change} the champion's {best:.4f}"
    baseline = _mase(challenger, BASELINE)
    if baseline is not None and mase > baseline * (1 + tolerance):
        return GateDecision(
            False,
            f"{verdict}, but MASE {mase:.4f} is worse than the seasonal-naive baseline's "
            f"{baseline:.4f} by more than the {tolerance:.0%} tolerance",
            mase,
            best,
        )
    return GateDecision(True, verdict, mase, best)


def _mase(metrics: Mapping[str, Any], model: str) -> float | None:
    try:
        value = float(metrics["models"][model]["mase"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _protocol_difference(first: Mapping[str, Any], second: Mapping[str, Any]) -> str:
    a, b = first.get("protocol") or {}, second.get("protocol") or {}
    for key in PROTOCOL_KEYS:
        if a.get(key) != b.get(key):
            return f"{key} {a.get(key)!r} vs {b.get(key)!r}"
    return ""


def canary_split(split: Mapping[str, int], new_id: str, percent: int) -> dict[str, int]:
    """The split while ``new_id`` (deployed at 0 %) takes ``percent`` and the rest keep theirs,
    scaled down: Vertex AI's own allocation, so both backends agree to the point."""
    others = {model: share for model, share in split.items() if model != new_id}
    return allocate(others, new_id, percent)


def canary_ok(
    health: Health,
    max_error_rate: float = MAX_CANARY_ERROR_RATE,
    max_p99_ms: float = MAX_CANARY_P99_MS,
) -> tuple[bool, str]:
    """Whether a canary may take all traffic, given its health check after the canary window.

    A canary that took no live requests is judged by its direct probe alone (``health.ok``).
    """
    if not health.ok:
        return False, health.reason
    if health.requests and health.errors / health.requests > max_error_rate:
        return False, (
            f"{health.errors} of {health.requests} live requests failed, over the "
            f"{max_error_rate:.0%} allowed"
        )
    if health.p99_ms is not None and health.p99_ms > max_p99_ms:
        return False, f"live p99 latency {health.p99_ms:.0f} ms is over {max_p99_ms:.0f} ms"
    return True, f"healthy after {health.requests} live request(s)"


def retire(
    deployed: Sequence[DeployedModel], split: Mapping[str, int], keep: int, first: Sequence[str]
) -> list[str]:
    """Deployed model ids to undeploy so that at most ``keep`` stay.

    Models are kept in priority order: those in ``first`` (the champion, then its warm
    standby), then the newest. A model taking traffic is never retired.
    """
    ids = [d.id for d in deployed]
    ranked = [i for i in first if i in ids] + [i for i in reversed(ids) if i not in first]
    kept = set(ranked[:keep])
    return [i for i in ids if i not in kept and split.get(i, 0) == 0]
