"""Weekly, monthly and quarterly data fit and forecast on their own calendar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesmesh.forecast import Params, fit

FAST = Params(rounds=30, threads=1)


def _seasonal(dates: pd.DatetimeIndex, season: int) -> pd.DataFrame:
    """Two noisy sine-seasonal series on ``dates``."""
    rng = np.random.default_rng(0)
    k = np.arange(len(dates))
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "series_id": name,
                    "date": dates,
                    "sales": level * (1 + 0.2 * np.sin(2 * np.pi * k / season))
                    + rng.normal(0, 1, len(dates)),
                }
            )
            for name, level in (("a", 50.0), ("b", 200.0))
        ],
        ignore_index=True,
    )


@pytest.mark.parametrize(
    ("dates", "season", "freq", "expected"),
    [
        (
            pd.date_range("2021-01-03", periods=130, freq="W-SUN"),
            52,
            "W-SUN",
            ["2023-07-02", "2023-07-09", "2023-07-16", "2023-07-23", "2023-07-30"],
        ),
        (
            pd.date_range("2018-01-01", periods=48, freq="MS"),
            12,
            "MS",
            ["2022-01-01", "2022-02-01", "2022-03-01", "2022-04-01", "2022-05-01"],
        ),
        (
            pd.date_range("2018-01-31", periods=48, freq="ME"),
            12,
            "ME",
            ["2022-01-31", "2022-02-28", "2022-03-31", "2022-04-30", "2022-05-31"],
        ),
        (
            pd.date_range("2014-01-01", periods=32, freq="QS"),
            4,
            "QS-JAN",
            ["2022-01-01", "2022-04-01", "2022-07-01", "2022-10-01", "2023-01-01"],
        ),
    ],
    ids=["weekly", "month-start", "month-end", "quarterly"],
)
def test_frequency_is_inferred_and_forecast_dates_follow_it(dates, season, freq, expected):
    """The model infers the data's frequency and forecasts the next grid dates."""
    model = fit(_seasonal(dates, season), horizon=5, params=FAST)
    assert model.freq == freq
    forecast = model.predict()
    for series_id, rows in forecast.groupby("series_id"):
        assert list(rows["date"]) == list(pd.to_datetime(expected)), series_id
    assert (forecast["forecast"] >= 0).all()


def test_monthly_forecasts_keep_each_series_level():
    """Monthly forecasts stay near each series' own level (50 and 200 units)."""
    dates = pd.date_range("2018-01-01", periods=48, freq="MS")
    forecast = fit(_seasonal(dates, 12), horizon=6, params=FAST).predict()
    means = forecast.groupby("series_id")["forecast"].mean()
    assert means["a"] == pytest.approx(50, rel=0.25)
    assert means["b"] == pytest.approx(200, rel=0.25)


def test_mid_month_dates_with_freq_ms_forecast_month_starts():
    """Months dated the 15th, fitted with freq="MS", forecast on the 1st of the next months."""
    dates = pd.date_range("2018-01-01", periods=36, freq="MS") + pd.Timedelta(days=14)
    model = fit(_seasonal(pd.DatetimeIndex(dates), 12), horizon=3, freq="MS", params=FAST)
    got = model.predict()["date"].unique()
    assert list(got) == list(pd.to_datetime(["2021-01-01", "2021-02-01", "2021-03-01"]))


def test_daily_dates_with_freq_weekly_are_summed_into_weeks():
    """freq="W-SUN" on daily rows sums each week and forecasts Sundays at weekly volume."""
    dates = pd.date_range("2023-01-02", periods=7 * 60, freq="D")  # Monday .. Sunday x 60
    history = pd.DataFrame({"series_id": "a", "date": dates, "sales": 10.0})
    forecast = fit(history, horizon=4, freq="W-SUN", params=FAST).predict()
    assert (forecast["date"].dt.dayofweek == 6).all()
    np.testing.assert_allclose(forecast["forecast"], 70.0, rtol=0.01)


def test_fiscal_quarters_anchored_in_february_fit_and_forecast():
    """Quarters starting Feb/May/Aug/Nov (QS-FEB) stay on their own grid end to end."""
    dates = pd.date_range("2015-02-01", periods=24, freq="QS-FEB")
    model = fit(_seasonal(dates, 4), horizon=4, params=Params(rounds=30))
    forecast_dates = sorted(model.predict()["date"].unique())
    assert [d.month for d in pd.DatetimeIndex(forecast_dates)] == [2, 5, 8, 11]
    assert pd.Timestamp(forecast_dates[0]) == dates[-1] + pd.DateOffset(months=3)
