"""Forecaster.bands: quantiles around a given point forecast, as a plan's server answer needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesmesh.errors import ForecastError
from salesmesh.forecast import Forecaster, fit, load

LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
COLUMNS = ["p10", "p25", "p50", "p75", "p90"]
SERIES = ["S01/P002", "S02/P001"]


@pytest.fixture(scope="module")
def model(model_artifact: Path) -> Forecaster:
    """The session's trained run (calibrated quantiles, price and promo regressors)."""
    return load(model_artifact)


def test_bands_around_a_plan_are_predicts_quantiles_under_that_plan(model: Forecaster):
    """bands(series, predict_plans(...)) is exactly the p10 .. p90 of predict(future=...)."""
    promo = [[1, 1, 0, 0, 1], [0, 0, 0, 1, 1]]
    point = model.predict_plans(SERIES, [{"promo": p} for p in promo], 5)
    bands = model.bands(SERIES, point)
    assert bands.shape == (2, 5, 5)
    dates = model.dates(5)
    future = pd.DataFrame(
        {"series_id": np.repeat(SERIES, 5), "date": np.tile(dates, 2), "promo": np.ravel(promo)}
    )
    frame = model.predict(horizon=5, future=future, series=SERIES, quantiles=LEVELS)
    np.testing.assert_array_equal(bands.reshape(-1, 5), frame[COLUMNS].to_numpy())
    np.testing.assert_array_equal(point.reshape(-1), frame["forecast"].to_numpy())


def test_bands_take_other_levels_and_a_series_twice(model: Forecaster):
    """Levels default to the model's; others may be asked; a repeated series keeps its scale."""
    point = np.full((2, 3), 10.0)
    bands = model.bands(["S01/P001", "S01/P001"], point, quantiles=(0.05, 0.5, 0.95))
    assert bands.shape == (2, 3, 3)
    np.testing.assert_array_equal(bands[0], bands[1])
    assert (bands[..., 0] < bands[..., 2]).all() and (bands >= 0).all()


@pytest.mark.parametrize("shape", [(1, 3), (2,), (2, 0)])
def test_a_point_of_the_wrong_shape_is_refused(model: Forecaster, shape: tuple[int, ...]):
    """One row per series and at least one step, or a ForecastError naming the shape."""
    with pytest.raises(ForecastError, match=r"point must be shaped \(series, steps\)"):
        model.bands(SERIES, np.zeros(shape))


def test_a_model_without_calibration_has_no_bands():
    """A model fitted without quantiles refuses, saying how to get them."""
    dates = pd.date_range("2024-01-01", periods=60, freq="D")
    history = pd.DataFrame({"series_id": "a", "date": dates, "sales": np.arange(60) % 7 + 5.0})
    plain = fit(history, horizon=3)
    with pytest.raises(ForecastError, match="without a quantile calibration"):
        plain.bands(["a"], np.ones((1, 3)))
