"""The Forecaster API: fit, predict with default, shorter, longer horizons and future regressors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesmesh.errors import ForecastError
from salesmesh.forecast import Forecaster, Params, describe, fit


def _future(model: Forecaster, ids: list, steps: slice, **columns: float) -> pd.DataFrame:
    """Regressor rows for every series in ``ids`` over the forecast steps ``steps``."""
    dates = pd.date_range(model.predict(horizon=1)["date"].iloc[0], periods=model.horizon)
    rows = [(i, d) for i in ids for d in dates[steps]]
    return pd.DataFrame(rows, columns=["series_id", "date"]).assign(**columns)


def _matrix(forecast: pd.DataFrame) -> np.ndarray:
    """Forecasts as (series, steps), series in output order."""
    n_series = forecast["series_id"].nunique()
    return forecast["forecast"].to_numpy().reshape(n_series, -1)


def test_fit_returns_a_forecaster_for_every_series(fitted, sample_history, fast):
    """fit gives a Forecaster that knows its frequency, horizon, series and blend weight."""
    assert isinstance(fitted, Forecaster)
    assert (fitted.freq, fitted.horizon) == ("D", 14)
    assert fitted.series == sorted(sample_history["series_id"].unique())
    assert fitted.blend_weight == fast.gbm_weight
    assert describe(fitted, Params())["regressors"] == ["price", "promo"]


def test_predict_gives_horizon_rows_per_series_on_the_following_days(fitted, sample_history):
    """predict() returns series_id, date, forecast: 14 days after the last history date each."""
    forecast = fitted.predict()
    assert list(forecast.columns) == ["series_id", "date", "forecast"]
    assert len(forecast) == 12 * 14
    expected = pd.date_range(sample_history["date"].max() + pd.Timedelta(days=1), periods=14)
    for series_id, rows in forecast.groupby("series_id"):
        assert list(rows["date"]) == list(expected), series_id
    assert set(forecast["series_id"]) == set(sample_history["series_id"])
    assert np.isfinite(forecast["forecast"]).all()
    assert (forecast["forecast"] >= 0).all()


def test_forecasts_are_on_the_scale_of_each_series(fitted, sample_history):
    """Each series' mean forecast is within a factor of 3 of its last four weeks' mean."""
    recent = sample_history[
        sample_history["date"] > sample_history["date"].max() - pd.Timedelta(days=28)
    ]
    recent_mean = recent.groupby("series_id")["sales"].mean()
    forecast_mean = fitted.predict().groupby("series_id")["forecast"].mean()
    busy = recent_mean[recent_mean > 2].index
    assert len(busy) >= 6
    ratio = forecast_mean[busy] / recent_mean[busy]
    assert ratio.between(1 / 3, 3).all(), ratio.to_dict()


def test_shorter_horizon_is_the_start_of_the_default_forecast(fitted):
    """predict(horizon=5) gives the first 5 steps of predict() for every series."""
    full, short = _matrix(fitted.predict()), _matrix(fitted.predict(horizon=5))
    np.testing.assert_array_equal(short, full[:, :5])


def test_longer_horizon_extends_the_default_forecast(fitted, sample_history):
    """predict(horizon=30) has 30 consecutive days per series and starts as predict() does."""
    long = fitted.predict(horizon=30)
    assert long.groupby("series_id").size().eq(30).all()
    first = sample_history["date"].max() + pd.Timedelta(days=1)
    assert list(long["date"].iloc[:30]) == list(pd.date_range(first, periods=30))
    np.testing.assert_array_equal(_matrix(long)[:, :14], _matrix(fitted.predict()))
    assert (long["forecast"] >= 0).all()


def test_longer_horizon_keeps_the_weekly_phase(periodic):
    """Beyond the fitted horizon the local (ETS+Theta) forecast stays on each date's weekday.

    The fitted horizon (10) is not a whole number of weeks, so repeating the stored local
    forecast from its start would put Friday's value on a Monday.
    """
    history = periodic()
    model = fit(history, horizon=10, params=Params(rounds=5, threads=1, gbm_weight=0.0))
    forecast = model.predict(horizon=24)
    by_weekday = history.groupby(["series_id", history["date"].dt.dayofweek])["sales"].first()
    expected = [
        by_weekday[s, d.dayofweek]
        for s, d in zip(forecast["series_id"], forecast["date"], strict=True)
    ]
    np.testing.assert_allclose(forecast["forecast"], expected, rtol=1e-6)


def test_longer_horizon_of_the_blend_stays_periodic(periodic, fast):
    """With the default blend, a periodic series' 24-day forecast still repeats every 7 days."""
    model = fit(periodic(), horizon=10, params=fast)
    forecast = _matrix(model.predict(horizon=24))
    np.testing.assert_allclose(forecast[:, 7:], forecast[:, :-7], rtol=0.02)


def test_promotions_in_future_lift_forecasts_from_their_dates_on(promo_history, promo_model):
    """promo=1 on steps 4-10 raises those steps' forecasts and leaves steps 1-3 untouched."""
    model = promo_model
    ids = sorted(promo_history["series_id"].unique())
    default = _matrix(model.predict())
    promoted = _matrix(model.predict(future=_future(model, ids, slice(3, 10), promo=1)))
    np.testing.assert_array_equal(promoted[:, :3], default[:, :3])
    assert promoted[:, 3:10].sum() > 1.5 * default[:, 3:10].sum()


def test_future_series_ids_match_whether_given_as_numbers_or_text(promo_history, promo_model):
    """Integer ids in history can be addressed as 101 or "101" in future; both apply."""
    model = promo_model
    ids = sorted(promo_history["series_id"].unique())
    as_int = model.predict(future=_future(model, ids, slice(0, 14), promo=1))
    as_text = model.predict(future=_future(model, [str(i) for i in ids], slice(0, 14), promo=1))
    pd.testing.assert_frame_equal(as_int, as_text)
    assert not as_int["forecast"].equals(model.predict()["forecast"])


def test_default_future_switches_promotions_off(promo_history, promo_model):
    """Without future, promotions are off even though history ended inside one."""
    model = promo_model
    ids = sorted(promo_history["series_id"].unique())
    off = model.predict(future=_future(model, ids, slice(0, 14), promo=0))
    on = model.predict(future=_future(model, ids, slice(0, 14), promo=1))
    pd.testing.assert_frame_equal(model.predict(), off)
    assert not on["forecast"].equals(off["forecast"])


def test_default_future_holds_the_last_regular_price(fitted, sample_history):
    """Without future, each series' last price outside promotions is held over the horizon."""
    regular = sample_history[sample_history["promo"] == 0]
    last = regular.sort_values("date").groupby("series_id").tail(1)
    dates = fitted.predict()["date"].unique()
    future = last[["series_id", "price"]].merge(pd.DataFrame({"date": dates}), how="cross")
    pd.testing.assert_frame_equal(fitted.predict(future=future), fitted.predict())
    cheaper = fitted.predict(future=future.assign(price=future["price"] * 0.5))
    assert not cheaper["forecast"].equals(fitted.predict()["forecast"])


def test_future_with_an_unknown_regressor_is_refused(fitted):
    """A future column the model never saw raises ForecastError naming it."""
    future = _future(fitted, fitted.series, slice(0, 3), weather=1.0)
    with pytest.raises(ForecastError, match=r"not trained with: \['weather'\]"):
        fitted.predict(future=future)


@pytest.mark.parametrize("horizon", [0, -3])
def test_fit_refuses_a_horizon_below_one(sample_history, horizon):
    """fit(horizon < 1) raises ForecastError saying the horizon must be at least 1."""
    with pytest.raises(ForecastError, match=f"horizon must be at least 1, got {horizon}"):
        fit(sample_history, horizon=horizon)


def test_predict_refuses_a_horizon_below_one(fitted):
    """predict(horizon=0) raises ForecastError instead of returning an empty frame."""
    with pytest.raises(ForecastError, match="horizon must be at least 1, got 0"):
        fitted.predict(horizon=0)


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_fit_refuses_a_blend_weight_outside_zero_to_one(periodic, weight):
    """gbm_weight must be a share: values outside [0, 1] raise ForecastError."""
    with pytest.raises(ForecastError, match=rf"gbm_weight must lie in \[0, 1\], got {weight}"):
        fit(periodic(days=60), horizon=7, params=Params(rounds=5, gbm_weight=weight))


def test_fit_names_missing_columns(sample_history):
    """A history without sales is refused with the missing column named."""
    with pytest.raises(ForecastError, match=r"lacks column\(s\) \['sales'\]"):
        fit(sample_history.drop(columns=["sales"]), horizon=7)


def test_fit_refuses_too_short_a_history():
    """Two days of history are refused with the number of periods needed and given."""
    history = pd.DataFrame(
        {"series_id": "a", "date": pd.date_range("2024-01-01", periods=2), "sales": [1.0, 2.0]}
    )
    with pytest.raises(ForecastError, match="need at least 3 periods of history to fit, got 2"):
        fit(history, horizon=7)


def test_fit_refuses_a_single_date():
    """One date cannot define a frequency: ForecastError, not an index error."""
    history = pd.DataFrame({"series_id": ["a", "b"], "date": ["2024-01-01"] * 2, "sales": 1.0})
    with pytest.raises(ForecastError, match="fewer than two distinct dates"):
        fit(history, horizon=7)


def test_fit_leaves_the_callers_history_unchanged(periodic, fast):
    """fit works on a copy: the caller's frame, dtypes included, is not modified."""
    history = periodic(days=60).assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
    before = history.copy()
    fit(history, horizon=7, params=fast)
    pd.testing.assert_frame_equal(history, before)


def test_series_that_started_late_are_forecast(sample_history):
    """A product with only its last 30 days of sales still gets finite, non-negative forecasts."""
    new = sample_history["series_id"] == "S01/P001"
    recent = sample_history["date"] > sample_history["date"].max() - pd.Timedelta(days=30)
    model = fit(sample_history[~new | recent], horizon=7, params=Params(rounds=20, threads=1))
    forecast = model.predict()
    rows = forecast[forecast["series_id"] == "S01/P001"]
    assert len(rows) == 7
    assert np.isfinite(rows["forecast"]).all()
    assert (rows["forecast"] >= 0).all()


def test_same_data_and_seed_give_identical_forecasts(periodic):
    """Fitting twice with the same parameters reproduces the forecasts exactly."""
    params = Params(rounds=20, threads=1, seed=3)
    first = fit(periodic(days=90), horizon=7, params=params).predict()
    second = fit(periodic(days=90), horizon=7, params=params).predict()
    pd.testing.assert_frame_equal(first, second)


def test_history_ending_in_a_promotion_holds_the_regular_price(fast):
    """A promotion running at the end of history does not carry its discount forward."""
    dates = pd.date_range("2024-01-01", periods=120, freq="D")
    promo = (np.arange(120) >= 115).astype(float)  # the last five days are on promotion
    history = pd.DataFrame(
        {
            "series_id": "s",
            "date": dates,
            "sales": 10.0 + 10.0 * promo + (np.arange(120) % 7),
            "price": np.where(promo > 0, 6.0, 10.0),
            "promo": promo,
        }
    )
    model = fit(history, horizon=7, params=fast)
    days = model.predict()["date"]
    regular = pd.DataFrame({"series_id": "s", "date": days, "price": 10.0, "promo": 0.0})
    pd.testing.assert_frame_equal(model.predict(), model.predict(future=regular))


def test_only_regressors_known_in_advance_reach_the_forecast_date(sample_history, fast):
    """An undeclared column (revenue) is no feature and no future input; declared, it is."""
    history = sample_history.assign(revenue=sample_history["sales"] * sample_history["price"])
    model = fit(history, horizon=7, params=fast)
    described = describe(model, fast)
    assert described["regressors"] == ["price", "promo"]
    assert not [name for name in described["features"] if "revenue" in name]
    plan = _future(model, model.series[:1], slice(0, 7), revenue=100.0)
    with pytest.raises(ForecastError, match=r"not trained with.*revenue"):
        model.predict(future=plan)
    declared = fit(history, horizon=7, params=fast, regressors=["price", "promo", "revenue"])
    assert describe(declared, fast)["regressors"] == ["price", "promo", "revenue"]
    assert "revenue" in describe(declared, fast)["features"]
