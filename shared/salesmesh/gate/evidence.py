"""The evidence a run leaves for the gate (its ``gate.json``), and the gate on two runs.

The trainer writes ``gate.json`` beside ``metrics.json`` (see :func:`block`; tables are
columnar: one list per column, all of one length; errors and values are in sales units)::

    {
      "format": 2,
      "id": "gs://.../runs/r-...",  # the run
      "series": ["s1", ...],    # every series the model forecasts
      "inactive": ["s9", ...],  # series of its data it does not forecast: silent too long
      "backtest": {             # its rolling-origin backtest, as serving forecasts (no plan)
        "series": [...], "window": [...], "step": [...],   # window: the first forecast date
        "model": [...], "naive": [...],  # |error| of the model and of seasonal naive
        "scale": [...]          # the series' in-sample seasonal-naive MAE before the window
      },
      "forecast": {             # what it serves: its forecast from the end of its data
        "series": [...], "window": [...], "step": [...], "date": [...], "forecast": [...]
      },
      "since": {                # its backtest from the data ends of earlier runs (a champion's
        "series": [...], "window": [...], "step": [...],   # forecast window), with the
        "forecast": [...], "actual": [...], "scale": [...] # actuals that arrived since
      }
    }

When the challenger's ``since`` holds the window of the champion's ``forecast``, the two are
scored against the same actuals (an :class:`Overlap`). The evidence does not fit a registry
version's metrics (8 KB on Vertex AI), so the gate reads both runs' ``gate.json`` from their
artifacts (:mod:`salesmesh.gate.runs`). A version without it (an older run) is gated by
:func:`policy.gate` as before.
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
from salesmesh.gate.decide import Coverage, decide, intervals
from salesmesh.rollout import policy

GATE = "gate"
FILE = "gate.json"
FORMAT = 2
BACKTEST, FORECAST, SINCE = "backtest", "forecast", "since"
FORECAST_COLUMNS = ("series", "window", "step", "date", "forecast")
SINCE_COLUMNS = ("series", "window", "step", "forecast", "actual", "scale")
# what must match for two backtests' ratios to seasonal naive to be comparable
SAME = ("horizon", "freq", "season_length")


@dataclass(frozen=True)
class Evidence:
    """One run's ``gate`` block, checked."""

    id: str
    series: frozenset[str]
    inactive: frozenset[str]
    backtest: pd.DataFrame
    forecast: pd.DataFrame | None
    since: pd.DataFrame | None

    @property
    def window(self) -> str | None:
        """The first date this run forecasts (its ``forecast``'s window), if it says."""
        if self.forecast is None or self.forecast.empty:
            return None
        return str(self.forecast["window"].iloc[0])


def block(
    run_id: str,
    series: Sequence[str],
    inactive: Sequence[str],
    backtest: pd.DataFrame,
    forecast: pd.DataFrame,
    since: pd.DataFrame,
) -> dict[str, Any]:
    """The ``gate.json`` of a run, from its tables (columns as in the module docstring)."""
    return {
        "format": FORMAT,
        "id": run_id,
        "series": sorted(str(s) for s in series),
        "inactive": sorted(str(s) for s in inactive),
        BACKTEST: _columnar(backtest, BACKTEST_COLUMNS),
        FORECAST: _columnar(forecast, FORECAST_COLUMNS),
        SINCE: _columnar(since, SINCE_COLUMNS),
    }


def _columnar(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[Any]]:
    """Plain JSON lists; figures to 6 significant digits, a missing one as null."""
    table: dict[str, list[Any]] = {}
    for column in columns:
        values = frame[column]
        if column in ("series", "window", "date"):
            table[column] = values.astype(str).tolist()
        elif column == "step":
            table[column] = values.astype(int).tolist()
        else:
            table[column] = [
                float(f"{v:.6g}") if math.isfinite(v) else None for v in values.astype(float)
            ]
    return table


def read(metrics: Mapping[str, Any]) -> Evidence | None:
    """The ``gate`` entry of a run's metrics (its ``gate.json``), None when it has none, or
    GateEvidenceError."""
    found = metrics.get(GATE)
    if found is None:
        return None
    if not isinstance(found, Mapping) or found.get("format") != FORMAT:
        raise GateEvidenceError(f"the {FILE} is not format {FORMAT}")
    return Evidence(
        id=str(found.get("id") or ""),
        series=frozenset(_names(found, "series")),
        inactive=frozenset(_names(found, "inactive")) if "inactive" in found else frozenset(),
        backtest=_frame(found.get(BACKTEST), BACKTEST_COLUMNS, BACKTEST),
        forecast=_optional(found, FORECAST, FORECAST_COLUMNS),
        since=_optional(found, SINCE, SINCE_COLUMNS),
    )


def _optional(found: Mapping[str, Any], name: str, columns: Sequence[str]) -> pd.DataFrame | None:
    return None if found.get(name) is None else _frame(found[name], columns, name)


def judge(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    settings: GateSettings | None = None,
    coverage: Coverage | None = None,
) -> policy.GateDecision:
    """Gate ``challenger`` against ``champion`` (full metrics.json dicts) on the soundest
    evidence both carry: overlap, else naive-relative, else :func:`policy.gate`; then on the
    challenger's own quantiles (:func:`salesmesh.gate.decide.intervals`).

    ``coverage`` defaults to the series the two runs forecast, a series counting as active
    unless the challenger's data shows it silent; pass it (from each run's series.csv) to
    check coverage for older runs too.
    """
    settings = settings or GateSettings()
    decision = _judge(challenger, champion, settings, coverage)
    problem, found = intervals(challenger, settings)
    evidence = {**(decision.evidence or {}), "intervals": found}
    if problem and decision.passed:
        return replace(
            decision, passed=False, reason=f"{decision.reason}; but {problem}", evidence=evidence
        )
    return replace(decision, evidence=evidence)


def _judge(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    settings: GateSettings,
    coverage: Coverage | None,
) -> policy.GateDecision:
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
        coverage = Coverage(theirs.series, mine.series, theirs.series - mine.inactive)
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
    window, forecast, since = theirs.window, theirs.forecast, mine.since
    if window is None or forecast is None or since is None or since.empty:
        notes.append("no overlapping actuals yet")
    elif not (since["window"] == window).any():
        notes.append(f"no backtest from the champion's first forecast date {window}")
    else:
        rows = _overlap(since[since["window"] == window], forecast)
        counts = rows.dropna(subset=["champion"]).groupby("series")["champion"].count()
        long_enough = counts.index[counts >= settings.min_overlap_points]
        if len(long_enough):
            rows = rows[rows["series"].isin(long_enough)]
            try:
                return compare(Overlap(rows), settings), "scored against the same actuals"
            except GateEvidenceError as exc:
                notes.append(f"overlap unusable: {exc}")
        else:
            notes.append(f"overlap under {settings.min_overlap_points} points a series")
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


def _overlap(since: pd.DataFrame, forecast: pd.DataFrame) -> pd.DataFrame:
    """The champion's forecasts and the challenger's backtest from the same first date,
    against the actuals that arrived since: one row per series and step both forecast."""
    served = forecast.loc[:, ["series", "window", "step", "forecast"]]
    both = since.merge(
        served.rename(columns={"forecast": "served"}), on=["series", "window", "step"]
    )
    actual = pd.to_numeric(both["actual"], errors="coerce")
    return pd.DataFrame(
        {
            "series": both["series"],
            "window": both["window"],
            "step": both["step"],
            "champion": (pd.to_numeric(both["served"], errors="coerce") - actual).abs(),
            "challenger": (pd.to_numeric(both["forecast"], errors="coerce") - actual).abs(),
            "scale": both["scale"],
        },
        columns=list(OVERLAP_COLUMNS),
    )


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
        raise GateEvidenceError(f"the {FILE}'s '{key}' is not a list of series")
    return [str(n) for n in names]


def _mase(metrics: Mapping[str, Any]) -> float | None:
    try:
        value = float(metrics["models"][policy.MODEL]["mase"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
