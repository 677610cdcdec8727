"""Scores of the forecast benchmark: per-series point and quantile errors, their summaries over
series, windows and sets, and the issue 12 targets. Pure numpy; ``bench/forecast.py`` fits.

Every per-series figure is scaled like MASE: divided by the series' in-sample seasonal-naive
MAE (``salesmesh.forecast.metrics.seasonal_scale``), so series of every size weigh the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

TAUS = (0.1, 0.25, 0.5, 0.75, 0.9)
# central intervals: name -> (index of the lower level, index of the upper level) in TAUS
INTERVALS = {"50": (1, 3), "80": (0, 4)}
ETS_LEVELS = (50, 80)

ZERO_RULE = (
    "A series whose figure is 0 for a model (a perfect forecast of an all-zero holdout) "
    "cannot enter a geometric mean; it is left out of that figure's geometric means for both "
    "models of the comparison (salesmesh and AutoETS; salesmesh and seasonal naive), and the "
    "count is shown."
)


def point_errors(actual: Array, point: Array, scale: Array) -> tuple[Array, Array]:
    """Per-series MASE and sMAPE (0-200 %) of ``point`` on ``actual``, both ``(series, steps)``."""
    errors = np.abs(actual - point)
    denominator = np.abs(actual) + np.abs(point)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denominator > 0, 2.0 * errors / denominator, 0.0)  # 0/0 is perfect
    return errors.mean(axis=1) / scale, 100.0 * ratio.mean(axis=1)


def scaled_pinball(actual: Array, quantiles: Array, scale: Array) -> Array:
    """Per-series scaled pinball loss: the pinball loss of ``quantiles`` ``(series, steps,
    len(TAUS))`` averaged over the levels and the steps, divided by ``scale``."""
    taus = np.asarray(TAUS)
    diff = actual[..., None] - quantiles
    loss = np.maximum(taus * diff, (taus - 1.0) * diff)
    return np.asarray(loss.mean(axis=(1, 2)) / scale, dtype=np.float64)


def interval_hits(actual: Array, quantiles: Array) -> dict[str, NDArray[np.int64]]:
    """Per series, how many holdout points fall inside each of :data:`INTERVALS`."""
    out = {}
    for name, (low, high) in INTERVALS.items():
        inside = (actual >= quantiles[..., low]) & (actual <= quantiles[..., high])
        out[name] = inside.sum(axis=1).astype(np.int64)
    return out


def tidy_quantiles(quantiles: Array) -> Array:
    """Clipped at 0 and non-decreasing along the last axis (the levels), as the study did for
    every model's intervals: demand is never negative and a crossing band is no band."""
    return np.asarray(np.maximum.accumulate(np.clip(quantiles, 0.0, None), axis=-1))


def interval_columns(model: str) -> list[str]:
    """statsforecast's columns for ``model`` with ``level=[50, 80]``, in :data:`TAUS` order:
    lo-80, lo-50, the point forecast (as the median), hi-50, hi-80."""
    return [f"{model}-lo-80", f"{model}-lo-50", model, f"{model}-hi-50", f"{model}-hi-80"]


def geometric_mean(values: Array) -> float:
    """Geometric mean of positive values; NaN when there are none."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.all(values > 0):
        return math.nan
    return float(np.exp(np.mean(np.log(values))))


def paired_geometric_means(figures: Mapping[str, Array]) -> tuple[dict[str, float], int]:
    """Geometric mean over series of each model's per-series figure (same series order in
    every array), over the series where every model's figure is positive and finite
    (:data:`ZERO_RULE`); also how many series were left out."""
    if not figures:
        return {}, 0
    stacked = np.stack([np.asarray(v, dtype=np.float64) for v in figures.values()])
    usable = np.all(np.isfinite(stacked) & (stacked > 0), axis=0)
    means = {name: geometric_mean(row[usable]) for name, row in zip(figures, stacked, strict=True)}
    return means, int((~usable).sum())


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or not denominator > 0:
        return None
    value = numerator / denominator
    return value if math.isfinite(value) else None


def geometric_mean_of(values: Sequence[float | None]) -> float | None:
    """Geometric mean over sets; None when any set lacks the figure."""
    if not values or any(v is None or not v > 0 for v in values):
        return None
    return geometric_mean(np.asarray(values, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# issue 12 targets, over the real sets

SPL_MAX = 0.85  # scaled pinball loss, geometric mean over sets, x AutoETS's
COVERAGE_80 = (0.76, 0.86)  # 80 % interval coverage, geometric mean over sets
MASE_MAX = 0.90  # point MASE, geometric mean over sets, x AutoETS's
WORST_SET_MAX = 1.15  # no set worse than this x AutoETS on MASE or SPL


@dataclass(frozen=True)
class SetRatios:
    """One real set's figures that the targets read."""

    name: str
    mase_ratio: float | None  # salesmesh / AutoETS
    spl_ratio: float | None
    coverage_80: float | None  # salesmesh


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    value: float | None
    detail: str  # the figure as read, e.g. "0.912 x AutoETS" or "1.02 (pbs_scripts)"
    met: bool | None  # None: a figure is missing


def _worst(sets: Sequence[SetRatios], attr: str) -> tuple[float | None, str]:
    values = [(getattr(s, attr), s.name) for s in sets]
    if not values or any(v is None for v, _ in values):
        return None, ""
    value, name = max(values, key=lambda item: float(item[0]))
    return float(value), name


def targets(sets: Sequence[SetRatios]) -> list[Target]:
    """The issue's benchmark targets, each with its verdict computed from the set figures."""
    spl = geometric_mean_of([s.spl_ratio for s in sets])
    mase = geometric_mean_of([s.mase_ratio for s in sets])
    cover = geometric_mean_of([s.coverage_80 for s in sets])
    worst_mase, mase_set = _worst(sets, "mase_ratio")
    worst_spl, spl_set = _worst(sets, "spl_ratio")
    low, high = COVERAGE_80

    def within(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    def shown(value: float | None, suffix: str = "") -> str:
        return "n/a" if value is None else f"{value:.3f}{suffix}"

    return [
        Target(
            "scaled pinball loss vs AutoETS, geometric mean over sets",
            f"<= {SPL_MAX:.2f} x AutoETS",
            spl,
            shown(spl, " x AutoETS"),
            within(spl, SPL_MAX),
        ),
        Target(
            "80 % interval coverage, geometric mean over sets",
            f"{low:.2f}-{high:.2f}",
            cover,
            shown(cover),
            None if cover is None else low <= cover <= high,
        ),
        Target(
            "point MASE vs AutoETS, geometric mean over sets",
            f"<= {MASE_MAX:.2f} x AutoETS",
            mase,
            shown(mase, " x AutoETS"),
            within(mase, MASE_MAX),
        ),
        Target(
            "worst set, MASE vs AutoETS",
            f"<= {WORST_SET_MAX:.2f} x AutoETS",
            worst_mase,
            shown(worst_mase, f" x AutoETS ({mase_set})"),
            within(worst_mase, WORST_SET_MAX),
        ),
        Target(
            "worst set, scaled pinball loss vs AutoETS",
            f"<= {WORST_SET_MAX:.2f} x AutoETS",
            worst_spl,
            shown(worst_spl, f" x AutoETS ({spl_set})"),
            within(worst_spl, WORST_SET_MAX),
        ),
    ]
