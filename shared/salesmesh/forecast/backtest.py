"""Rolling-origin backtest of the model against seasonal naive, ETS and Theta.

Protocol: ``origins`` consecutive forecast origins, ``horizon`` periods apart, the last one
``horizon`` periods before the end of the data. The gradient-boosted model is fitted once on the
data before the first origin and then forecasts from every origin with the history known at that
origin (refitting at each origin would triple the cost of a training job for little change in
the figures); the statistical models are refitted at every origin, which only favours them.
Metrics pool all origins; each series is scaled by its own in-sample seasonal-naive error.

The model is scored as it is served: with no plan, promotions off and the price held at its
last regular value (:func:`salesmesh.forecast.model.reforecast` shares that code with
``predict``). Those are the figures under ``models``, the ones the promotion gate reads. When
the data has regressors, the figures the model reaches when told each window's real price and
promotions (a known plan) are reported beside them under ``known_plan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.errors import ForecastError
from salesmesh.forecast import baselines, metrics
from salesmesh.forecast.activity import prepare
from salesmesh.forecast.model import Params, fit_panel, local_forecast, reforecast
from salesmesh.forecast.panel import Panel, season_length

Matrix = NDArray[np.float64]
MODEL = "salesmesh"
BASELINES = ("seasonal_naive", "ets", "theta")
PLAN = "known_plan"  # the model given each window's real regressors


@dataclass
class Backtest:
    """Backtest figures plus the forecasts of the last origin, for plots."""

    metrics: dict[str, Any]
    last_origin: pd.Timestamp
    actual: Matrix  # (series, horizon) at the last origin
    forecasts: dict[str, Matrix]  # model name -> (series, horizon) at the last origin
    dates: pd.DatetimeIndex
    series: NDArray[np.object_]


def run(panel: Panel, horizon: int, origins: int = 3, params: Params | None = None) -> Backtest:
    """Backtest on ``panel``; fewer origins are used when the history is short."""
    params = params or Params()
    season = season_length(panel.freq)
    length = panel.values.shape[1]
    # the data contract admits files with 2 x horizon periods; one horizon must train
    minimum_train = max(horizon, 3)
    origins = min(origins, (length - minimum_train) // horizon)
    if origins < 1:
        raise ForecastError(
            f"a backtest with horizon {horizon} needs at least {minimum_train + horizon} periods "
            f"of history; the data has {length}"
        )
    cuts = [length - k * horizon for k in range(origins, 0, -1)]
    model = fit_panel(panel.truncate(cuts[0]), horizon, params)

    planned = bool(panel.regressors)
    pooled: dict[str, list[Matrix]] = {name: [] for name in (MODEL, *BASELINES)}
    if planned:
        pooled[PLAN] = []
    actuals: list[Matrix] = []
    scales: list[NDArray[np.float64]] = []
    scored = np.ones(len(panel.series), dtype=bool)
    for cut in cuts:
        raw = panel.truncate(cut)
        # every model starts from the history serving would start from; series not yet
        # started or inactive at the origin are not forecast, so not scored
        known, found = prepare(raw)
        scored = np.asarray(found.observed & ~found.inactive, dtype=bool)
        regressors = {name: m[:, cut : cut + horizon] for name, m in panel.regressors.items()}
        ets = baselines.ets_forecast(known.values, season, horizon)
        theta = baselines.theta_forecast(known.values, season, horizon)
        local = local_forecast(known.values, season, horizon, ets, theta)
        dates = panel.dates[cut : cut + horizon]
        forecasts = {
            MODEL: reforecast(model, known, dates, None, local),
            "seasonal_naive": baselines.seasonal_naive(known.values, season, horizon),
            "ets": ets,
            "theta": theta,
        }
        if planned:
            forecasts[PLAN] = reforecast(model, known, dates, regressors, local)
        for name, forecast in forecasts.items():
            pooled[name].append(forecast[scored])
        # a series that falls silent inside the window has no actuals there: NaN, not scored
        actuals.append(panel.values[scored, cut : cut + horizon])
        scales.append(metrics.seasonal_scale(raw.values[scored], season))

    actual = np.concatenate(actuals)
    scale = np.concatenate(scales)
    figures = {
        name: metrics.summarize(actual, np.concatenate(parts), scale)
        for name, parts in pooled.items()
    }
    plan = figures.pop(PLAN, None)
    summary: dict[str, Any] = {
        "protocol": {
            "origins": [panel.dates[cut].date().isoformat() for cut in cuts],
            "horizon": horizon,
            "season_length": season,
            "freq": panel.freq,
            "refit": "model fitted once before the first origin; baselines at every origin",
            "regressors": "as served: no plan, promotions off and price held at its last "
            "regular value; known_plan: each window's actual regressors",
            "series": len(panel.series),
        },
        "models": figures,
        "relative_mase": {
            f"vs_{name}": _ratio(figures[MODEL]["mase"], figures[name]["mase"])
            for name in BASELINES
        },
        "known_plan": None
        if plan is None
        else {
            "regressors": list(panel.regressors),
            "models": {MODEL: plan},
            "relative_mase": {
                f"vs_{name}": _ratio(plan["mase"], figures[name]["mase"]) for name in BASELINES
            },
        },
        "blend_weight_gbm": params.gbm_weight,
    }
    last = cuts[-1]
    return Backtest(
        metrics=summary,
        last_origin=pd.Timestamp(panel.dates[last]),
        actual=_expand(actuals[-1], scored),
        forecasts={
            name: _expand(parts[-1], scored) for name, parts in pooled.items() if name != PLAN
        },
        dates=panel.dates[last : last + horizon],
        series=panel.series,
    )


def _expand(rows: Matrix, scored: NDArray[np.bool_]) -> Matrix:
    """Re-expand the rows of scored series to all series (the others as NaN)."""
    out = np.full((len(scored), rows.shape[1]), np.nan)
    out[scored] = rows
    return out


def _ratio(a: object, b: object) -> float | None:
    if isinstance(a, float) and isinstance(b, float) and b > 0:
        return round(a / b, 4)
    return None
