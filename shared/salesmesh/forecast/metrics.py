"""Forecast accuracy metrics over (series x horizon-step) arrays.

Every function takes ``actual`` and ``forecast`` shaped ``(series, steps)`` and returns one value
per horizon step, so callers get the error-by-horizon curve and the overall figure from the same
code.
MASE scales each series by its in-sample seasonal-naive error (Hyndman & Koehler, 2006) so
that series of different sizes weigh the same; WAPE and bias are volume-weighted, as planners
read them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

METRICS = ("mase", "smape", "wape", "bias")


def seasonal_scale(history: Array, season: int) -> Array:
    """In-sample mean absolute seasonal difference per series (the MASE denominator).

    ``history`` is ``(series, time)`` with NaN before a series starts. Series too short for a
    seasonal difference fall back to the lag-1 difference; a flat series gets scale 1 so that its
    errors still count in absolute units instead of dividing by zero.
    """
    scales = np.full(history.shape[0], np.nan)
    for lag in (season, 1):
        if history.shape[1] <= lag:
            continue
        diffs = np.abs(history[:, lag:] - history[:, :-lag])
        with np.errstate(invalid="ignore"):
            counts = np.sum(~np.isnan(diffs), axis=1)
            means = np.nansum(diffs, axis=1) / np.maximum(counts, 1)
        fill = np.isnan(scales) & (counts > 0)
        scales[fill] = means[fill]
    scales[~np.isfinite(scales) | (scales <= 0)] = 1.0
    return scales


def mase(actual: Array, forecast: Array, scale: Array) -> Array:
    """Mean absolute scaled error per horizon step, averaged over series."""
    return np.asarray(np.nanmean(np.abs(actual - forecast) / scale[:, None], axis=0))


def smape(actual: Array, forecast: Array) -> Array:
    """Symmetric MAPE in percent (0-200) per horizon step; 0/0 counts as a perfect forecast."""
    denominator = np.abs(actual) + np.abs(forecast)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(denominator > 0, 2.0 * np.abs(actual - forecast) / denominator, 0.0)
    ratio[np.isnan(actual)] = np.nan
    return np.asarray(100.0 * np.nanmean(ratio, axis=0))


def wape(actual: Array, forecast: Array) -> Array:
    """Weighted absolute percentage error in percent: sum |error| / sum actual, per step."""
    total = np.nansum(np.abs(actual), axis=0)
    errors = np.nansum(np.abs(actual - forecast), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(total > 0, 100.0 * errors / total, np.nan))


def bias(actual: Array, forecast: Array) -> Array:
    """Signed volume error in percent: positive means over-forecasting, per step."""
    total = np.nansum(np.abs(actual), axis=0)
    signed = np.nansum(forecast - actual, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(total > 0, 100.0 * signed / total, np.nan))


# the central intervals reported, by name: (lower level, upper level)
INTERVALS = {"coverage_50": (0.25, 0.75), "coverage_80": (0.1, 0.9)}


def summarize(
    actual: Array,
    forecast: Array,
    scale: Array,
    quantiles: tuple[Sequence[float], Array] | None = None,
) -> dict[str, object]:
    """Overall and per-step figures for one model: ``{"mase": .., ..., "by_horizon": {...}}``.

    The overall WAPE and bias pool all steps (volume-weighted); MASE and sMAPE average the steps.
    With ``quantiles`` (levels, ``(series, steps, levels)``) the figures gain ``spl`` (scaled
    pinball loss, averaged over the steps) and the coverage of the :data:`INTERVALS` whose
    levels are there (pooled over the steps).
    """
    steps = {
        "mase": mase(actual, forecast, scale),
        "smape": smape(actual, forecast),
        "wape": wape(actual, forecast),
        "bias": bias(actual, forecast),
    }
    flat_actual, flat_forecast = actual.reshape(-1, 1), forecast.reshape(-1, 1)
    overall = {
        "mase": float(np.nanmean(steps["mase"])),
        "smape": float(np.nanmean(steps["smape"])),
        "wape": float(wape(flat_actual, flat_forecast)[0]),
        "bias": float(bias(flat_actual, flat_forecast)[0]),
    }
    if quantiles is not None:
        taus, values = quantiles
        levels = [round(float(t), 6) for t in taus]
        steps["spl"] = pinball(actual, values, np.asarray(levels), scale)
        overall["spl"] = float(np.nanmean(steps["spl"]))
        for name, (low, high) in INTERVALS.items():
            if low in levels and high in levels:
                lo, hi = values[..., levels.index(low)], values[..., levels.index(high)]
                steps[name] = coverage(actual, lo, hi)
                flat = coverage(actual.reshape(-1, 1), lo.reshape(-1, 1), hi.reshape(-1, 1))
                overall[name] = float(flat[0])
    return {
        **{name: _clean(value) for name, value in overall.items()},
        "by_horizon": {name: [_clean(float(v)) for v in values] for name, values in steps.items()},
    }


def _clean(value: float) -> float | None:
    """JSON has no NaN: an undefined figure is reported as null."""
    return round(value, 6) if np.isfinite(value) else None


def pinball(actual: Array, quantiles: Array, taus: Array, scale: Array) -> Array:
    """Scaled pinball loss per horizon step: the pinball loss of ``quantiles`` ``(series,
    steps, len(taus))`` averaged over the levels, divided by each series' ``scale`` (as in
    MASE), averaged over series. At the median alone it is half the MASE."""
    diff = actual[..., None] - quantiles
    loss = np.maximum(taus * diff, (taus - 1.0) * diff).mean(axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step with no actual: NaN
        return np.asarray(np.nanmean(loss / scale[:, None], axis=0))


def coverage(actual: Array, low: Array, high: Array) -> Array:
    """Share of the actuals inside ``[low, high]`` per horizon step (NaN actuals left out)."""
    known = ~np.isnan(actual)
    inside = known & (actual >= low) & (actual <= high)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(inside.sum(axis=0) / known.sum(axis=0))
