"""Quantile forecasts: names, order, calibration on series of known noise, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import SIGMA

from salesmesh import artifact
from salesmesh.errors import ArtifactIntegrityError, ForecastError
from salesmesh.forecast import Forecaster, Params, fit, load, metrics, quantiles

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
    one = calibrated.predict(series=["s3"], horizon=20, quantiles=(0.5,))
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


@pytest.fixture(scope="module")
def fitted_sparse(fast: Params) -> Forecaster:
    """Intermittent demand: 30 daily series selling on about one day in five."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2024-01-01", periods=200, freq="D")
    frames = [
        pd.DataFrame(
            {
                "series_id": f"i{i}",
                "date": dates,
                "sales": np.where(rng.random(200) < 0.2, rng.poisson(3, 200) + 1, 0).astype(float),
            }
        )
        for i in range(30)
    ]
    return fit(pd.concat(frames, ignore_index=True), horizon=14, params=fast, quantiles=True)


def test_intermittent_series_are_calibrated_in_their_own_pool(fitted_sparse, calibrated):
    sparse = fitted_sparse.calibration
    assert sparse is not None and sparse.pools["intermittent"].errors >= quantiles.MIN_ERRORS
    assert sparse.pools["intermittent"].growth == (1.0, 0.0, 1.0)  # no growth fitted there
    frame = fitted_sparse.predict(quantiles=(0.1, 0.9))
    assert (frame["p10"] == 0).mean() > 0.9  # a day without a sale is the likely low end
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
