"""Which evidence gates two versions, read from their runs' full ``metrics.json``.

Beside ``protocol`` and ``models``, the trainer writes a ``gate`` block (tables are columnar:
one list per column, all of one length; errors are absolute, in sales units)::

    "gate": {
      "format": 1,
      "id": "r-...",            # this run's id; an overlap names the champion it scored by it
      "series": ["s1", ...],    # every series the model forecasts
      "active": ["s1", ...],    # optional: every series of the snapshot still active at its
                                #   end, forecast or not (absent: all the champion's count)
      "backtest": {             # the run's own rolling-origin backtest, as serving forecasts
        "series": [...], "window": [...], "step": [...],    # window: the origin's date
        "model": [...], "naive": [...],  # |error| of the model and of seasonal naive
        "scale": [...]          # the series' in-sample seasonal-naive MAE before the window
      },
      "overlap": {              # optional: the champion's stored forecasts and this run's
        "champion_id": "r-...", #   backtest from the same origin, against the same actuals
        "series": [...], "window": [...], "step": [...],
        "champion": [...], "challenger": [...], "scale": [...]
      }
    }

The block does not fit a registry version's metrics (8 KB on Vertex AI; :func:`salesmesh.
rollout.policy.summary` drops it), so the caller reads both runs' ``metrics.json`` from their
artifacts. A version without the block (an older run) is gated by :func:`policy.gate` as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from salesmesh.errors import GateEvidenceError
from salesmesh.gate.compare import (
    BACKTEST_COLUMNS,
    OVERLAP_COLUMNS,
    Comparison,
    GateSettings,
    NaiveRelative,
    Overlap,
    compare,
    versus_naive,
)
from salesmesh.gate.decide import Coverage, decide
from salesmesh.rollout import policy

GATE = "gate"
FORMAT = 1
# what must match for two backtests' ratios to seasonal naive to be comparable
SAME = ("horizon", "freq", "season_length")


@dataclass(frozen=True)
class Evidence:
    """One run's ``gate`` block, checked."""

    id: str
    series: frozenset[str]
    active: frozenset[str] | None
    backtest: pd.DataFrame
    overlap: pd.DataFrame | None
    champion_id: str | None  # whom ``overlap`` scored


def read(metrics: Mapping[str, Any]) -> Evidence | None:
    """The ``gate`` block of a run's metrics, None when it has none, or GateEvidenceError."""
    block = metrics.get(GATE)
    if block is None:
        return None
    if not isinstance(block, Mapping) or block.get("format") != FORMAT:
        raise GateEvidenceError(f"the '{GATE}' block is not format {FORMAT}")
    overlap = block.get("overlap")
    return Evidence(
        id=str(block.get("id") or ""),
        series=frozenset(_names(block, "series")),
        active=frozenset(_names(block, "active")) if "active" in block else None,
        backtest=_frame(block.get("backtest"), BACKTEST_COLUMNS, "backtest"),
        overlap=None if overlap is None else _frame(overlap, OVERLAP_COLUMNS, "overlap"),
        champion_id=None if overlap is None else str(overlap.get("champion_id") or ""),
    )


def judge(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    settings: GateSettings | None = None,
    coverage: Coverage | None = None,
) -> policy.GateDecision:
    """Gate ``challenger`` against ``champion`` (full metrics.json dicts) on the soundest
    evidence both carry: overlap, else naive-relative, else :func:`policy.gate`.

    ``coverage`` defaults to the series the two gate blocks list; pass it (from each run's
    series.csv) to check coverage for older runs too.
    """
    settings = settings or GateSettings()
    mase = (_mase(challenger), None if champion is None else _mase(champion))
    try:
        mine = read(challenger)
        theirs = None if champion is None else read(champion)
    except GateEvidenceError as exc:
        return _legacy(challenger, champion, settings, coverage, f"evidence unusable: {exc}")
    if mine is None or (champion is not None and theirs is None):
        who = "the challenger" if mine is None else "the champion"
        return _legacy(challenger, champion, settings, coverage, f"{who} has no gate evidence")
    if coverage is None and theirs is not None:
        coverage = Coverage(theirs.series, mine.series, mine.active)
    try:
        baseline = versus_naive(mine.backtest, settings)
    except GateEvidenceError as exc:
        return _legacy(challenger, champion, settings, coverage, f"evidence unusable: {exc}")
    comparison, note = None, "no champion yet"
    if champion is not None and theirs is not None:
        comparison, note = _against(mine, theirs, challenger, champion, settings)
    decision = decide(comparison, coverage, settings, baseline=baseline, note=note)
    return replace(decision, challenger_mase=mase[0], champion_mase=mase[1])


def _against(
    mine: Evidence,
    theirs: Evidence,
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any],
    settings: GateSettings,
) -> tuple[Comparison | None, str]:
    """The comparison with the champion, and a note on why it is the one used."""
    notes = []
    if mine.overlap is not None and mine.champion_id and mine.champion_id == theirs.id:
        counts = mine.overlap.groupby("series")["champion"].count()
        long_enough = counts.index[counts >= settings.min_overlap_points]
        if len(long_enough):
            rows = mine.overlap[mine.overlap["series"].isin(long_enough)]
            try:
                return compare(Overlap(rows), settings), "scored against the same actuals"
            except GateEvidenceError as exc:
                notes.append(f"overlap unusable: {exc}")
        else:
            notes.append(f"overlap under {settings.min_overlap_points} points a series")
    elif mine.overlap is not None:
        notes.append(f"overlap scored champion {mine.champion_id!r}, not {theirs.id!r}")
    else:
        notes.append("no overlapping actuals yet")
    mine_protocol = challenger.get("protocol") or {}
    their_protocol = champion.get("protocol") or {}
    for key in SAME:
        if mine_protocol.get(key) != their_protocol.get(key):
            why = f"{key} {mine_protocol.get(key)!r} vs {their_protocol.get(key)!r}"
            return None, "; ".join([*notes, f"backtests not comparable ({why})"])
    try:
        found = compare(NaiveRelative(mine.backtest, theirs.backtest), settings)
    except GateEvidenceError as exc:
        return None, "; ".join([*notes, f"backtests not comparable: {exc}"])
    return found, "; ".join([*notes, "both backtests relative to seasonal naive"])


def _legacy(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    settings: GateSettings,
    coverage: Coverage | None,
    note: str,
) -> policy.GateDecision:
    """Today's pooled-MASE rule, after the coverage rule when the series are known."""
    summaries = policy.summary(challenger), None if champion is None else policy.summary(champion)
    decision = policy.gate(*summaries, settings.tolerance)
    covered = decide(None, coverage, settings, note=note)
    evidence = {**(covered.evidence or {}), "mode": "legacy"}
    if not covered.passed:
        return replace(decision, passed=False, reason=covered.reason, evidence=evidence)
    return replace(decision, evidence=evidence)


def _frame(table: Any, columns: Sequence[str], name: str) -> pd.DataFrame:
    if not isinstance(table, Mapping):
        raise GateEvidenceError(f"the '{name}' table is missing")
    missing = [c for c in columns if not isinstance(table.get(c), list)]
    if missing:
        raise GateEvidenceError(f"the '{name}' table lacks column(s) {', '.join(missing)}")
    lengths = {len(table[c]) for c in columns}
    if len(lengths) > 1:
        raise GateEvidenceError(f"the '{name}' table's columns differ in length")
    return pd.DataFrame({c: table[c] for c in columns})


def _names(block: Mapping[str, Any], key: str) -> list[str]:
    names = block.get(key)
    if not isinstance(names, list):
        raise GateEvidenceError(f"the '{GATE}' block's '{key}' is not a list of series")
    return [str(n) for n in names]


def _mase(metrics: Mapping[str, Any]) -> float | None:
    try:
        value = float(metrics["models"][policy.MODEL]["mase"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
