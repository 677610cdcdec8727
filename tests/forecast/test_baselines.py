"""Seasonal naive, ETS and Theta on series whose right forecast is known."""

from __future__ import annotations

import numpy as np

from salesmesh.forecast.baselines import ets_forecast, seasonal_naive, theta_forecast

nan = np.nan
WEEK = np.array([10, 12, 14, 16, 20, 30, 25.0])


def test_seasonal_naive_repeats_the_last_season():
    """With season 7 and horizon 10 the last week is repeated from its first day."""
    values = np.arange(1.0, 15.0)[None, :]  # two weeks: 1..7, 8..14
    np.testing.assert_array_equal(
        seasonal_naive(values, 7, 10), [[8, 9, 10, 11, 12, 13, 14, 8, 9, 10]]
    )


def test_seasonal_naive_fills_from_the_last_value_when_a_season_is_missing():
    """A short history, or one that started inside the last season, repeats its last value."""
    np.testing.assert_array_equal(seasonal_naive(np.array([[3.0, 5.0]]), 7, 3), [[5, 5, 5]])
    late = np.array([[nan, nan, nan, nan, nan, 4.0, 6.0]])
    np.testing.assert_array_equal(seasonal_naive(late, 7, 7), [[6, 6, 6, 6, 6, 4, 6]])


def test_seasonal_naive_forecasts_zero_for_a_series_with_no_values():
    """A row of NaN gives zeros, never NaN."""
    np.testing.assert_array_equal(seasonal_naive(np.full((1, 10), nan), 7, 2), [[0, 0]])


def test_ets_reproduces_a_perfectly_periodic_series():
    """Additive or multiplicative seasonality fits a noise-free weekly pattern exactly."""
    values = np.tile(WEEK, 20)[None, :] * np.array([[1.0], [4.0]])
    expected = np.tile(WEEK, 2)[None, :] * np.array([[1.0], [4.0]])
    np.testing.assert_allclose(ets_forecast(values, 7, 14), expected, rtol=1e-6)


def test_ets_of_a_constant_series_is_that_constant():
    """Level 5 forever forecasts 5 at every step."""
    np.testing.assert_allclose(ets_forecast(np.full((1, 60), 5.0), 7, 10), np.full((1, 10), 5.0))


def test_ets_follows_a_trend_up():
    """On a noise-free upward line the forecast keeps rising past the last value."""
    forecast = ets_forecast(np.arange(1.0, 101.0)[None, :], 1, 5)[0]
    assert forecast[0] > 100
    assert np.all(np.diff(forecast) > 0)


def test_ets_never_forecasts_negative_sales():
    """A series falling towards zero is clipped at zero instead of going negative."""
    falling = np.linspace(100, 1, 60)[None, :]
    forecast = ets_forecast(falling, 7, 60)
    assert forecast.min() >= 0.0
    assert forecast[0, -1] == 0.0


def test_ets_handles_series_that_started_late_or_never():
    """NaN before a start is skipped; an empty row forecasts zeros; results are finite."""
    values = np.full((2, 70), nan)
    values[0, 35:] = np.tile(WEEK, 5)
    forecast = ets_forecast(values, 7, 7)
    np.testing.assert_allclose(forecast[0], WEEK, rtol=1e-6)
    np.testing.assert_array_equal(forecast[1], np.zeros(7))


def test_theta_reproduces_a_perfectly_periodic_series():
    """Multiplicative seasonal adjustment recovers a noise-free weekly pattern exactly."""
    values = np.tile(WEEK, 20)[None, :] * np.array([[1.0], [4.0]])
    expected = np.tile(WEEK, 2)[None, :] * np.array([[1.0], [4.0]])
    np.testing.assert_allclose(theta_forecast(values, 7, 14), expected, rtol=1e-6)


def test_theta_of_a_constant_series_is_that_constant():
    """Level 5 forever forecasts 5 at every step."""
    np.testing.assert_allclose(theta_forecast(np.full((1, 60), 5.0), 7, 5), np.full((1, 5), 5.0))


def test_theta_drifts_at_half_the_linear_slope():
    """Classical Theta adds half the fitted trend per step: on y = t it rises 0.5 a step."""
    forecast = theta_forecast(np.arange(1.0, 101.0)[None, :], 1, 5)[0]
    np.testing.assert_allclose(np.diff(forecast), 0.5)
    assert 99.0 < forecast[0] < 101.0


def test_theta_handles_series_that_started_late_or_never_and_stays_non_negative():
    """NaN before a start is skipped, an empty row forecasts zeros, a falling one stops at 0."""
    values = np.full((3, 70), nan)
    values[0, 35:] = np.tile(WEEK, 5)
    values[2] = np.linspace(100, 1, 70)
    forecast = theta_forecast(values, 7, 70)
    np.testing.assert_allclose(forecast[0, :7], WEEK, rtol=1e-6)
    np.testing.assert_array_equal(forecast[1], np.zeros(70))
    assert forecast.min() >= 0.0
    assert forecast[2, -1] == 0.0


def test_ets_picks_no_seasonality_for_pure_noise():
    """On noise without a season, the penalised choice forecasts flat, not a spurious pattern."""
    rng = np.random.default_rng(3)
    values = 100.0 + rng.normal(0, 10, size=(20, 72))
    forecast = ets_forecast(values, season=12, horizon=12)
    wiggle = forecast.std(axis=1)  # seasonal indices fitted to noise would swing by ~5 units
    assert np.median(wiggle) < 1.0


def test_ets_keeps_a_real_season():
    """A clear season survives the penalty: the forecast repeats the pattern."""
    pattern = np.tile(np.array([50, 60, 80, 120, 90, 70, 55, 50, 65, 85, 110, 140.0]), 6)
    values = pattern[None, :] + np.random.default_rng(4).normal(0, 2, size=(5, 72))
    forecast = ets_forecast(values, season=12, horizon=12)
    assert np.abs(forecast - pattern[:12]).mean() < 6.0
