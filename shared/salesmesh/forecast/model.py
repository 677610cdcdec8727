"""The global demand model: one LightGBM regressor across all series and horizon steps.

The model forecasts each step directly from the history known at the origin (see features). The
final forecast gives half its weight to this global model and half to a local pair, per-series
ETS and Theta, in equal shares. Combinations of a global learner and local statistical models are
consistently stronger than either alone (M4, M5), and fixed equal weights avoid the noise of
weights fitted on a short holdout (the "forecast combination puzzle").
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.errors import ArtifactIntegrityError, ForecastError
from salesmesh.forecast import baselines, features
from salesmesh.forecast.panel import Panel, future_dates, season_length, to_panel

Matrix = NDArray[np.float64]

MODEL_FILE = "model.lgb.txt"
STATE_FILE = "state.npz"
CONFIG_FILE = "forecaster.json"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class Params:
    """Training knobs; the defaults are what the benchmarks were run with."""

    rounds: int = 200
    learning_rate: float = 0.08
    leaves: int = 63
    # (series, origin, step) rows sampled for training. It bounds the cost at 1M+ rows; fewer
    # rows for small data cost accuracy (MASE +4 % on M3/PBS at 2 rows per observation).
    max_train_rows: int = 150_000
    # share of the gradient-boosted model; ETS and Theta share the rest equally
    gbm_weight: float = 0.5
    seed: int = 0
    # One thread: on 2 cores an OpenMP team slows 7x the moment anything else needs a core
    # (measured: 86 ms/round alone vs 623 ms with two threads beside a busy process).
    threads: int = 1


@dataclass
class _State:
    """Everything prediction needs besides the booster, saved without pickle."""

    freq: str
    horizon: int
    season: int
    series: NDArray[np.str_]
    last_date: pd.Timestamp
    values: Matrix  # the last ``lookback`` periods of every series
    regressors: dict[str, Matrix]  # last ``lookback`` periods of each regressor
    floor: NDArray[np.float64]
    price_reference: NDArray[np.float64] | None
    starts: NDArray[np.int64]  # relative to the first kept column (may be negative)
    blend_weight: float
    local: Matrix  # ETS+Theta forecast for ``horizon`` steps from the end of history
    feature_names: list[str] = field(default_factory=list)


class Forecaster:
    """A fitted demand forecaster; build one with :func:`fit` or :func:`load`."""

    def __init__(self, booster: Any, state: _State) -> None:
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

    def predict(
        self, horizon: int | None = None, future: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Forecast every series ``horizon`` periods past the end of its history.

        ``future`` may give regressor values (``series_id, date, <regressor>``) for the forecast
        dates; without it the last known price is held and promotions are assumed off.
        Returns ``series_id, date, forecast``.
        """
        state = self._state
        horizon = state.horizon if horizon is None else horizon
        if horizon < 1:
            raise ForecastError(f"horizon must be at least 1, got {horizon}")
        dates = future_dates(pd.DatetimeIndex([state.last_date]), state.freq, horizon)
        model = _direct(self._booster, state, dates, _future_regressors(state, dates, future))
        blended = _blend(state.blend_weight, model, _extend(state.local, horizon, state.season))
        return pd.DataFrame(
            {
                "series_id": np.repeat(state.series.astype(object), horizon),
                "date": np.tile(dates.to_numpy(), len(state.series)),
                "forecast": blended.reshape(-1),
            }
        )

    def save(self, directory: str | Path) -> Path:
        """Write the model files (no pickle) and a manifest of their sha256 into ``directory``."""
        from salesmesh import artifact

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._booster.save_model(str(directory / MODEL_FILE))
        state = self._state
        arrays: dict[str, NDArray[Any]] = {
            "series": state.series,
            "values": state.values,
            "floor": state.floor,
            "starts": state.starts,
            "local": state.local,
        }
        if state.price_reference is not None:
            arrays["price_reference"] = state.price_reference
        arrays.update({f"regressor__{k}": v for k, v in state.regressors.items()})
        with (directory / STATE_FILE).open("wb") as handle:
            np.savez_compressed(handle, allow_pickle=False, **arrays)
        config = {
            "format_version": FORMAT_VERSION,
            "freq": state.freq,
            "horizon": state.horizon,
            "season": state.season,
            "last_date": state.last_date.isoformat(),
            "blend_weight": state.blend_weight,
            "regressors": list(state.regressors),
            "feature_names": state.feature_names,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        artifact.write_manifest(directory)
        return directory


def fit(
    history: pd.DataFrame,
    horizon: int,
    freq: str | None = None,
    params: Params | None = None,
    regressors: Sequence[str] | None = None,
) -> Forecaster:
    """Fit a forecaster on ``series_id, date, sales`` (+ numeric regressors) for ``horizon``.

    ``regressors`` names the columns known in advance (default: price and promo); the model
    reads them on the dates it forecasts. Other columns are ignored.
    """
    if horizon < 1:
        raise ForecastError(f"horizon must be at least 1, got {horizon}")
    return fit_panel(to_panel(history, freq, regressors), horizon, params or Params())


def fit_panel(panel: Panel, horizon: int, params: Params) -> Forecaster:
    """:func:`fit` on an already aligned panel (the backtest reuses one panel for many fits)."""
    if panel.values.shape[1] < 3:
        raise ForecastError(
            f"need at least 3 periods of history to fit, got {panel.values.shape[1]}"
        )
    if not 0.0 <= params.gbm_weight <= 1.0:
        raise ForecastError(f"gbm_weight must lie in [0, 1], got {params.gbm_weight}")
    season = season_length(panel.freq)
    booster = _train(panel, horizon, season, params)
    local = local_forecast(panel.values, season, horizon)
    return Forecaster(booster, _snapshot(panel, horizon, season, params.gbm_weight, local))


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
    if local is None:
        local = local_forecast(known.values, season, horizon)
    state = _snapshot(known, horizon, season, model.blend_weight, local)
    if regressors is None:
        regressors = _future_regressors(state, dates, None)
    gbm = _direct(model._booster, state, dates, regressors)
    return _blend(model.blend_weight, gbm, local)


def _blend(weight: float, gbm: Matrix, local: Matrix) -> Matrix:
    return np.asarray(np.clip(weight * gbm + (1.0 - weight) * local, 0.0, None), dtype=np.float64)


def _context(panel: Panel) -> features.Context:
    observed = np.where(np.isnan(panel.values), np.nan, panel.values)
    # nanmean of all-NaN rows warns; those rows are handled below
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(observed, axis=1), nan=0.0)
        price = panel.regressors.get("price")
        reference = None
        if price is not None:
            reference = np.nanmedian(price, axis=1)
            reference = np.where(np.isfinite(reference) & (reference > 0), reference, 1.0)
    # a tenth of a unit or 5 % of the series' mean: small enough not to flatten slow movers
    floor = np.maximum(0.05 * mean, 0.1)
    return features.Context(floor, reference, panel.starts)


def _train(panel: Panel, horizon: int, season: int, params: Params) -> Any:
    """One booster for every step 1..``horizon``, on a sample of (series, origin, step) rows.

    Origins are sampled per step so that, however long the history, the training set stays
    near ``params.max_train_rows`` and every step is equally represented.
    """
    import lightgbm as lgb

    spec = features.spec_for(panel.freq)
    context = _context(panel)
    history = features.History(panel.values)
    n_series, length = panel.values.shape
    rng = np.random.default_rng(params.seed)
    budget = params.max_train_rows
    per_step = max(1, budget // (n_series * horizon))
    blocks: list[NDArray[np.float32]] = []
    targets: list[Matrix] = []
    for step in range(1, horizon + 1):
        origins = np.arange(1, length - step + 1, dtype=np.int64)
        if len(origins) > per_step:
            origins = np.sort(rng.choice(origins, per_step, replace=False))
        if len(origins) == 0:
            continue
        cal = features.calendar(panel.dates[origins + step - 1], spec.calendar)
        X, level = features.build(
            history, origins, step, spec, season, cal, panel.regressors, context
        )
        y = (panel.values[:, origins + step - 1] / level).reshape(-1)
        # rows whose origin precedes the series' start would teach it to forecast from nothing
        keep = ~np.isnan(y) & (origins[None, :] > context.starts[:, None]).reshape(-1)
        blocks.append(X[keep])
        targets.append(y[keep])
    X = np.concatenate(blocks) if blocks else np.empty((0, 0), dtype=np.float32)
    y = np.concatenate(targets) if targets else np.empty(0)
    if len(y) == 0:
        raise ForecastError("no series has two consecutive periods of history to learn from")
    if len(y) > budget:
        rows = np.sort(rng.choice(len(y), budget, replace=False))
        X, y = X[rows], y[rows]
    config = {
        "objective": "l2",
        "learning_rate": params.learning_rate,
        "num_leaves": params.leaves,
        "min_data_in_leaf": int(np.clip(len(y) // 500, 5, 100)),
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_bin": 127,
        "num_threads": params.threads,
        "seed": params.seed,
        "deterministic": True,
        "verbosity": -1,
    }
    names = features.names(spec, list(panel.regressors))
    dataset = lgb.Dataset(X, y, feature_name=names, free_raw_data=True)
    return lgb.train(config, dataset, num_boost_round=params.rounds)


def _snapshot(panel: Panel, horizon: int, season: int, weight: float, local: Matrix) -> _State:
    spec = features.spec_for(panel.freq)
    # the seasonal features read up to four cycles back from the origin
    keep = min(panel.values.shape[1], max(spec.lookback, 4 * season) + 1)
    first_kept = panel.values.shape[1] - keep
    context = _context(panel)
    return _State(
        freq=panel.freq,
        horizon=horizon,
        season=season,
        series=panel.series.astype(str),
        last_date=pd.Timestamp(panel.dates[-1]),
        values=panel.values[:, first_kept:].copy(),
        regressors={k: v[:, first_kept:].copy() for k, v in panel.regressors.items()},
        floor=context.floor,
        price_reference=context.price_reference,
        starts=context.starts - first_kept,
        blend_weight=weight,
        local=local,
        feature_names=features.names(spec, list(panel.regressors)),
    )


def _direct(
    booster: Any, state: _State, dates: pd.DatetimeIndex, future: dict[str, Matrix]
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
    forecast = np.empty((n_series, horizon))
    for step in range(1, horizon + 1):
        X, level = features.build(
            history, origin, step, spec, state.season, cal[step - 1 : step], regressors, context
        )
        forecast[:, step - 1] = np.clip(booster.predict(X) * level[:, 0], 0.0, None)
    return forecast


def _future_regressors(
    state: _State, dates: pd.DatetimeIndex, future: pd.DataFrame | None
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
    # ids are kept as strings (that is how they are saved), so 7 and "7" name the same series
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
    import lightgbm as lgb

    from salesmesh import artifact

    directory = Path(directory)
    artifact.verify(directory, required=(MODEL_FILE, STATE_FILE, CONFIG_FILE))
    config = json.loads((directory / CONFIG_FILE).read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactIntegrityError(
            f"{directory} holds forecaster format {config.get('format_version')}, this salesmesh "
            f"reads format {FORMAT_VERSION}"
        )
    with np.load(directory / STATE_FILE, allow_pickle=False) as arrays:
        data = {key: arrays[key] for key in arrays.files}
    state = _State(
        freq=config["freq"],
        horizon=int(config["horizon"]),
        season=int(config["season"]),
        series=data["series"],
        last_date=pd.Timestamp(config["last_date"]),
        values=data["values"],
        regressors={name: data[f"regressor__{name}"] for name in config["regressors"]},
        floor=data["floor"],
        price_reference=data.get("price_reference"),
        starts=data["starts"],
        blend_weight=float(config["blend_weight"]),
        local=data["local"],
        feature_names=list(config["feature_names"]),
    )
    booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
    return Forecaster(booster, state)


def describe(forecaster: Forecaster, params: Params) -> dict[str, Any]:
    """A JSON-friendly summary of the fitted model and the ``params`` it was fitted with."""
    state = forecaster._state
    return {
        "freq": state.freq,
        "horizon": state.horizon,
        "season_length": state.season,
        "series": len(state.series),
        "last_date": state.last_date.date().isoformat(),
        "blend_weight_gbm": state.blend_weight,
        "regressors": list(state.regressors),
        "features": state.feature_names,
        "params": asdict(params),
    }
