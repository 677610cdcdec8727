"""Rolling-origin backtest of the model against seasonal naive and ETS.

Protocol: ``origins`` consecutive forecast origins, ``horizon`` periods apart, the last one
``horizon`` periods before the end of the data. The gradient-boosted model is fitted once on the
data before the first origin and then forecasts from every origin with the history known at that
origin (refitting at each origin would triple the cost of a training job for little change in
the figures); ETS and seasonal naive are refitted at every origin, which only favours them.

The first origin chooses the GBM/ETS blend weight; the figures pool the later origins, which the
choice never saw. With a single origin the choice and the figures share it, and the protocol
says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.errors import ForecastError
from salesmesh.forecast import baselines, metrics
from salesmesh.forecast.model import BLEND_WEIGHTS, Forecaster, Params, fit_panel, reforecast
from salesmesh.forecast.panel import Panel, season_length

Matrix = NDArray[np.float64]
MODEL = "salesmesh"
GBM = "gbm"


@dataclass
class Backtest:
    """Backtest figures plus the forecasts of the last origin, for plots."""

    metrics: dict[str, Any]
    last_origin: pd.Timestamp
    actual: Matrix  # (series, horizon) at the last origin
    forecasts: dict[str, Matrix]  # model name -> (series, horizon) at the last origin
    dates: pd.DatetimeIndex
    series: NDArray[np.object_]
    blend_weight: float  # chosen on the first origin; the final model reuses it


def run(panel: Panel, horizon: int, origins: int = 3, params: Params | None = None) -> Backtest:
    """Backtest on ``panel``; fewer origins are used when the history is short."""
    params = params or Params()
    season = season_length(panel.freq)
    length = panel.values.shape[1]
    minimum_train = max(2 * season, horizon, 3)
    origins = min(origins, (length - minimum_train) // horizon)
    if origins < 1:
        raise ForecastError(
            f"a backtest with horizon {horizon} needs at least {minimum_train + horizon} periods "
            f"of history; the data has {length}"
        )
    cuts = [length - k * horizon for k in range(origins, 0, -1)]
    model = fit_panel(panel.truncate(cuts[0]), horizon, params, blend_weight=1.0)

    windows = [_window(model, panel, cut, horizon, season) for cut in cuts]
    weight = choose_weight(windows[0]) if params.blend else 1.0
    scored = windows[1:] or windows
    for window in windows:
        window.forecasts[MODEL] = _blend(window, weight)
        del window.forecasts[GBM]

    actual = np.concatenate([w.actual for w in scored])
    scale = np.concatenate([w.scale for w in scored])
    figures = {
        name: metrics.summarize(actual, np.concatenate([w.forecasts[name] for w in scored]), scale)
        for name in (MODEL, "seasonal_naive", "ets")
    }
    summary: dict[str, Any] = {
        "protocol": {
            "origins": [panel.dates[cut].date().isoformat() for cut in cuts],
            "horizon": horizon,
            "season_length": season,
            "freq": panel.freq,
            "refit": "model fitted once before the first origin; baselines at every origin",
            "scored_origins": [panel.dates[cut].date().isoformat() for cut in cuts[-len(scored) :]],
            "blend_chosen_on": panel.dates[cuts[0]].date().isoformat(),
            "series": len(panel.series),
        },
        "models": figures,
        "relative_mase": {
            f"vs_{name}": _ratio(figures[MODEL]["mase"], figures[name]["mase"])
            for name in ("seasonal_naive", "ets")
        },
        "blend_weight_gbm": weight,
    }
    last, final = cuts[-1], windows[-1]
    return Backtest(
        metrics=summary,
        last_origin=pd.Timestamp(panel.dates[last]),
        actual=_expand(final.actual, final.started),
        forecasts={name: _expand(f, final.started) for name, f in final.forecasts.items()},
        dates=panel.dates[last : last + horizon],
        series=panel.series,
        blend_weight=weight,
    )


@dataclass
class _Window:
    """One origin: forecasts, actuals and MASE scales of the series that had started by then."""

    started: NDArray[np.bool_]
    actual: Matrix
    scale: NDArray[np.float64]
    forecasts: dict[str, Matrix]


def _window(model: Forecaster, panel: Panel, cut: int, horizon: int, season: int) -> _Window:
    known = panel.truncate(cut)
    started = np.asarray(~np.isnan(known.values).all(axis=1), dtype=bool)
    regressors = {name: m[:, cut : cut + horizon] for name, m in panel.regressors.items()}
    forecasts = {
        GBM: reforecast(model, known, panel.dates[cut : cut + horizon], regressors),
        "seasonal_naive": baselines.seasonal_naive(known.values, season, horizon),
        "ets": baselines.ets_forecast(known.values, season, horizon),
    }
    return _Window(
        started,
        panel.values[started, cut : cut + horizon],
        metrics.seasonal_scale(known.values[started], season),
        {name: forecast[started] for name, forecast in forecasts.items()},
    )


def choose_weight(window: _Window) -> float:
    """The GBM share, among :data:`BLEND_WEIGHTS`, with the lowest MASE on ``window``."""
    scores = [
        float(np.nanmean(np.abs(window.actual - _blend(window, w)) / window.scale[:, None]))
        for w in BLEND_WEIGHTS
    ]
    return float(BLEND_WEIGHTS[int(np.nanargmin(scores))])


def _blend(window: _Window, weight: float) -> Matrix:
    return weight * window.forecasts[GBM] + (1.0 - weight) * window.forecasts["ets"]


def _expand(rows: Matrix, started: NDArray[np.bool_]) -> Matrix:
    """Re-expand per-started-series rows to all series (the others as NaN)."""
    out = np.full((len(started), rows.shape[1]), np.nan)
    out[started] = rows
    return out


def _ratio(a: object, b: object) -> float | None:
    if isinstance(a, float) and isinstance(b, float) and b > 0:
        return round(a / b, 4)
    return None
