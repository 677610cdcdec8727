"""The rolling-origin backtest: known answers on noise-free series and the metrics layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from salesmesh.errors import ForecastError
from salesmesh.forecast import Params, backtest
from salesmesh.forecast.model import fit_panel
from salesmesh.forecast.panel import to_panel
from salesmesh.rollout import policy

MODELS = {"salesmesh", "seasonal_naive", "ets", "theta"}
BASELINES = ("seasonal_naive", "ets", "theta")
FIGURES = ("mase", "smape", "wape", "bias")
QUANTILE_FIGURES = ("spl", "coverage_50", "coverage_80")


@pytest.fixture(scope="module")
def periodic_run(periodic, fast) -> backtest.Backtest:
    """Backtest of three noise-free weekly-pattern series: 14 steps, 3 origins."""
    return backtest.run(to_panel(periodic()), horizon=14, origins=3, params=fast)


@pytest.fixture(scope="module")
def sample_run(sample_history, fast) -> backtest.Backtest:
    """Backtest of the realistic sample: 7 steps, 2 origins."""
    return backtest.run(to_panel(sample_history), horizon=7, origins=2, params=fast)


def test_seasonal_naive_is_exact_on_a_periodic_series(periodic_run):
    """A series that repeats its week is forecast perfectly by seasonal naive: all figures 0."""
    naive = periodic_run.metrics["models"]["seasonal_naive"]
    assert [naive[f] for f in FIGURES] == [0.0, 0.0, 0.0, 0.0]
    assert naive["by_horizon"]["mase"] == [0.0] * 14


def test_ets_and_theta_are_near_exact_on_a_periodic_series(periodic_run):
    """ETS and Theta reproduce a noise-free weekly pattern (sMAPE under 0.01 %)."""
    for name in ("ets", "theta"):
        figures = periodic_run.metrics["models"][name]
        assert figures["smape"] < 0.01, name
        assert figures["mase"] < 0.01, name


def test_blended_model_is_near_exact_on_a_periodic_series(periodic_run):
    """The salesmesh blend forecasts a noise-free weekly pattern within 1 % sMAPE."""
    figures = periodic_run.metrics["models"]["salesmesh"]
    assert figures["smape"] < 1.0
    assert figures["wape"] < 1.0


def test_gradient_boosted_model_alone_learns_a_periodic_series(periodic, fast):
    """Without the ETS blend the GBM still forecasts the weekly pattern within 1 % sMAPE."""
    params = Params(rounds=100, threads=1, gbm_weight=1.0)
    result = backtest.run(to_panel(periodic()), horizon=14, origins=2, params=params)
    assert result.metrics["blend_weight_gbm"] == 1.0
    assert result.metrics["models"]["salesmesh"]["smape"] < 1.0


def test_every_model_is_exact_on_a_constant_series(fast):
    """Constant sales (5 and 40 a day) are forecast as exactly those constants by all models."""
    dates = pd.date_range("2024-01-01", periods=120, freq="D")
    history = pd.concat(
        [
            pd.DataFrame({"series_id": s, "date": dates, "sales": v})
            for s, v in (("a", 5.0), ("b", 40.0))
        ]
    )
    result = backtest.run(to_panel(history), horizon=7, origins=3, params=fast)
    for name in MODELS:
        assert result.metrics["models"][name]["mase"] == pytest.approx(0.0, abs=1e-3), name
        np.testing.assert_allclose(result.forecasts[name], [[5.0] * 7, [40.0] * 7], rtol=1e-3)


def test_seasonal_naive_on_a_linear_trend_has_mase_one_then_two(fast):
    """On y = t, seasonal naive is one week behind (MASE 1) then two weeks (MASE 2)."""
    dates = pd.date_range("2024-01-01", periods=100, freq="D")
    history = pd.DataFrame({"series_id": "a", "date": dates, "sales": np.arange(1.0, 101.0)})
    result = backtest.run(to_panel(history), horizon=14, origins=2, params=fast)
    assert result.metrics["models"]["seasonal_naive"]["by_horizon"]["mase"] == [1.0] * 7 + [2.0] * 7
    assert result.metrics["models"]["seasonal_naive"]["mase"] == 1.5


def test_protocol_lists_origins_horizon_apart_ending_one_horizon_before_the_end(periodic_run):
    """Three origins 14 days apart; the last is 14 days before the data ends."""
    protocol = periodic_run.metrics["protocol"]
    assert protocol["origins"] == ["2024-06-07", "2024-06-21", "2024-07-05"]  # data ends 07-18
    assert (protocol["horizon"], protocol["season_length"], protocol["freq"]) == (14, 7, "D")
    assert protocol["series"] == 3


def test_metrics_hold_every_model_with_per_step_figures(sample_run):
    """Each model has the four figures and the quantile figures (scaled pinball loss, 50 % and
    80 % interval coverage) overall and as lists of one value per horizon step."""
    models = sample_run.metrics["models"]
    assert set(models) == MODELS
    for name, figures in models.items():
        assert set(figures) == {*FIGURES, *QUANTILE_FIGURES, "by_horizon"}, name
        assert set(figures["by_horizon"]) == {*FIGURES, *QUANTILE_FIGURES}
        for figure in (*FIGURES, *QUANTILE_FIGURES):
            assert len(figures["by_horizon"][figure]) == 7, (name, figure)
            assert isinstance(figures[figure], float), (name, figure)
    json.dumps(sample_run.metrics, allow_nan=False)  # strict JSON, no NaN


def test_relative_mase_is_the_ratio_to_each_baseline(sample_run):
    """relative_mase divides the model's MASE by each baseline's."""
    models = sample_run.metrics["models"]
    relative = sample_run.metrics["relative_mase"]
    assert set(relative) == {f"vs_{name}" for name in BASELINES}
    for baseline in BASELINES:
        expected = models["salesmesh"]["mase"] / models[baseline]["mase"]
        assert relative[f"vs_{baseline}"] == pytest.approx(expected, abs=1e-4)


def test_relative_mase_is_null_when_a_baseline_is_perfect(periodic_run):
    """A baseline with MASE 0 gives no ratio (None) instead of dividing by zero."""
    assert periodic_run.metrics["relative_mase"]["vs_seasonal_naive"] is None


def test_last_origin_forecasts_are_kept_for_plots(sample_run, sample_history):
    """The result keeps actuals and each model's forecast at the last origin, per series."""
    assert set(sample_run.forecasts) == MODELS
    assert sample_run.actual.shape == (12, 7)
    assert list(sample_run.dates) == list(
        pd.date_range(sample_history["date"].max() - pd.Timedelta(days=6), periods=7)
    )
    last_week = sample_history[sample_history["date"] >= sample_run.dates[0]]
    expected = last_week.sort_values(["series_id", "date"])["sales"].to_numpy().reshape(12, 7)
    np.testing.assert_array_equal(sample_run.actual, expected)


def test_origins_shrink_to_what_the_history_allows(periodic, fast):
    """Asking for 50 origins on 35 days runs fewer, horizon apart, each after some training."""
    result = backtest.run(to_panel(periodic(days=35)), horizon=7, origins=50, params=fast)
    origins = pd.to_datetime(result.metrics["protocol"]["origins"])
    assert 1 <= len(origins) < 5
    assert (origins.to_series().diff().dropna() == pd.Timedelta(days=7)).all()
    assert origins[-1] == pd.Timestamp("2024-01-29")  # 7 days before the end, 2024-02-04
    assert origins[0] >= pd.Timestamp("2024-01-08")  # at least one horizon to train on


def test_model_is_the_weighted_blend_of_gbm_and_the_local_models(sample_history):
    """With gbm_weight 0 the salesmesh forecast is exactly the mean of ETS and Theta."""
    params = Params(rounds=5, threads=1, gbm_weight=0.0)
    result = backtest.run(to_panel(sample_history), horizon=7, origins=1, params=params)
    local = 0.5 * (result.forecasts["ets"] + result.forecasts["theta"])
    regular = ~result.intermittent  # intermittent ones: the member the backtest chose
    np.testing.assert_allclose(result.forecasts["salesmesh"][regular], local[regular], rtol=1e-12)
    # (TSB, the fourth member, is not among the forecasts kept: this data does not pick it)
    chosen = {"blend": local, "local": local, "seasonal_naive": result.forecasts["seasonal_naive"]}
    served = result.forecasts["salesmesh"][~regular]
    np.testing.assert_allclose(served, chosen[result.member][~regular], rtol=1e-12)
    assert result.metrics["blend_weight_gbm"] == 0.0


def test_too_short_a_history_is_a_forecast_error(periodic, fast):
    """20 days cannot hold 14 days of training plus a 14-day horizon: the message says so."""
    with pytest.raises(
        ForecastError, match="needs at least 28 periods of history; the data has 20"
    ):
        backtest.run(to_panel(periodic(days=20)), horizon=14, origins=1, params=fast)


@pytest.fixture(scope="module")
def promo_run(promo_history, fast) -> backtest.Backtest:
    """Backtest of six series whose sales triple on promotion days: 14 steps, 2 origins."""
    return backtest.run(to_panel(promo_history), horizon=14, origins=2, params=fast)


def test_backtest_scores_the_forecast_served_without_a_plan(promo_history, fast):
    """With one origin the model's backtest forecast is exactly what predict() serves."""
    panel = to_panel(promo_history)
    result = backtest.run(panel, horizon=14, origins=1, params=fast)
    served = fit_panel(panel.truncate(len(panel.dates) - 14), 14, fast).predict()
    expected = served["forecast"].to_numpy().reshape(len(panel.series), 14)
    np.testing.assert_allclose(result.forecasts["salesmesh"], expected, rtol=1e-9)


def test_known_plan_is_reported_beside_the_served_figures(promo_run):
    """On promotion-heavy data the known-plan MASE is better than the served one, and apart."""
    served = promo_run.metrics["models"]["salesmesh"]
    plan = promo_run.metrics["known_plan"]
    assert plan["regressors"] == ["promo"]
    assert set(plan["models"]["salesmesh"]) == {*FIGURES, "by_horizon"}
    assert plan["models"]["salesmesh"]["mase"] < 0.9 * served["mase"]
    expected = plan["models"]["salesmesh"]["mase"] / promo_run.metrics["models"]["ets"]["mase"]
    assert plan["relative_mase"]["vs_ets"] == pytest.approx(expected, abs=1e-4)
    assert "as served" in promo_run.metrics["protocol"]["regressors"]


def test_the_gate_reads_the_served_figure(promo_run):
    """The promotion gate's challenger MASE is the as-served one, never the known plan's."""
    summary = policy.summary(promo_run.metrics)
    decision = policy.gate(summary, None, tolerance=0.05)
    assert decision.challenger_mase == promo_run.metrics["models"]["salesmesh"]["mase"]
    assert (
        decision.challenger_mase != promo_run.metrics["known_plan"]["models"]["salesmesh"]["mase"]
    )


def test_without_regressors_there_is_no_known_plan(periodic_run):
    """Data without price or promo has nothing to plan: known_plan is null."""
    assert periodic_run.metrics["known_plan"] is None


def test_forecasts_from_earlier_data_ends_are_the_model_as_served_from_there(sample_history, fast):
    """``since``: each earlier data end inside the backtest gets the model's forecast from the
    next day, beside the actuals; ends before the model's fit or at the data's end are left out,
    and the points table holds every scored (series, window, step) of the backtest."""
    panel = to_panel(sample_history)
    dates = panel.dates
    ends = [dates[-10], dates[-3], dates[-1], dates[0]]
    result = backtest.run(panel, horizon=7, origins=2, params=fast, since=ends)
    since = result.since
    assert sorted(since["window"].unique()) == [
        dates[-9].date().isoformat(),
        dates[-2].date().isoformat(),
    ]
    late = since[since["window"] == dates[-2].date().isoformat()]
    assert set(late["step"]) == {1, 2}  # two days of actuals arrived after that end
    first = since[since["window"] == dates[-9].date().isoformat()]
    assert (first["actual"].to_numpy() >= 0).all() and (first["scale"] > 0).all()
    points = result.points
    assert list(points.columns) == list(backtest.POINTS_COLUMNS)
    assert len(points) == 2 * 7 * len(panel.series)
    assert sorted(points["window"].unique()) == result.metrics["protocol"]["origins"]
    pooled = float((points["model"] / points["scale"]).mean())
    assert pooled == pytest.approx(result.metrics["models"]["salesmesh"]["mase"], rel=1e-6)


def test_quantiles_are_scored_on_origins_that_did_not_calibrate_them(sample_run, periodic_run):
    """Each origin's intervals come from the other origins' errors; the last origin's are kept
    for the fan chart, and the calibration from every origin for the final model."""
    assert sample_run.bands is not None and sample_run.bands.shape == (12, 7, 5)
    assert (np.diff(sample_run.bands, axis=-1) >= 0).all() and (sample_run.bands >= 0).all()
    assert sample_run.calibration is not None and sample_run.calibration.origins == 2
    for figures in sample_run.metrics["models"].values():
        assert 0.0 <= figures["coverage_50"] <= figures["coverage_80"] <= 1.0
        assert figures["spl"] > 0
    # a model exact at every origin has exact intervals: no loss
    assert periodic_run.metrics["models"]["seasonal_naive"]["spl"] == 0.0
    assert periodic_run.metrics["models"]["seasonal_naive"]["coverage_80"] == 1.0


def test_one_origin_calibrates_the_model_but_cannot_score_its_quantiles(sample_history, fast):
    result = backtest.run(to_panel(sample_history), horizon=7, origins=1, params=fast)
    assert result.calibration is not None and result.calibration.origins == 1
    assert result.bands is None
    assert "spl" not in result.metrics["models"]["salesmesh"]
