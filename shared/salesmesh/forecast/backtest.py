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

For the promotion gate (:mod:`salesmesh.gate`) the backtest also keeps its points, not only
the pooled figures: :attr:`Backtest.points` (every scored series, origin and step: the model's
and seasonal naive's absolute errors and the series' scale) and :attr:`Backtest.since` (the
model's forecasts from the data ends of earlier runs, ``since``, with the actuals that arrived
after them), so that an earlier run's own forecasts can be scored against the same actuals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.errors import ForecastError
from salesmesh.forecast import baselines, metrics, quantiles
from salesmesh.forecast.activity import prepare
from salesmesh.forecast.model import (
    BLEND,
    LOCAL,
    MEMBERS,
    NAIVE,
    TSB,
    Params,
    fit_panel,
    local_forecast,
    member_forecast,
    reforecast,
)
from salesmesh.forecast.panel import Panel, future_dates, season_length

Matrix = NDArray[np.float64]
MODEL = "salesmesh"
BASELINES = ("seasonal_naive", "ets", "theta")
PLAN = "known_plan"  # the model given each window's real regressors
MEMBER_MARGIN = 0.02  # another member must beat the blend by this much (relative) to serve


@dataclass
class Backtest:
    """Backtest figures plus the forecasts of the last origin, for plots."""

    metrics: dict[str, Any]
    last_origin: pd.Timestamp
    actual: Matrix  # (series, horizon) at the last origin
    forecasts: dict[str, Matrix]  # model name -> (series, horizon) at the last origin
    dates: pd.DatetimeIndex
    series: NDArray[np.object_]
    points: pd.DataFrame  # series, window, step, model, naive, scale (absolute errors)
    since: pd.DataFrame  # series, window, step, forecast, actual, scale
    # the quantile calibration from every origin's errors (None: nothing to learn from)
    calibration: quantiles.Calibration | None = None
    # the model's quantiles at the last origin, (series, horizon, levels), calibrated on the
    # other origins (None with a single origin)
    bands: NDArray[np.float64] | None = None
    # what forecasts intermittent series (see :func:`_intermittent_member`), and which series
    # were intermittent at the last origin
    member: str = "blend"
    intermittent: NDArray[np.bool_] | None = None


POINTS_COLUMNS = ("series", "window", "step", "model", "naive", "scale")
SINCE_COLUMNS = ("series", "window", "step", "forecast", "actual", "scale")


def run(
    panel: Panel,
    horizon: int,
    origins: int = 3,
    params: Params | None = None,
    since: Sequence[pd.Timestamp] = (),
) -> Backtest:
    """Backtest on ``panel``; fewer origins are used when the history is short.

    ``since``: last dates of the data of earlier runs; the model also forecasts from each one
    that falls inside the backtest (after the model's fit, before the data's end).
    """
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
    points: list[pd.DataFrame] = []
    windows: dict[str, list[quantiles.Window]] = {name: [] for name in (MODEL, *BASELINES)}
    scored = np.ones(len(panel.series), dtype=bool)
    made: list[tuple[_Origin, dict[str, Matrix]]] = []
    for cut in cuts:
        origin = _Origin(panel, model, cut, horizon)
        forecasts = origin.forecasts()
        if planned:
            regressors = {name: m[:, cut : cut + horizon] for name, m in panel.regressors.items()}
            forecasts[PLAN] = origin.model(regressors)
        # a series that falls silent inside the window has no actuals there: NaN, not scored
        actuals.append(panel.values[origin.scored, cut : cut + horizon])
        made.append((origin, forecasts))
    member, choice = _intermittent_member(made, actuals)
    for (origin, forecasts), actual_part in zip(made, actuals, strict=True):
        for name in (MODEL, PLAN):  # score what will be served
            if name in forecasts:
                forecasts[name] = origin.served(member, forecasts[name])
        scored = origin.scored
        for name, forecast in forecasts.items():
            pooled[name].append(forecast[scored])
        scales.append(origin.scale)
        for name, errors in windows.items():
            errors.append(origin.window(actual_part - forecasts[name][scored]))
        points.append(
            _points(
                panel.series[scored],
                origin.dates[0],
                {
                    "model": np.abs(forecasts[MODEL][scored] - actual_part),
                    "naive": np.abs(forecasts["seasonal_naive"][scored] - actual_part),
                },
                scales[-1],
            )
        )

    actual = np.concatenate(actuals)
    scale = np.concatenate(scales)
    span = quantiles.span_for(season, horizon)
    bands = {name: _cross(pooled[name], windows[name], span) for name in windows}
    figures = {
        name: metrics.summarize(actual, np.concatenate(parts), scale, _levels(bands.get(name)))
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
            "points": int(np.isfinite(actual).sum()),  # (series, step) actuals scored
            "quantiles": {
                "levels": list(quantiles.DEFAULT),
                "method": quantiles.METHOD,
                "scored": "cross-conformal: each origin's quantiles calibrated on the other "
                "origins' errors (needs 2 origins or more)",
            },
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
        "intermittent": choice,
    }
    last = cuts[-1]
    later = _since_cuts(panel, since, cuts[0])
    return Backtest(
        metrics=summary,
        last_origin=pd.Timestamp(panel.dates[last]),
        actual=_expand(actuals[-1], scored),
        forecasts={
            name: _expand(parts[-1], scored) for name, parts in pooled.items() if name != PLAN
        },
        dates=panel.dates[last : last + horizon],
        series=panel.series,
        points=_concat(points, POINTS_COLUMNS),
        since=_concat([_from(panel, model, cut, horizon, member) for cut in later], SINCE_COLUMNS),
        calibration=quantiles.calibrate(windows[MODEL], span),
        member=member,
        intermittent=_flags(made[-1][0]),
        bands=_last(bands[MODEL], scored),
    )


def _intermittent_member(
    made: Sequence[tuple[_Origin, dict[str, Matrix]]], actuals: Sequence[Matrix]
) -> tuple[str, dict[str, Any]]:
    """Which of :data:`MEMBERS` forecasts intermittent series, by measurement on this
    backtest. Each member's absolute error on each intermittent series (every origin and step)
    is divided by the blend's; the geometric mean of these ratios over the series is the
    member's relative error (the blend's is 1), a figure no single tiny-scale series can
    dominate. Another member serves only when its relative error is under 1 by
    :data:`MEMBER_MARGIN`. The global booster, trained mostly on regular series, can fit
    mostly-zero series poorly; on others it is the better half."""
    errors = {name: np.zeros(len(made[0][0].scored)) for name in MEMBERS}
    series = 0
    for (origin, forecasts), actual in zip(made, actuals, strict=True):
        sparse = origin.sparse
        if not sparse.any():
            continue
        rows = np.flatnonzero(origin.scored)[sparse]
        truth = actual[sparse]
        series = int(sparse.sum())
        for name in MEMBERS:
            found = forecasts[MODEL][rows] if name == BLEND else origin.member(name)[rows]
            errors[name][rows] += np.nansum(np.abs(truth - found), axis=1)
    # series the blend forecast exactly, or that no member missed, tell nothing
    telling = (errors[BLEND] > 0) & np.all([errors[name] > 0 for name in MEMBERS], axis=0)
    if not telling.any():
        return BLEND, {"series": series, "member": BLEND, "relative_error": None}
    relative = {
        name: round(
            float(np.exp(np.mean(np.log(errors[name][telling] / errors[BLEND][telling])))), 4
        )
        for name in MEMBERS
    }
    best = min((name for name in MEMBERS if name != BLEND), key=lambda name: relative[name])
    member = best if relative[best] < 1.0 - MEMBER_MARGIN else BLEND
    return member, {"series": series, "member": member, "relative_error": relative}


def _flags(origin: _Origin) -> NDArray[np.bool_]:
    out = np.zeros(len(origin.scored), dtype=bool)
    out[np.flatnonzero(origin.scored)[origin.sparse]] = True
    return out


def _levels(
    bands: list[NDArray[np.float64]] | None,
) -> tuple[Sequence[float], NDArray[np.float64]] | None:
    return None if bands is None else (quantiles.DEFAULT, np.concatenate(bands))


def _last(
    bands: list[NDArray[np.float64]] | None, scored: NDArray[np.bool_]
) -> NDArray[np.float64] | None:
    return None if bands is None else _expand(bands[-1], scored)


def _cross(
    forecasts: Sequence[Matrix], windows: Sequence[quantiles.Window], span: int
) -> list[NDArray[np.float64]] | None:
    """Each origin's quantiles, calibrated on the other origins' errors (honest figures: an
    origin never calibrates its own intervals). None with fewer than two origins."""
    if len(windows) < 2:
        return None
    out = []
    for k, window in enumerate(windows):
        calibration = quantiles.calibrate([w for i, w in enumerate(windows) if i != k], span)
        if calibration is None:
            return None
        out.append(
            quantiles.forecast(
                forecasts[k], window.scale, window.intermittent, calibration, quantiles.DEFAULT
            )
        )
    return out


def _since_cuts(panel: Panel, ends: Sequence[pd.Timestamp], first: int) -> list[int]:
    """The cut after each earlier data end that a backtest from ``first`` on may forecast
    from: the model was fitted before it, and some actuals came after it."""
    length = len(panel.dates)
    cuts = {int(panel.dates.searchsorted(pd.Timestamp(end), side="right")) for end in ends}
    return sorted(cut for cut in cuts if first <= cut < length)


def _from(panel: Panel, model: Any, cut: int, horizon: int, member: str) -> pd.DataFrame:
    """The model's forecast (as served, intermittent series by ``member``) from ``cut``,
    beside the actuals that arrived since."""
    origin = _Origin(panel, model, cut, horizon)
    steps = min(horizon, len(panel.dates) - cut)
    scored = origin.scored
    return _points(
        panel.series[scored],
        origin.dates[0],
        {
            "forecast": origin.served(member, origin.model(None))[scored, :steps],
            "actual": panel.values[scored, cut : cut + steps],
        },
        origin.scale,
    )


class _Origin:
    """One forecast origin: the history serving would start from, and the forecasts from it.

    Series not yet started or inactive at the origin are not forecast, so not scored."""

    def __init__(self, panel: Panel, model: Any, cut: int, horizon: int) -> None:
        raw = panel.truncate(cut)
        self.season = season_length(panel.freq)
        self.known, found = prepare(raw)
        self.scored = np.asarray(found.observed & ~found.inactive, dtype=bool)
        self.dates = future_dates(raw.dates, panel.freq, horizon)
        values, season = self.known.values, self.season
        self.ets = baselines.ets_forecast(values, season, horizon)
        self.theta = baselines.theta_forecast(values, season, horizon)
        self.local = local_forecast(values, season, horizon, self.ets, self.theta)
        self.naive = baselines.seasonal_naive(values, season, horizon)
        self.scale = metrics.seasonal_scale(raw.values[self.scored], season)
        span = quantiles.span_for(season, horizon)
        known = self.known.values[self.scored]
        self.recent = quantiles.recent_scale(known, season, span)
        self.sparse = quantiles.intermittent(known, span)
        self._model = model
        self._tsb: Matrix | None = None

    def served(self, member: str, forecast: Matrix) -> Matrix:
        """``forecast`` with the intermittent series' rows from ``member`` (unchanged for the
        blend): what the model fitted with that choice serves."""
        if member == BLEND or not self.sparse.any():
            return forecast
        rows = np.flatnonzero(self.scored)[self.sparse]
        out = forecast.copy()
        out[rows] = self.member(member)[rows]
        return out

    def member(self, name: str) -> Matrix:
        """The forecast of every series by one of :data:`MEMBERS` other than the blend."""
        if name == LOCAL:
            return np.clip(self.local, 0.0, None)
        if name == NAIVE:
            return self.naive
        if name == TSB:
            if self._tsb is None:
                steps = self.local.shape[1]
                self._tsb = member_forecast(TSB, self.known.values, self.season, steps)
            return self._tsb
        raise ForecastError(f"unknown member {name!r} for intermittent series")

    def window(self, errors: Matrix) -> quantiles.Window:
        """Calibration data of this origin: the scored series' ``errors`` (actual - forecast)."""
        return quantiles.Window(errors, self.recent, self.sparse)

    def model(self, regressors: dict[str, Matrix] | None) -> Matrix:
        """The model's forecast, told ``regressors`` (a known plan) or not (as served)."""
        return reforecast(self._model, self.known, self.dates, regressors, self.local)

    def forecasts(self) -> dict[str, Matrix]:
        """Every model's forecast as served (no plan), by name."""
        return {
            MODEL: self.model(None),
            "seasonal_naive": self.naive,
            "ets": self.ets,
            "theta": self.theta,
        }


def _points(
    series: NDArray[np.object_],
    start: pd.Timestamp,
    columns: dict[str, Matrix],
    scale: NDArray[np.float64],
) -> pd.DataFrame:
    """One window's (series, step) rows; the window is named by its first date."""
    steps = next(iter(columns.values())).shape[1]
    table = {
        "series": np.repeat(series.astype(str), steps),
        "window": pd.Timestamp(start).date().isoformat(),
        "step": np.tile(np.arange(1, steps + 1), len(series)),
        **{name: values.reshape(-1) for name, values in columns.items()},
        "scale": np.repeat(scale, steps),
    }
    return pd.DataFrame(table)


def _concat(parts: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(parts, ignore_index=True)


def _expand(rows: Matrix, scored: NDArray[np.bool_]) -> Matrix:
    """Re-expand the rows of scored series to all series (the others as NaN)."""
    out = np.full((len(scored), *rows.shape[1:]), np.nan)
    out[scored] = rows
    return out


def _ratio(a: object, b: object) -> float | None:
    if isinstance(a, float) and isinstance(b, float) and b > 0:
        return round(a / b, 4)
    return None
