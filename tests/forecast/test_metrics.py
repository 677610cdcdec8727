"""Accuracy metrics against answers worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from salesmesh.forecast.metrics import bias, mase, seasonal_scale, smape, summarize, wape

nan = np.nan


def _a(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=float)


def test_mase_is_absolute_error_over_scale_per_step():
    """actual [1,2,3] vs forecast [2,2,2] with scale 1 gives MASE [1,0,1] per step."""
    np.testing.assert_array_equal(
        mase(_a([[1, 2, 3]]), _a([[2, 2, 2]]), np.array([1.0])), [1.0, 0.0, 1.0]
    )


def test_mase_scales_each_series_then_averages_series():
    """Each series' errors are divided by its own scale before the mean over series."""
    actual = _a([[1, 2], [4, 4]])
    forecast = _a([[2, 2], [0, 4]])
    # errors [[1, 0], [4, 0]] / scales [1, 2] -> [[1, 0], [2, 0]] -> mean over series
    np.testing.assert_array_equal(mase(actual, forecast, np.array([1.0, 2.0])), [1.5, 0.0])


def test_mase_skips_series_without_an_actual_at_a_step():
    """A NaN actual (series not started) leaves that step's mean to the other series."""
    actual = _a([[nan, 2], [3, 3]])
    forecast = _a([[9, 2], [1, 1]])
    np.testing.assert_array_equal(mase(actual, forecast, np.array([1.0, 1.0])), [2.0, 1.0])


def test_smape_of_zero_against_zero_is_a_perfect_forecast():
    """0 forecast for 0 actual scores 0, not NaN."""
    np.testing.assert_array_equal(smape(_a([[0, 0]]), _a([[0, 0]])), [0.0, 0.0])


def test_smape_known_values_and_bounds():
    """|1-3| / mean(1,3) is 100 %; any forecast for a zero actual is the maximum 200 %."""
    np.testing.assert_allclose(smape(_a([[1, 0]]), _a([[3, 5]])), [100.0, 200.0])


def test_smape_is_symmetric_in_actual_and_forecast():
    """Swapping actual and forecast leaves sMAPE unchanged."""
    a, f = _a([[1, 10, 4]]), _a([[3, 7, 4]])
    np.testing.assert_allclose(smape(a, f), smape(f, a))


def test_smape_ignores_missing_actuals():
    """A NaN actual is left out instead of counting as a perfect or a failed forecast."""
    np.testing.assert_allclose(smape(_a([[nan], [1]]), _a([[5], [3]])), [100.0])


def test_wape_weights_errors_by_volume():
    """WAPE is the summed absolute error over summed actuals, per step."""
    actual = _a([[10, 5], [30, 5]])
    forecast = _a([[12, 5], [27, 15]])
    # step 1: (2 + 3) / 40; step 2: (0 + 10) / 10
    np.testing.assert_allclose(wape(actual, forecast), [12.5, 100.0])


def test_wape_and_bias_are_undefined_without_volume():
    """With zero actual volume at a step, WAPE and bias are NaN rather than infinite."""
    assert np.isnan(wape(_a([[0]]), _a([[3]]))[0])
    assert np.isnan(bias(_a([[0]]), _a([[3]]))[0])


@pytest.mark.parametrize(("forecast", "expected"), [(12.0, 20.0), (8.0, -20.0), (10.0, 0.0)])
def test_bias_sign_is_positive_when_over_forecasting(forecast, expected):
    """Forecasting 12 for 10 is +20 % bias, 8 for 10 is -20 %."""
    np.testing.assert_allclose(bias(_a([[10]]), _a([[forecast]])), [expected])


def test_bias_nets_out_while_wape_does_not():
    """Over- and under-forecasts cancel in bias but both count in WAPE."""
    actual, forecast = _a([[10], [10]]), _a([[12], [8]])
    np.testing.assert_allclose(bias(actual, forecast), [0.0])
    np.testing.assert_allclose(wape(actual, forecast), [20.0])


def test_seasonal_scale_is_mean_absolute_seasonal_difference():
    """[1,2,3,1,2,4] with season 3 has seasonal differences 0,0,1: scale 1/3."""
    np.testing.assert_allclose(seasonal_scale(_a([[1, 2, 3, 1, 2, 4]]), 3), [1 / 3])


def test_seasonal_scale_ignores_periods_before_the_series_starts():
    """Leading NaN (not yet started) is skipped, not treated as a difference."""
    np.testing.assert_allclose(seasonal_scale(_a([[nan, nan, 1, 2, 3, 1, 2, 4]]), 3), [1 / 3])


def test_seasonal_scale_falls_back_to_lag_one_for_short_series():
    """A history no longer than a season uses the mean absolute first difference."""
    np.testing.assert_allclose(seasonal_scale(_a([[1, 3, 2]]), 7), [1.5])
    # long matrix, but this series started too late for one seasonal difference
    np.testing.assert_allclose(seasonal_scale(_a([[nan, nan, nan, nan, nan, 2, 5]]), 3), [3.0])


def test_seasonal_scale_of_a_flat_series_is_one():
    """A flat series (zero differences) gets scale 1 so its errors count in units."""
    np.testing.assert_array_equal(seasonal_scale(_a([[4, 4, 4, 4, 4, 4, 4, 4, 4]]), 3), [1.0])


def test_seasonal_scale_is_one_per_series():
    """Each row gets its own scale."""
    history = _a([[0, 0, 0, 2, 2, 2], [5, 5, 5, 5, 5, 5]])
    np.testing.assert_allclose(seasonal_scale(history, 3), [2.0, 1.0])


def test_summarize_pools_volume_for_overall_wape_and_averages_steps_for_mase():
    """Overall WAPE pools all steps by volume; overall MASE is the mean of the steps."""
    actual, forecast = _a([[10, 100]]), _a([[20, 100]])
    figures = summarize(actual, forecast, np.array([5.0]))
    assert figures["by_horizon"] == {
        "mase": [2.0, 0.0],
        "smape": [pytest.approx(66.666667), 0.0],
        "wape": [100.0, 0.0],
        "bias": [100.0, 0.0],
    }
    assert figures["mase"] == 1.0
    assert figures["wape"] == pytest.approx(100 * 10 / 110, abs=1e-6)
    assert figures["bias"] == pytest.approx(100 * 10 / 110, abs=1e-6)


def test_summarize_reports_undefined_figures_as_json_null():
    """NaN figures become None so the result is strict JSON."""
    figures = summarize(_a([[0, 4]]), _a([[1, 4]]), np.array([1.0]))
    assert figures["by_horizon"]["wape"] == [None, 0.0]
    json.dumps(figures, allow_nan=False)  # raises on NaN or inf
