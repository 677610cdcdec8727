"""Series that end early: zero gaps inside, unknown after, forecast from real history or not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesmesh import artifact
from salesmesh.errors import ForecastError
from salesmesh.forecast import Forecaster, Params, backtest, describe, fit, load
from salesmesh.forecast.activity import activity, bridge
from salesmesh.forecast.panel import to_panel


@pytest.fixture(scope="module")
def endings(sample_history: pd.DataFrame) -> pd.DataFrame:
    """The sample plus a constant 20/day series whose rows end 30 days early, and a 15/day
    series whose rows end 120 days early (more than the 91-day threshold)."""
    dates = pd.date_range(sample_history["date"].min(), sample_history["date"].max())
    extra = [
        pd.DataFrame({"series_id": "recent", "date": dates[:-30], "sales": 20.0}),
        pd.DataFrame({"series_id": "gone", "date": dates[:-120], "sales": 15.0}),
    ]
    return pd.concat([sample_history, *extra], ignore_index=True).assign(
        price=lambda f: f["price"].fillna(1.0), promo=lambda f: f["promo"].fillna(0)
    )


@pytest.fixture(scope="module")
def model(endings: pd.DataFrame, fast: Params) -> Forecaster:
    """A forecaster fitted on ``endings`` for 14 days."""
    return fit(endings, horizon=14, params=fast)


def test_a_gap_inside_a_series_is_zero_and_after_its_last_row_unknown():
    """Missing days between a series' rows are zero sales; after its last row they are NaN."""
    history = pd.DataFrame(
        {
            "series_id": ["a", "a", "a", "b"],
            "date": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-04", "2024-01-06"]),
            "sales": [5.0, 6.0, 7.0, 1.0],
        }
    )
    panel = to_panel(history, "D")
    np.testing.assert_array_equal(panel.values[0], [5, 0, 6, 7, np.nan, np.nan])


def test_activity_counts_silent_periods_and_applies_the_threshold():
    """Silence is counted in periods after the last value; over 91 days a series is inactive."""
    values = np.full((3, 200), 4.0)
    values[1, -30:] = np.nan
    values[2, -100:] = np.nan
    found = activity(values, "D")
    assert found.silent.tolist() == [0, 30, 100]
    assert found.threshold == 91
    assert found.inactive.tolist() == [False, False, True]
    assert activity(values, "W-SUN").threshold == 13


def test_bridge_repeats_the_mean_of_the_same_phase():
    """A silence is filled with the mean of the same weekday over the last four weeks."""
    week = np.array([1.0, 2, 3, 4, 5, 6, 7])
    values = np.concatenate([np.tile(week, 4) + np.repeat([0.0, 0, 4, 4], 7), [np.nan] * 9])
    filled = bridge(values[None, :], np.array([9]), 7)[0]
    np.testing.assert_array_equal(filled[:28], values[:28])
    np.testing.assert_array_equal(filled[28:], [3, 4, 5, 6, 7, 8, 9, 3, 4])


def test_a_series_that_ended_recently_is_forecast_from_its_real_history(model):
    """The constant 20/day series whose rows ended 30 days early is forecast near 20 a day."""
    forecast = model.predict()
    recent = forecast.loc[forecast["series_id"] == "recent", "forecast"]
    assert len(recent) == 14
    assert recent.mean() == pytest.approx(20.0, rel=0.15)
    assert recent.min() > 12.0
    assert model.silence["recent"] == 30


def test_an_inactive_series_is_not_forecast(model, endings):
    """The series silent for 120 days is left out of predict() and named, with its last date."""
    forecast = model.predict()
    assert "gone" not in set(forecast["series_id"])
    assert set(forecast["series_id"]) == set(endings["series_id"]) - {"gone"}
    last = endings.loc[endings["series_id"] == "gone", "date"].max()
    assert model.inactive == {"gone": last}
    with pytest.raises(ForecastError, match=r"inactive series are not forecast: \['gone'\]"):
        model.predict(series=["gone"])


def test_describe_counts_the_series_that_ended_early(model, fast):
    """describe() gives the threshold, the counts and each early series' silence."""
    described = describe(model, fast)
    assert (described["series_ended_early"], described["series_inactive"]) == (2, 1)
    assert described["inactive_after"] == 91
    assert described["silence"] == {"recent": 30, "gone": 120}


def test_silences_survive_save_and_load(model, tmp_path):
    """A saved and loaded model keeps its silences, inactive series and forecasts."""
    loaded = load(model.save(tmp_path / "model"))
    assert loaded.silence == model.silence
    assert loaded.inactive == model.inactive
    pd.testing.assert_frame_equal(loaded.predict(), model.predict())


def test_a_format_2_run_still_loads_with_every_series_active(fitted, tmp_path: Path):
    """A run saved before silences were recorded loads and forecasts every series as before."""
    folder = Path(shutil.copytree(fitted.save(tmp_path / "new"), tmp_path / "old"))
    config = json.loads((folder / "forecaster.json").read_text())
    config["format_version"] = 2
    del config["inactive_after"]
    (folder / "forecaster.json").write_text(json.dumps(config))
    with np.load(folder / "state.npz", allow_pickle=False) as arrays:
        kept = {key: arrays[key] for key in arrays.files if key != "silent"}
    with (folder / "state.npz").open("wb") as handle:
        np.savez_compressed(handle, allow_pickle=False, **kept)
    (folder / "manifest.json").unlink()
    artifact.write_manifest(folder)
    old = load(folder)
    assert (old.silence, old.inactive, old.inactive_after) == ({}, {}, 91)
    pd.testing.assert_frame_equal(old.predict(), fitted.predict())


def test_backtest_does_not_score_a_series_inactive_at_the_origin(endings, fast):
    """The backtest leaves out the inactive series and scores the recent one where it sold."""
    result = backtest.run(to_panel(endings), horizon=14, origins=1, params=fast)
    rows = list(result.series)
    assert np.isnan(result.forecasts["salesmesh"][rows.index("gone")]).all()
    assert np.isnan(result.actual[rows.index("recent")]).all()  # silent through the window
    assert np.isfinite(result.forecasts["salesmesh"][rows.index("recent")]).all()
    assert result.metrics["models"]["salesmesh"]["mase"] is not None
