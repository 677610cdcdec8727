"""Champion vs challenger on the same series: paired per-series errors and a bootstrap interval.

Two kinds of evidence, as DataFrames with named columns (one row per series, window and step):

- :class:`Overlap`: both models' absolute errors against the *same* actuals (the champion's stored
  forecasts and the challenger's backtest from the same origin), with each series' scale.
- :class:`NaiveRelative`: each model's own backtest, its absolute errors beside those of seasonal
  naive on the same points; used when no actuals overlap yet. A harder window makes the model and
  seasonal naive worse together, so the ratio of the two is what carries over between windows.

Each series gets one number per model (its mean scaled error, or its ratio to seasonal naive), the
series are paired, and the relative difference is ``sum(challenger) / sum(champion) - 1`` (for
naive-relative evidence, ratios of those sums): positive means the challenger is worse.

The interval resamples *series*, not points. A series' errors at consecutive steps and windows
move together (one level shift spoils 28 steps at once), so points are not independent draws and
resampling them would give intervals far too narrow. Series are the units the gate generalises
over, and the windows (one to three) are too few to resample; the pairing already removes what
a window does to all series alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.errors import ConfigError, GateEvidenceError

Vector = NDArray[np.float64]
OVERLAP, NAIVE_RELATIVE, SEASONAL_NAIVE = "overlap", "naive_relative", "seasonal_naive"
KEYS = ("series", "window", "step")
OVERLAP_COLUMNS = (*KEYS, "champion", "challenger", "scale")
BACKTEST_COLUMNS = (*KEYS, "model", "naive", "scale")


@dataclass(frozen=True)
class GateSettings:
    """How sure the gate must be, and of how much, before it keeps a challenger out."""

    tolerance: float = 0.05  # how much worse (relative) still counts as "not worse"
    confidence: float = 0.90  # two-sided interval; its lower end gates, i.e. 95 % one-sided
    resamples: int = 2000
    seed: int = 0
    min_series: int = 3  # fewer series have no spread to resample: the small-sample rule decides
    clear_margin: float = 0.25  # small samples: gated only when worse by this on every series
    min_overlap_points: int = 7  # per series; a shorter overlap is too thin, backtests decide
    # the share of backtest actuals the challenger's 80 % interval may hold: below, its
    # intervals are too narrow to plan safety stock on; above, too wide to say anything
    interval_band: tuple[float, float] = (0.60, 0.98)
    min_interval_points: int = 30  # fewer backtest points are too few to judge an interval

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1 or self.resamples < 1 or self.min_series < 1:
            raise ConfigError(
                "gate settings need 0 < confidence < 1, resamples >= 1 and min_series >= 1; "
                f"got {self.confidence}, {self.resamples}, {self.min_series}"
            )
        low, high = self.interval_band
        if not 0 <= low < high <= 1:
            raise ConfigError(f"the gate's interval band must lie in [0, 1], got {low}, {high}")
        if self.tolerance < 0 or self.clear_margin < 0:
            raise ConfigError("the gate's tolerance and clear_margin must not be negative")


@dataclass(frozen=True)
class Overlap:
    """Champion and challenger scored against the same actuals (columns :data:`OVERLAP_COLUMNS`:
    absolute errors, and each series' in-sample seasonal-naive MAE before the window)."""

    errors: pd.DataFrame


@dataclass(frozen=True)
class NaiveRelative:
    """Each model's own backtest (columns :data:`BACKTEST_COLUMNS`: absolute errors of the model
    and of seasonal naive, and the series' scale), on windows that may differ."""

    challenger: pd.DataFrame
    champion: pd.DataFrame


@dataclass(frozen=True)
class Comparison:
    """The paired comparison: positive ``difference`` means the challenger is worse."""

    mode: str
    difference: float
    interval: tuple[float, float]
    confidence: float
    resamples: int
    series: tuple[str, ...]
    by_series: tuple[float, ...]  # each series' own relative difference, in ``series`` order
    windows: Mapping[str, tuple[str, ...]]  # "challenger" / "champion" -> window labels
    points: Mapping[str, int]
    scores: Mapping[str, float]  # mean scaled error, or ratio to seasonal naive, per model

    def worse(self, margin: float) -> list[str]:
        """Series on which the challenger is worse by more than ``margin``."""
        return [s for s, d in zip(self.series, self.by_series, strict=True) if d > margin]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (non-finite figures as null) for the version's record."""
        return {
            "mode": self.mode,
            "relative_difference": _json(self.difference),
            "interval": [_json(self.interval[0]), _json(self.interval[1])],
            "confidence": self.confidence,
            "resamples": self.resamples,
            "series": len(self.series),
            "series_worse": sum(d > 0 for d in self.by_series),
            "series_better": sum(d < 0 for d in self.by_series),
            "windows": {k: list(v) for k, v in self.windows.items()},
            "points": dict(self.points),
            "scores": {k: _json(v) for k, v in self.scores.items()},
        }


def compare(evidence: Overlap | NaiveRelative, settings: GateSettings | None = None) -> Comparison:
    """Pair the two models per series and bootstrap the relative difference over series."""
    settings = settings or GateSettings()
    if isinstance(evidence, Overlap):
        table = _table(evidence.errors, OVERLAP_COLUMNS, "overlap")
        means = _per_series(table, ("challenger", "champion"))
        ones = np.ones(len(means))
        windows = tuple(sorted(table["window"].unique()))
        return _paired(
            OVERLAP,
            means,
            (means["challenger"].to_numpy(), ones, means["champion"].to_numpy(), ones),
            {"challenger": windows, "champion": windows},
            {"challenger": len(table), "champion": len(table)},
            settings,
        )
    mine = _table(evidence.challenger, BACKTEST_COLUMNS, "challenger backtest")
    theirs = _table(evidence.champion, BACKTEST_COLUMNS, "champion backtest")
    # on windows both backtests share, a harder window weighs on both models alike
    shared = set(mine["window"]) & set(theirs["window"])
    both = mine[mine["window"].isin(shared)], theirs[theirs["window"].isin(shared)]
    if set(both[0]["series"]) & set(both[1]["series"]):
        mine, theirs = both
    means = _per_series(mine, ("model", "naive")).join(
        _per_series(theirs, ("model", "naive")), how="inner", lsuffix="_c", rsuffix="_h"
    )
    if means.empty:
        raise GateEvidenceError("the two backtests have no series in common")
    a, a_ref, b, b_ref = (means[c].to_numpy() for c in ("model_c", "naive_c", "model_h", "naive_h"))
    return _paired(
        NAIVE_RELATIVE,
        means,
        (a, a_ref, b, b_ref),
        {"challenger": _windows(mine, means.index), "champion": _windows(theirs, means.index)},
        {"challenger": _points(mine, means.index), "champion": _points(theirs, means.index)},
        settings,
    )


def versus_naive(backtest: pd.DataFrame, settings: GateSettings | None = None) -> Comparison:
    """A model's own backtest against seasonal naive on the same points (the baseline rule)."""
    table = _table(backtest, BACKTEST_COLUMNS, "backtest")
    errors = table.rename(columns={"model": "challenger", "naive": "champion"})
    return replace(compare(Overlap(errors), settings), mode=SEASONAL_NAIVE)


def _paired(
    mode: str,
    means: pd.DataFrame,
    sums: tuple[Vector, Vector, Vector, Vector],
    windows: Mapping[str, tuple[str, ...]],
    points: Mapping[str, int],
    settings: GateSettings,
) -> Comparison:
    """``(sum a / sum a_ref) / (sum b / sum b_ref) - 1`` and its percentile bootstrap interval."""
    a, a_ref, b, b_ref = sums
    rng = np.random.default_rng(settings.seed)
    n = len(a)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=settings.resamples).astype(float)
    resampled = _relative(counts @ a * (counts @ b_ref), counts @ a_ref * (counts @ b))
    tail = (1.0 - settings.confidence) / 2.0
    # no interpolation: a resample may be infinite (a champion without error), never NaN
    low, high = np.quantile(resampled, [tail, 1.0 - tail], method="inverted_cdf")
    return Comparison(
        mode=mode,
        difference=float(_relative(np.sum(a) * np.sum(b_ref), np.sum(a_ref) * np.sum(b))),
        interval=(float(low), float(high)),
        confidence=settings.confidence,
        resamples=settings.resamples,
        series=tuple(str(s) for s in means.index),
        by_series=tuple(float(d) for d in _relative(a * b_ref, a_ref * b)),
        windows=windows,
        points=points,
        scores={"challenger": _score(a, a_ref), "champion": _score(b, b_ref)},
    )


def _relative(numerator: Any, denominator: Any) -> Vector:
    """``numerator / denominator - 1``; 0 when both are 0, +inf when only the denominator is."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0) - 1.0, np.inf)
    return np.asarray(np.where((den <= 0) & (num <= 0), 0.0, ratio), dtype=float)


def _score(values: Vector, reference: Vector) -> float:
    total = float(np.sum(reference))
    return float(np.sum(values)) / total if total > 0 else float("inf")


def _table(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> pd.DataFrame:
    """The columns the gate reads, checked: keys as text, errors >= 0, scales > 0; rows with a
    missing error (a point not scored) are left out."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise GateEvidenceError(f"the {name} table lacks column(s) {', '.join(missing)}")
    table = frame.loc[:, list(columns)].copy()
    for key in ("series", "window"):
        table[key] = table[key].astype(str)
    for column in columns[3:]:
        values = pd.to_numeric(table[column], errors="coerce")
        if bool((values < 0).any()):
            raise GateEvidenceError(f"the {name} table has negative values in '{column}'")
        table[column] = values.astype(float)
    table = table.dropna(subset=list(columns[3:5]))
    scale = table["scale"]
    if bool((~np.isfinite(scale) | (scale <= 0)).any()):
        raise GateEvidenceError(f"the {name} table has a missing or zero 'scale'")
    if table.empty:
        raise GateEvidenceError(f"the {name} table has no scored points")
    return table


def _per_series(table: pd.DataFrame, columns: tuple[str, str]) -> pd.DataFrame:
    """Each series' mean scaled error per column, series sorted (so row order never matters)."""
    scaled = table[list(columns)].div(table["scale"], axis=0).assign(series=table["series"])
    return scaled.groupby("series").mean().sort_index()


def _windows(table: pd.DataFrame, series: pd.Index) -> tuple[str, ...]:
    return tuple(sorted(table.loc[table["series"].isin(series), "window"].unique()))


def _points(table: pd.DataFrame, series: pd.Index) -> int:
    return int(table["series"].isin(series).sum())


def _json(value: float) -> float | None:
    return round(value, 6) if np.isfinite(value) else None
