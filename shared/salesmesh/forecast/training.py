"""Training the global model: the sampled (series, origin, step) rows and the booster's knobs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from salesmesh.errors import ForecastError
from salesmesh.forecast import features
from salesmesh.forecast.panel import Panel

Matrix = NDArray[np.float64]


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


def context(panel: Panel) -> features.Context:
    """Per-series floor, median price and start, the facts features need besides values."""
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


def train(panel: Panel, horizon: int, season: int, params: Params) -> Any:
    """One booster for every step 1..``horizon``, on a sample of (series, origin, step) rows.

    Origins are sampled per step so that, however long the history, the training set stays
    near ``params.max_train_rows`` and every step is equally represented.
    """
    import lightgbm as lgb

    spec = features.spec_for(panel.freq)
    facts = context(panel)
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
            history, origins, step, spec, season, cal, panel.regressors, facts
        )
        y = (panel.values[:, origins + step - 1] / level).reshape(-1)
        # rows whose origin precedes the series' start would teach it to forecast from nothing
        keep = ~np.isnan(y) & (origins[None, :] > facts.starts[:, None]).reshape(-1)
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
