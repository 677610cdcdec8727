"""The global demand model: one LightGBM regressor across all series and horizon steps.

The model forecasts each step directly from the history known at the origin (see features). The
final forecast gives half its weight to this global model and half to a local pair, per-series
ETS and Theta, in equal shares. Combinations of a global learner and local statistical models are
consistently stronger than either alone (M4, M5), and fixed equal weights avoid the noise of
weights fitted on a short holdout (the "forecast combination puzzle").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.errors import ForecastError
from salesmesh.forecast import baselines, features, quantiles
from salesmesh.forecast.activity import Activity, prepare
from salesmesh.forecast.panel import Panel, future_dates, season_length, to_panel
from salesmesh.forecast.quantiles import Calibration
from salesmesh.forecast.quantiles import column as _column
from salesmesh.forecast.state import CONFIG_FILE, FORMAT_VERSION, MODEL_FILE, STATE_FILE, State
from salesmesh.forecast.training import Params, context, train

Matrix = NDArray[np.float64]
# what may forecast intermittent series (see fit_panel): the blend, its local half alone,
# TSB, or seasonal naive
BLEND, LOCAL, TSB, NAIVE = "blend", "local", "tsb", "seasonal_naive"
MEMBERS = (BLEND, LOCAL, TSB, NAIVE)
# the saved format lives in forecast.state; its names stay importable from here
__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "STATE_FILE",
    "Forecaster",
    "Params",
    "fit",
]


class Forecaster:
    """A fitted demand forecaster; build one with :func:`fit` or :func:`load`."""

    def __init__(self, booster: Any, state: State) -> None:
        self._booster = booster
        self._state = state

    @property
    def freq(self) -> str:
        """Frequency alias of the data the model was fitted on (``D``, ``W-SUN``, ``MS`` ...)."""
        return self._state.freq

    @property
    def horizon(self) -> int:
        """Default number of periods :meth:`predict` returns."""
        return self._state.horizon

    @property
    def series(self) -> list[str]:
        """Series ids the model can forecast."""
        return [str(s) for s in self._state.series]

    @property
    def blend_weight(self) -> float:
        """Share of the gradient-boosted model in the forecast (ETS and Theta share the rest)."""
        return self._state.blend_weight

    def dates(self, horizon: int | None = None) -> pd.DatetimeIndex:
        """The dates :meth:`predict` forecasts for ``horizon`` (default: the model's)."""
        state = self._state
        horizon = state.horizon if horizon is None else horizon
        return future_dates(pd.DatetimeIndex([state.last_date]), state.freq, horizon)

    @property
    def quantiles(self) -> tuple[float, ...]:
        """The levels :meth:`predict` gives by default when asked for quantiles; empty when the
        model was fitted without a quantile calibration (see :func:`fit`)."""
        return quantiles.DEFAULT if self._state.calibration is not None else ()

    @property
    def calibration(self) -> Calibration | None:
        """How the quantiles were calibrated (None: the model gives point forecasts only)."""
        return self._state.calibration

    @property
    def regressors(self) -> list[str]:
        """Regressors known in advance that a plan (``predict(future=...)``) may give."""
        return list(self._state.regressors)

    @property
    def inactive_after(self) -> int:
        """Periods a series may be silent at the end of its history and still be forecast."""
        return self._state.inactive_after

    @property
    def silence(self) -> dict[str, int]:
        """Series whose history ended before the model's last date -> periods silent since."""
        state = self._state
        return {str(state.series[i]): int(state.silent[i]) for i in np.flatnonzero(state.silent)}

    @property
    def inactive(self) -> dict[str, pd.Timestamp]:
        """Series not forecast (silent for more than :attr:`inactive_after` periods) -> the date
        of their last row."""
        state = self._state
        rows = np.flatnonzero(state.inactive)
        if not len(rows):
            return {}
        grid = pd.date_range(
            end=state.last_date, periods=int(state.silent.max()) + 1, freq=state.freq
        )
        return {str(state.series[i]): grid[-1 - int(state.silent[i])] for i in rows}

    def predict(
        self,
        horizon: int | None = None,
        future: pd.DataFrame | None = None,
        series: Sequence[str] | None = None,
        quantiles: Sequence[float] | None = None,
    ) -> pd.DataFrame:
        """Forecast every active series (or those in ``series``) ``horizon`` periods past the
        end of the history.

        ``future`` may give regressor values (``series_id, date, <regressor>``) for the forecast
        dates; without it the last regular price is held and promotions are assumed off.
        Inactive series (see :attr:`inactive`) are not forecast. Returns
        ``series_id, date, forecast``; with ``quantiles`` (levels strictly between 0 and 1,
        e.g. :attr:`quantiles`) also one column per level, ``p10`` for 0.1 and ``p2.5`` for
        0.025, never negative and non-decreasing across the levels on every row.
        ``forecast`` stays the point forecast (the mean, which a skewed demand puts above
        ``p50``). Levels below 0.5 % or above 99.5 % take those ends' values.
        """
        state = self._state
        horizon = state.horizon if horizon is None else horizon
        if horizon < 1:
            raise ForecastError(f"horizon must be at least 1, got {horizon}")
        levels = None if quantiles is None else _levels(state, quantiles)
        state = _rows(state, self._pick(series))
        dates = self.dates(horizon)
        model = _direct(self._booster, state, dates, _future_regressors(state, dates, future))
        blended = _blend(_weight(state), model, _extend(state.local, horizon, state.season))
        frame = pd.DataFrame(
            {
                "series_id": np.repeat(state.series.astype(object), horizon),
                "date": np.tile(dates.to_numpy(), len(state.series)),
                "forecast": blended.reshape(-1),
            }
        )
        if levels is not None:
            bands = quantile_bands(state, blended, levels)
            for k, tau in enumerate(levels):
                frame[_column(tau)] = bands[..., k].reshape(-1)
        return frame

    def predict_plans(
        self, series: Sequence[str], plans: Sequence[Mapping[str, Sequence[float]]], horizon: int
    ) -> Matrix:
        """Forecasts shaped ``(len(series), horizon)``: row ``i`` is ``series[i]`` under the plan
        ``plans[i]`` (regressor name -> one value per forecast date; a regressor left out takes
        its plan-less value). A series may appear more than once, under different plans: all
        are forecast in one pass, for about the cost of one.
        """
        if horizon < 1:
            raise ForecastError(f"horizon must be at least 1, got {horizon}")
        state = _rows(self._state, self._pick(series))
        dates = self.dates(horizon)
        regressors = _future_regressors(state, dates, None)
        for row, plan in enumerate(plans):
            for name, values in plan.items():
                if name not in regressors:
                    raise ForecastError(f"the model has no regressor {name!r}")
                if len(values) != horizon:
                    raise ForecastError(f"{name} has {len(values)} values for {horizon} dates")
                regressors[name][row] = np.asarray(values, dtype=np.float64)
        model = _direct(self._booster, state, dates, regressors)
        return _blend(_weight(state), model, _extend(state.local, horizon, state.season))

    def bands(
        self, series: Sequence[str], point: Matrix, quantiles: Sequence[float] | None = None
    ) -> NDArray[np.float64]:
        """Quantiles shaped ``(len(series), steps, levels)`` around ``point``, a forecast of
        ``series`` shaped ``(len(series), steps)`` such as :meth:`predict_plans` gives.

        ``quantiles`` defaults to :attr:`quantiles`. Around :meth:`predict`'s own forecast these
        are the columns it adds: a plan moves the bands with the point, as it moved the point.
        ForecastError for a model fitted without a quantile calibration.
        """
        levels = _levels(self._state, self.quantiles if quantiles is None else quantiles)
        state = _rows(self._state, self._pick(series))
        point = np.asarray(point, dtype=np.float64)
        if point.ndim != 2 or point.shape[0] != len(state.series) or point.shape[1] < 1:
            raise ForecastError(
                f"point must be shaped (series, steps) with one row per series "
                f"({len(state.series)}), got {point.shape}"
            )
        return quantile_bands(state, point, levels)

    def _pick(self, series: Sequence[str] | None) -> NDArray[np.int64]:
        """Rows of the active series, or of ``series`` (ForecastError if one is not active)."""
        state = self._state
        if series is None:
            return np.flatnonzero(~state.inactive)
        # ids are kept as strings (that is how they are saved), so 7 and "7" name the same series
        rows = pd.Index(state.series.astype(str)).get_indexer([str(s) for s in series])
        unknown = [s for s, row in zip(series, rows, strict=True) if row < 0]
        if unknown:
            raise ForecastError(f"unknown series {unknown[:5]}")
        silent = [s for s, row in zip(series, rows, strict=True) if state.inactive[row]]
        if silent:
            raise ForecastError(f"inactive series are not forecast: {silent[:5]}")
        return np.asarray(rows, dtype=np.int64)

    def save(self, directory: str | Path) -> Path:
        """Write the model files (no pickle) and a manifest of their sha256 into ``directory``."""
        from salesmesh import artifact
        from salesmesh.forecast import state

        directory = Path(directory)
        state.save(self._booster, self._state, directory)
        artifact.write_manifest(directory)
        return directory


def fit(
    history: pd.DataFrame,
    horizon: int,
    freq: str | None = None,
    params: Params | None = None,
    regressors: Sequence[str] | None = None,
    quantiles: bool = False,
) -> Forecaster:
    """Fit a forecaster on ``series_id, date, sales`` (+ numeric regressors) for ``horizon``.

    ``regressors`` names the columns known in advance (default: price and promo); the model
    reads them on the dates it forecasts. Other columns are ignored. ``quantiles=True`` also
    calibrates quantile forecasts on a rolling-origin backtest (see
    :mod:`salesmesh.forecast.quantiles`), which about doubles the cost of the fit and needs
    a horizon of history beyond the first three; ``python -m salesmesh.train`` always does.
    """
    if horizon < 1:
        raise ForecastError(f"horizon must be at least 1, got {horizon}")
    panel = to_panel(history, freq, regressors)
    params = params or Params()
    calibration = None
    member = "blend"
    if quantiles:
        from salesmesh.forecast import backtest

        result = backtest.run(panel, horizon, params=params)
        if result.calibration is None:
            raise ForecastError("quantiles need backtest errors, and the backtest scored none")
        calibration, member = result.calibration, result.member
    return fit_panel(panel, horizon, params, calibration, member)


def fit_panel(
    panel: Panel,
    horizon: int,
    params: Params,
    calibration: Calibration | None = None,
    member: str = "blend",
) -> Forecaster:
    """:func:`fit` on an already aligned panel (the backtest reuses one panel for many fits);
    ``calibration`` (from :func:`salesmesh.forecast.backtest.run`) gives it quantiles, and
    ``member`` (the backtest's choice) says what forecasts intermittent series: ``blend``,
    ``local`` (ETS and Theta without the booster), ``tsb`` (:func:`baselines.tsb_forecast`) or
    ``seasonal_naive``."""
    if panel.values.shape[1] < 3:
        raise ForecastError(
            f"need at least 3 periods of history to fit, got {panel.values.shape[1]}"
        )
    if not 0.0 <= params.gbm_weight <= 1.0:
        raise ForecastError(f"gbm_weight must lie in [0, 1], got {params.gbm_weight}")
    season = season_length(panel.freq)
    booster = train(panel, horizon, season, params)
    ready, found = prepare(panel)
    local = local_forecast(ready.values, season, horizon)
    if member not in MEMBERS:
        raise ForecastError(f"member must be one of {MEMBERS}, got {member!r}")
    # read from the whole history: the kept window can be shorter
    span = quantiles.span_for(season, horizon)
    sparse = quantiles.intermittent(ready.values, span)
    weights = None
    if member != BLEND and sparse.any():
        weights = np.where(sparse, 0.0, params.gbm_weight)
        if member in (TSB, NAIVE):
            local[sparse] = member_forecast(member, ready.values[sparse], season, horizon)
    state = _snapshot(ready, horizon, season, params.gbm_weight, local, found)
    state = replace(state, weights=weights, member=member)
    if calibration is not None:
        state = replace(
            state,
            calibration=calibration,
            quantile_scale=quantiles.recent_scale(ready.values, season, span),
            sparse=sparse,
        )
    return Forecaster(booster, state)


def member_forecast(member: str, values: Matrix, season: int, horizon: int) -> Matrix:
    """The forecast of ``values``' series by a member that stands in for the local half
    (:data:`TSB` or :data:`NAIVE`)."""
    if member == TSB:
        return baselines.tsb_forecast(values, horizon)
    if member == NAIVE:
        return baselines.seasonal_naive(values, season, horizon)
    raise ForecastError(f"{member!r} is not a stand-alone member; one of {TSB}, {NAIVE}")


def _levels(state: State, taus: Sequence[float]) -> tuple[float, ...]:
    if state.calibration is None:
        raise ForecastError(
            "this model was fitted without a quantile calibration: fit it with "
            "fit(..., quantiles=True) or train it with python -m salesmesh.train"
        )
    return quantiles.check(taus)


def quantile_bands(state: State, point: Matrix, levels: Sequence[float]) -> NDArray[np.float64]:
    """``(series, steps, levels)`` quantiles around ``point``, for the series of ``state``."""
    assert state.calibration is not None and state.quantile_scale is not None
    assert state.sparse is not None
    return quantiles.forecast(point, state.quantile_scale, state.sparse, state.calibration, levels)


def local_forecast(
    values: Matrix,
    season: int,
    horizon: int,
    ets: Matrix | None = None,
    theta: Matrix | None = None,
) -> Matrix:
    """The local half of the blend: the mean of per-series ETS and Theta forecasts.

    Callers that already have either forecast (the backtest reports both) pass it in.
    """
    if ets is None:
        ets = baselines.ets_forecast(values, season, horizon)
    if theta is None:
        theta = baselines.theta_forecast(values, season, horizon)
    return np.asarray(0.5 * (ets + theta), dtype=np.float64)


def reforecast(
    model: Forecaster,
    known: Panel,
    dates: pd.DatetimeIndex,
    regressors: dict[str, Matrix] | None = None,
    local: Matrix | None = None,
) -> Matrix:
    """Forecast ``dates`` with ``model``'s booster and blend from the history in ``known``.

    The backtest uses this to forecast from later origins without refitting the booster; the
    local models are refitted on ``known`` (or given as ``local``) because they are cheap.
    ``regressors`` is a plan for ``dates``; without one the regressors take the values
    :meth:`Forecaster.predict` gives them without a plan, through the same code, so the
    backtest scores the forecast that is served.
    """
    season = season_length(known.freq)
    horizon = len(dates)
    known, found = prepare(known)  # the backtest passes a prepared panel: then a no-op
    if local is None:
        local = local_forecast(known.values, season, horizon)
    state = _snapshot(known, horizon, season, model.blend_weight, local, found)
    if regressors is None:
        regressors = _future_regressors(state, dates, None)
    gbm = _direct(model._booster, state, dates, regressors)
    return _blend(model.blend_weight, gbm, local)


def _blend(weight: float | NDArray[np.float64], gbm: Matrix, local: Matrix) -> Matrix:
    """``weight`` of the booster: one for all series, or one per series (a column)."""
    w = weight[:, None] if isinstance(weight, np.ndarray) else weight
    return np.asarray(np.clip(w * gbm + (1.0 - w) * local, 0.0, None), dtype=np.float64)


def _weight(state: State) -> float | NDArray[np.float64]:
    return state.blend_weight if state.weights is None else state.weights


def _snapshot(
    panel: Panel, horizon: int, season: int, weight: float, local: Matrix, found: Activity
) -> State:
    spec = features.spec_for(panel.freq)
    # the seasonal features read up to four cycles back from the origin
    keep = min(panel.values.shape[1], max(spec.lookback, 4 * season) + 1)
    first_kept = panel.values.shape[1] - keep
    facts = context(panel)
    return State(
        freq=panel.freq,
        horizon=horizon,
        season=season,
        series=panel.series.astype(str),
        last_date=pd.Timestamp(panel.dates[-1]),
        values=panel.values[:, first_kept:].copy(),
        regressors={k: v[:, first_kept:].copy() for k, v in panel.regressors.items()},
        floor=facts.floor,
        price_reference=facts.price_reference,
        starts=facts.starts - first_kept,
        blend_weight=weight,
        local=local,
        feature_names=features.names(spec, list(panel.regressors)),
        silent=found.silent,
        inactive_after=found.threshold,
    )


def _rows(state: State, rows: NDArray[np.int64]) -> State:
    """``state`` narrowed to the series at ``rows``."""
    if len(rows) == len(state.series) and (rows == np.arange(len(rows))).all():
        return state
    return replace(
        state,
        series=state.series[rows],
        values=state.values[rows],
        regressors={name: matrix[rows] for name, matrix in state.regressors.items()},
        floor=state.floor[rows],
        price_reference=None if state.price_reference is None else state.price_reference[rows],
        starts=state.starts[rows],
        local=state.local[rows],
        silent=state.silent[rows],
        quantile_scale=None if state.quantile_scale is None else state.quantile_scale[rows],
        sparse=None if state.sparse is None else state.sparse[rows],
        weights=None if state.weights is None else state.weights[rows],
    )


def _direct(
    booster: Any, state: State, dates: pd.DatetimeIndex, future: dict[str, Matrix]
) -> Matrix:
    """Forecast every step from the end of the saved history, each step on its own."""
    spec = features.spec_for(state.freq)
    horizon = len(dates)
    n_series, kept = state.values.shape
    values = np.concatenate([state.values, np.full((n_series, horizon), np.nan)], axis=1)
    regressors = {
        name: np.concatenate([matrix, future[name]], axis=1)
        for name, matrix in state.regressors.items()
    }
    context = features.Context(state.floor, state.price_reference, state.starts)
    history = features.History(values)
    cal = features.calendar(dates, spec.calendar)
    origin = np.array([kept], dtype=np.int64)
    blocks, levels = [], []
    for step in range(1, horizon + 1):
        X, level = features.build(
            history, origin, step, spec, state.season, cal[step - 1 : step], regressors, context
        )
        blocks.append(X)
        levels.append(level[:, 0])
    # one call for every step: LightGBM's per-call overhead dominates a one-series request
    predicted = booster.predict(np.concatenate(blocks)).reshape(horizon, n_series)
    return np.asarray(np.clip(predicted * np.stack(levels), 0.0, None).T, dtype=np.float64)


def _future_regressors(
    state: State, dates: pd.DatetimeIndex, future: pd.DataFrame | None
) -> dict[str, Matrix]:
    """Regressor values over the forecast dates: given ones first, else held or switched off."""
    out: dict[str, Matrix] = {}
    promo = state.regressors.get("promo")
    for name, matrix in state.regressors.items():
        if name == "promo":
            default = np.zeros(matrix.shape[0])
        elif name == "price" and promo is not None:
            # a history ending mid-promotion would otherwise hold the discounted price
            regular = np.where(promo > 0, np.nan, matrix)
            default = baselines.last_observed(regular)
            default = np.where(np.isnan(default), matrix[:, -1], default)
        else:
            default = matrix[:, -1]
        out[name] = np.repeat(default[:, None], len(dates), axis=1)
    if future is None or future.empty:
        return out
    unknown = set(future.columns) - {"series_id", "date", *state.regressors}
    if unknown:
        raise ForecastError(f"future has columns the model was not trained with: {sorted(unknown)}")
    # ids are kept as strings (that is how they are saved), so 7 and "7" name the same series;
    # rows for series not being forecast are left out
    rows = pd.Index(state.series.astype(str)).get_indexer(future["series_id"].astype(str))
    cols = dates.get_indexer(pd.DatetimeIndex(pd.to_datetime(future["date"])))
    ok = (rows >= 0) & (cols >= 0)
    for name in state.regressors:
        if name in future:
            given = future[name].to_numpy(dtype=float)
            out[name][rows[ok], cols[ok]] = given[ok]
    return out


def _extend(forecast: Matrix, horizon: int, season: int) -> Matrix:
    """ETS was stored for the fitted horizon; longer requests repeat its last season.

    Step ``h`` past the stored ones copies step ``h - k * season`` inside the last stored
    season, so the seasonal phase lines up with the dates (a stored horizon shorter than a
    season repeats all of it).
    """
    stored = forecast.shape[1]
    if stored >= horizon:
        return forecast[:, :horizon]
    period = min(max(season, 1), stored)
    steps = np.arange(horizon)
    index = np.where(steps < stored, steps, stored - period + (steps - stored) % period)
    return forecast[:, index]


def load(directory: str | Path) -> Forecaster:
    """Load a saved forecaster after checking every file against its manifest."""
    from salesmesh import artifact
    from salesmesh.forecast import state

    directory = Path(directory)
    artifact.verify(directory, required=(MODEL_FILE, STATE_FILE, CONFIG_FILE))
    booster, saved = state.read(directory)
    return Forecaster(booster, saved)


def describe(forecaster: Forecaster, params: Params) -> dict[str, Any]:
    """A JSON-friendly summary of the fitted model and the ``params`` it was fitted with.

    ``features`` and ``silence`` (series id -> periods silent at the end) grow with the model;
    the other entries are small.
    """
    state = forecaster._state
    return {
        "freq": state.freq,
        "horizon": state.horizon,
        "season_length": state.season,
        "series": len(state.series),
        "last_date": state.last_date.date().isoformat(),
        "blend_weight_gbm": state.blend_weight,
        "regressors": list(state.regressors),
        "inactive_after": state.inactive_after,
        "series_ended_early": int((state.silent > 0).sum()),
        "series_inactive": int(state.inactive.sum()),
        "features": state.feature_names,
        "silence": forecaster.silence,
        "quantiles": None if state.calibration is None else state.calibration.describe(),
        "intermittent": {
            "member": state.member,
            "series": 0 if state.weights is None else int((state.weights == 0).sum()),
        },
        "params": asdict(params),
    }
