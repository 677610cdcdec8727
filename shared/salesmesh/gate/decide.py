"""The gate's decision from a comparison: coverage first, then the champion, then seasonal naive.

A challenger is promoted unless one of these holds, checked in this order:

1. It would stop forecasting a series the champion serves that is still active.
2. It is *credibly worse* than the champion: the relative difference of scaled error is over the
   tolerance and so is the lower end of its bootstrap interval. With fewer series than
   ``min_series`` there is no spread to measure, so it must instead be worse by more than
   ``clear_margin`` on every one of them.
3. It is credibly worse, in the same sense, than seasonal naive on its own backtest.
4. Its 80 % interval held a share of the backtest's actuals outside ``interval_band`` (60-98 %):
   quantiles a planner cannot trust (:func:`intervals`). Runs without quantile figures (older
   runs, one backtest origin) and backtests of fewer than ``min_interval_points`` points are
   not judged on this.

The burden of proof is on "worse", not on "better": the challenger has the newer data (and may
serve series the champion cannot), and keeping the champion keeps serving forecasts made from
older data. A difference the data cannot tell from noise therefore promotes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salesmesh.gate.compare import NAIVE_RELATIVE, OVERLAP, Comparison, GateSettings
from salesmesh.rollout.policy import MODEL, GateDecision

NAMED_IN_REASON = 10  # series named in a reason; the evidence lists up to NAMED_IN_EVIDENCE
NAMED_IN_EVIDENCE = 200


@dataclass(frozen=True)
class Coverage:
    """Which series each model forecasts, and which are active in the newest data (``None``:
    not known, so every series the champion serves counts as active)."""

    champion: frozenset[str]
    challenger: frozenset[str]
    active: frozenset[str] | None = None

    @property
    def dropped(self) -> list[str]:
        """Active series the champion serves and the challenger would not."""
        serving = self.champion if self.active is None else self.champion & self.active
        return sorted(serving - self.challenger)

    @property
    def retired(self) -> list[str]:
        """Series the champion serves that went silent and the challenger no longer forecasts."""
        return [] if self.active is None else sorted(self.champion - self.active - self.challenger)

    def to_dict(self) -> dict[str, Any]:
        """Counts, and the dropped and retired series by name (the first few hundred)."""
        return {
            "champion": len(self.champion),
            "challenger": len(self.challenger),
            "added": len(self.challenger - self.champion),
            "dropped": self.dropped[:NAMED_IN_EVIDENCE],
            "dropped_count": len(self.dropped),
            "retired": self.retired[:NAMED_IN_EVIDENCE],
            "retired_count": len(self.retired),
        }


def decide(
    comparison: Comparison | None,
    coverage: Coverage | None,
    settings: GateSettings | None = None,
    *,
    baseline: Comparison | None = None,
    note: str = "",
) -> GateDecision:
    """Apply the rules in the module docstring; ``note`` says why ``comparison`` is missing,
    when it is. The decision's ``evidence`` is plain JSON for the version's record."""
    settings = settings or GateSettings()
    evidence = {
        "mode": comparison.mode if comparison else "none",
        "note": note,
        "tolerance": settings.tolerance,
        "comparison": comparison.to_dict() if comparison else None,
        "baseline": baseline.to_dict() if baseline else None,
        "coverage": coverage.to_dict() if coverage else None,
    }
    if coverage is not None and (dropped := coverage.dropped):
        named = ", ".join(dropped[:NAMED_IN_REASON])
        hidden = len(dropped) - NAMED_IN_REASON
        more = f" and {hidden} more" if hidden > 0 else ""
        reason = (
            f"the challenger would stop forecasting {len(dropped)} active series the champion "
            f"serves: {named}{more}"
        )
        return GateDecision(False, reason, evidence=evidence)
    if comparison is None:
        verdict = note or "no like-for-like comparison with the champion"
    else:
        verdict = describe(comparison, settings)
        if worse := credibly_worse(comparison, settings):
            return GateDecision(False, f"{verdict}: {worse}", evidence=evidence)
        verdict += f": {_not_worse(comparison, settings)}"
    if baseline is not None and (worse := credibly_worse(baseline, settings)):
        return GateDecision(
            False, f"{verdict}; but {describe(baseline, settings)}: {worse}", evidence=evidence
        )
    if comparison is None and baseline is not None:  # the baseline rule alone decided
        verdict += f"; {describe(baseline, settings)}: {_not_worse(baseline, settings)}"
    return GateDecision(True, verdict, evidence=evidence)


def credibly_worse(comparison: Comparison, settings: GateSettings) -> str:
    """Why the challenger counts as worse than the other side, or "" when it does not."""
    tolerance, margin = settings.tolerance, settings.clear_margin
    if len(comparison.series) >= settings.min_series:
        if comparison.difference > tolerance and comparison.interval[0] > tolerance:
            return f"credibly worse, the interval's lower end is over the {tolerance:.0%} tolerance"
        return ""
    if comparison.difference > margin and min(comparison.by_series) > margin:
        return (
            f"clearly worse, by over {margin:.0%} on each of its {len(comparison.series)} "
            "series (too few for an interval)"
        )
    return ""


def describe(comparison: Comparison, settings: GateSettings) -> str:
    """One sentence: what was compared with what, on how much data, and the result."""
    n = len(comparison.series)
    windows = comparison.windows
    difference = comparison.difference
    size = f"{abs(difference):.1%} {'higher' if difference > 0 else 'lower'} than"
    if difference == 0:
        size = "the same as"
    low, high = comparison.interval
    interval = f"{comparison.confidence:.0%} interval {low:+.1%} to {high:+.1%}"
    if n < settings.min_series:
        interval = f"only {n} series, no interval"
    if comparison.mode == OVERLAP:
        where = (
            f"on {n} series x {len(windows['challenger'])} window(s) "
            f"({comparison.points['challenger']} points) scored against the same actuals"
        )
        return f"{where}, the challenger's scaled error is {size} the champion's ({interval})"
    if comparison.mode == NAIVE_RELATIVE:
        mine, theirs = windows["challenger"], windows["champion"]
        spans = f"windows {_span(mine)} vs the champion's {_span(theirs)}"
        if mine == theirs:
            spans = f"the {len(mine)} window(s) both backtests share, {_span(mine)}"
        where = f"relative to seasonal naive on each model's own backtest ({n} series; {spans})"
        return f"{where}, the challenger's error is {size} the champion's ({interval})"
    where = f"on its own backtest ({n} series x {len(windows['challenger'])} window(s))"
    return f"{where}, its scaled error is {size} seasonal naive's ({interval})"


def _not_worse(comparison: Comparison, settings: GateSettings) -> str:
    if comparison.difference <= 0:
        return "not worse"
    if comparison.difference <= settings.tolerance:
        return f"within the {settings.tolerance:.0%} tolerance"
    return "worse, but not credibly beyond the tolerance on this much data"


def _span(windows: tuple[str, ...]) -> str:
    return windows[0] if len(windows) == 1 else f"{windows[0]}..{windows[-1]}"


def brief(evidence: Mapping[str, Any] | None) -> str:
    """The evidence in a few words, for a column of ``salesmesh versions``."""
    if not evidence:
        return "-"
    found = evidence.get("comparison") or evidence.get("baseline") or {}
    if not found:
        return str(evidence.get("mode") or "-")
    low, high = found.get("interval") or (None, None)
    figure = _percent(found.get("relative_difference"))
    return (
        f"{found['mode']} {figure} [{_percent(low)}, {_percent(high)}] "
        f"on {found.get('series')} series"
    )


def _percent(value: Any) -> str:
    return "inf" if value is None else f"{float(value):+.1%}"


def intervals(metrics: Mapping[str, Any], settings: GateSettings) -> tuple[str, dict[str, Any]]:
    """Why the challenger's quantiles cannot be trusted ("" when they can, or cannot be
    judged), and the figures that say so for the evidence. ``metrics`` is the run's
    metrics.json or its registry summary."""
    figures = (metrics.get("models") or {}).get(MODEL) or {}
    protocol = metrics.get("protocol") or {}
    held, points = figures.get("coverage_80"), protocol.get("points")
    low, high = settings.interval_band
    found = {"coverage_80": held, "points": points, "band": [low, high]}
    if not isinstance(held, float):
        return "", {**found, "judged": "no quantile figures"}
    if isinstance(points, int) and points < settings.min_interval_points:
        return "", {**found, "judged": f"fewer than {settings.min_interval_points} points"}
    exact = figures.get("spl") == 0.0  # exact forecasts: the interval collapses onto them
    if held < low:
        why = f"too narrow, its 80 % interval held only {held:.1%} of the backtest's actuals"
    elif held > high and not exact:
        why = f"too wide, its 80 % interval held {held:.1%} of the backtest's actuals"
    else:
        return "", {**found, "judged": "inside the band"}
    where = f"{points} points" if isinstance(points, int) else "its backtest"
    band = f"(sane: {low:.0%}-{high:.0%}, on {where})"
    return f"its quantiles are {why} {band}", {**found, "judged": "outside the band"}
