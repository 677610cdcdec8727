"""Quantile forecasts: names, order, calibration on series of known noise, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import SIGMA, daily

from salesmesh import artifact
from salesmesh.errors import ArtifactIntegrityError, ForecastError
from salesmesh.forecast import Forecaster, Params, describe, fit, load, metrics, quantiles

LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)
Z = {"p10": -1.2816, "p25": -0.6745, "p75": 0.6745, "p90": 1.2816}  # standard normal quantiles


@pytest.mark.parametrize(
    ("tau", "name"),
    [(0.1, "p10"), (0.25, "p25"), (0.5, "p50"), (0.9, "p90"), (0.025, "p2.5"), (0.999, "p99.9")],
)
def test_a_quantile_column_is_p_and_its_percentage(tau, name):
    assert quantiles.column(tau) == name


@pytest.mark.parametrize(
    ("taus", "match"),
    [
        ((0.0, 0.5), "strictly between 0 and 1"),
        ((0.5, 1.0), "strictly between 0 and 1"),
        ((float("nan"),), "strictly between 0 and 1"),
        ((1.5,), "strictly between 0 and 1"),
        (("a",), "must be numbers"),
        ((), "at least one level"),
        ((0.1, 0.1), "repeat a level"),
    ],
)
def test_levels_outside_zero_and_one_or_repeated_are_refused(calibrated, taus, match):
    with pytest.raises(ForecastError, match=match):
        calibrated.predict(quantiles=taus)


def test_every_row_is_non_decreasing_across_levels_and_never_negative(calibrated, fitted_sparse):
    for model in (calibrated, fitted_sparse):
        frame = model.predict(quantiles=(0.9, 0.025, 0.5, 0.1, 0.75, 0.25, 0.999))
        names = ["p2.5", "p10", "p25", "p50", "p75", "p90", "p99.9"]
        assert list(frame.columns) == ["series_id", "date", "forecast", *names]
        values = frame[names].to_numpy()
        assert np.isfinite(values).all()
        assert (np.diff(values, axis=1) >= 0).all()
        assert (values >= 0).all()


def test_the_point_forecast_is_unchanged_by_asking_for_quantiles(calibrated):
    plain = calibrated.predict()
    with_levels = calibrated.predict(quantiles=LEVELS)
    pd.testing.assert_frame_equal(with_levels[plain.columns], plain)
    one = calibrated.predict(series=["s03"], horizon=20, quantiles=(0.5,))
    assert list(one.columns) == ["series_id", "date", "forecast", "p50"]
    assert len(one) == 20  # beyond the fitted horizon the spread keeps growing smoothly


def test_intervals_cover_what_the_known_noise_says(calibrated, noisy_history):
    """On series with N(0, SIGMA) noise, the 50 % and 80 % intervals hold about 50 % and 80 %
    of the held-out days (840 points: a binomial spread of about 1.5 %, plus the model's own
    error), and their widths are close to the noise's own (2 x 0.674 and 2 x 1.282 SIGMA)."""
    held = noisy_history[
        noisy_history["date"] > noisy_history["date"].max() - pd.Timedelta(14, "D")
    ]
    frame = calibrated.predict(quantiles=LEVELS).merge(held, on=["series_id", "date"])
    assert len(frame) == 60 * 14
    for (low, high), nominal, band in (
        (("p25", "p75"), 0.5, (0.40, 0.60)),
        (("p10", "p90"), 0.8, (0.70, 0.90)),
    ):
        inside = float(((frame["sales"] >= frame[low]) & (frame["sales"] <= frame[high])).mean())
        assert band[0] <= inside <= band[1], (nominal, inside)
        width = float((frame[high] - frame[low]).mean())
        theory = (Z[high] - Z[low]) * SIGMA
        assert 0.8 * theory <= width <= 1.25 * theory, (nominal, width, theory)


def test_a_model_fitted_without_calibration_says_how_to_get_quantiles(fitted):
    assert fitted.quantiles == () and fitted.calibration is None
    with pytest.raises(ForecastError, match=r"fit\(\.\.\., quantiles=True\)"):
        fitted.predict(quantiles=LEVELS)


def fitted_sparse_history() -> pd.DataFrame:
    """Intermittent demand: 30 daily series selling on about one day in five."""
    rng = np.random.default_rng(3)
    return daily(
        30,
        200,
        lambda i, dates: np.where(rng.random(200) < 0.2, rng.poisson(3, 200) + 1, 0).astype(float),
    )


@pytest.fixture(scope="module")
def fitted_sparse(fast: Params) -> Forecaster:
    """A forecaster with quantiles fitted on fitted_sparse_history."""
    return fit(fitted_sparse_history(), horizon=14, params=fast, quantiles=True)


def test_intermittent_series_are_calibrated_in_their_own_pool(fitted_sparse, calibrated):
    sparse = fitted_sparse.calibration
    assert sparse is not None and sparse.pools["intermittent"].errors >= quantiles.MIN_ERRORS
    assert sparse.pools["intermittent"].growth == (1.0, 0.0, 1.0)  # no growth fitted there
    frame = fitted_sparse.predict(quantiles=(0.1, 0.9))
    # four days in five sell nothing, and a sale is of 1 unit or more: the true p10 of every
    # day is 0 and its p90 at least 1
    assert (frame["p10"] < 0.5).all() and (frame["p90"] >= 1).all()
    # the regular series alone: their pool borrows nothing
    regular = calibrated.calibration
    assert regular is not None and regular.pools["regular"].errors > 1000


def test_intermittence_is_read_from_the_average_interval_between_demands():
    values = np.array(
        [
            [1.0, 0, 1, 0, 1, 0, 1, 0, 1, 0],  # a demand every 2 periods: intermittent
            [1.0, 1, 1, 0, 1, 1, 1, 1, 0, 1],  # every 1.25 periods: not
            [0.0] * 10,  # none at all: intermittent
            [np.nan] * 10,  # nothing known: not
        ]
    )
    assert quantiles.intermittent(values, 10).tolist() == [True, False, True, False]


def test_pinball_loss_and_coverage_on_known_numbers():
    actual = np.array([[10.0, np.nan]])
    bands = np.array([[[8.0, 10.0, 13.0], [1.0, 2.0, 3.0]]])
    taus = np.array([0.1, 0.5, 0.9])
    # losses at step 1: 0.1 * 2, 0, 0.1 * 3 -> mean 0.5/3, scaled by 2
    step = metrics.pinball(actual, bands, taus, np.array([2.0]))
    assert step[0] == pytest.approx(0.5 / 3 / 2)
    assert np.isnan(step[1])
    cover = metrics.coverage(actual, bands[..., 0], bands[..., 2])
    assert cover[0] == 1.0 and np.isnan(cover[1])


def _rewrite(folder: Path, config: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Replace a saved model's config and arrays and sign them again (a new manifest)."""
    (folder / "forecaster.json").write_text(json.dumps(config))
    with (folder / "state.npz").open("wb") as handle:
        np.savez_compressed(handle, allow_pickle=False, **arrays)
    (folder / "manifest.json").unlink()
    artifact.write_manifest(folder)


def _saved(model: Forecaster, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    model.save(folder)
    config = json.loads((folder / "forecaster.json").read_text())
    with np.load(folder / "state.npz", allow_pickle=False) as arrays:
        return config, {key: arrays[key] for key in arrays.files}


def test_quantiles_survive_save_and_load(calibrated, tmp_path):
    config, _ = _saved(calibrated, tmp_path / "model")
    assert config["format_version"] == 4
    assert config["quantiles"]["default"] == list(LEVELS)
    loaded = load(tmp_path / "model")
    assert loaded.quantiles == LEVELS
    pd.testing.assert_frame_equal(
        loaded.predict(quantiles=LEVELS, horizon=30),
        calibrated.predict(quantiles=LEVELS, horizon=30),
    )


def test_a_format_3_run_loads_without_quantiles(calibrated, tmp_path):
    folder = tmp_path / "old"
    config, arrays = _saved(calibrated, folder)
    config["format_version"] = 3
    del config["quantiles"]
    _rewrite(folder, config, {k: v for k, v in arrays.items() if not k.startswith("quantile_")})
    old = load(folder)
    assert old.quantiles == ()
    pd.testing.assert_frame_equal(old.predict(), calibrated.predict())
    with pytest.raises(ForecastError, match="without a quantile calibration"):
        old.predict(quantiles=LEVELS)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda c, a: a.pop("quantile_scale"), "quantile_scale"),
        (lambda c, a: a.__setitem__("quantile_scale", a["quantile_scale"][:3]), "per series"),
        (lambda c, a: a.__setitem__("quantile_scale", -a["quantile_scale"]), "positive"),
        (
            lambda c, a: a.__setitem__("quantile_pool__regular", a["quantile_pool__regular"][::-1]),
            "not increasing",
        ),
        (lambda c, a: a.__setitem__("quantile_levels", a["quantile_levels"] * 0.5), "levels"),
        (lambda c, a: c["quantiles"]["pools"].pop("intermittent"), "pools"),
    ],
)
def test_a_signed_but_inconsistent_calibration_is_refused(calibrated, tmp_path, damage, match):
    """Files that pass their manifest (a bug, or a hand-edited run) are still checked."""
    folder = tmp_path / "bad"
    config, arrays = _saved(calibrated, folder)
    damage(config, arrays)
    _rewrite(folder, config, arrays)
    with pytest.raises(ArtifactIntegrityError, match=match):
        load(folder)


def test_tsb_forecasts_the_smoothed_chance_of_a_demand_times_its_size():
    """A demand of 4 every third period, the last one at the end: TSB's chance settles at
    0.1 / (1 - 0.9 ** 3) right after a demand, times the size 4, flat; after 60 periods with
    no demand it has decayed by 0.9 ** 60; a series with no demand forecasts zero."""
    from salesmesh.forecast import baselines

    regular = np.tile([0.0, 0.0, 4.0], 100)
    stopped = np.concatenate([regular[:240], np.zeros(60)])
    values = np.stack([regular, stopped, np.zeros(300)])
    values[2, :50] = np.nan  # starts late, never sells
    found = baselines.tsb_forecast(values, 5)
    assert found.shape == (3, 5) and (found == found[:, :1]).all()
    settled = 4 * 0.1 / (1 - 0.9**3)
    assert found[0, 0] == pytest.approx(settled, rel=1e-6)
    assert found[1, 0] == pytest.approx(settled * 0.9**60, rel=1e-6)
    assert found[2, 0] == 0.0


def test_intermittent_series_are_forecast_by_the_member_their_backtest_chose(fitted_sparse):
    """The backtest scores the blend, its local half and TSB on the intermittent series and the
    model serves the best (the blend unless another beats it by the margin); regular series
    keep the blend."""
    from salesmesh.forecast import backtest, baselines
    from salesmesh.forecast.activity import prepare
    from salesmesh.forecast.panel import to_panel

    state = fitted_sparse._state
    assert state.sparse is not None and state.sparse.all()
    member = state.member
    assert member in backtest.MEMBERS
    if member == backtest.BLEND:
        assert state.weights is None
    else:
        assert state.weights is not None and (state.weights == 0).all()
    if member == backtest.TSB:
        history = fitted_sparse_history()
        ready, _ = prepare(to_panel(history))
        expected = baselines.tsb_forecast(ready.values, 14)
        served = fitted_sparse.predict()["forecast"].to_numpy().reshape(30, 14)
        np.testing.assert_allclose(served, expected, rtol=1e-9)


def test_the_backtest_reports_each_members_error_and_applies_the_rule(fitted_sparse, fast):
    """Each member's error relative to the blend's (geometric mean over the intermittent
    series), and the member the rule picks from them."""
    from salesmesh.forecast import backtest
    from salesmesh.forecast.panel import to_panel

    result = backtest.run(to_panel(fitted_sparse_history()), horizon=14, params=fast)
    choice = result.metrics["intermittent"]
    assert choice["series"] == 30 and set(choice["relative_error"]) == set(backtest.MEMBERS)
    relative = choice["relative_error"]
    assert relative["blend"] == 1.0
    best = min((name for name in backtest.MEMBERS if name != "blend"), key=relative.__getitem__)
    expected = best if relative[best] < 1 - backtest.MEMBER_MARGIN else "blend"
    assert choice["member"] == expected == result.member


def test_a_member_other_than_the_blend_changes_only_intermittent_series(
    noisy_history, fast, tmp_path
):
    """Forcing TSB on a business with no intermittent series changes nothing; on intermittent
    series it serves exactly TSB's forecast, also after saving and loading (and for longer
    horizons); an unknown member is refused."""
    from salesmesh.forecast import baselines
    from salesmesh.forecast.activity import prepare
    from salesmesh.forecast.model import fit_panel
    from salesmesh.forecast.panel import to_panel

    panel = to_panel(noisy_history)
    blend = fit_panel(panel, 7, fast)
    tsb = fit_panel(panel, 7, fast, member="tsb")
    pd.testing.assert_frame_equal(tsb.predict(), blend.predict())

    sparse = to_panel(fitted_sparse_history())
    forced = fit_panel(sparse, 7, fast, member="tsb")
    expected = baselines.tsb_forecast(prepare(sparse)[0].values, 1)
    for model in (forced, load(forced.save(tmp_path / "tsb"))):
        served = model.predict(horizon=10)["forecast"].to_numpy().reshape(30, 10)
        np.testing.assert_allclose(served, np.repeat(expected, 10, axis=1), rtol=1e-12)
        assert describe(model, fast)["intermittent"] == {"member": "tsb", "series": 30}
    with pytest.raises(ForecastError, match="member must be one of"):
        fit_panel(panel, 7, fast, member="croston")


def test_the_gates_forecasts_from_earlier_data_ends_use_the_chosen_member(fast, monkeypatch):
    """The forecasts the gate scores against the champion's (``since``) are what the model
    serves: intermittent series by the member the backtest chose, here seasonal naive."""
    from salesmesh.forecast import backtest, baselines
    from salesmesh.forecast.activity import prepare
    from salesmesh.forecast.panel import to_panel

    monkeypatch.setattr(
        backtest, "_intermittent_member", lambda made, actuals: ("seasonal_naive", {})
    )
    panel = to_panel(fitted_sparse_history())
    end = panel.dates[-10]  # an earlier run's data ended 9 days before this one's
    result = backtest.run(panel, horizon=14, params=fast, since=[end])
    cut = len(panel.dates) - 9
    known, _ = prepare(panel.truncate(cut))
    expected = baselines.seasonal_naive(known.values, 7, 14)[:, :9]
    served = result.since["forecast"].to_numpy().reshape(30, 9)
    np.testing.assert_allclose(served, expected, rtol=1e-12)
