"""The forecast benchmark's pure scoring (bench/scoring.py) and its holdout windows."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def scoring(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # bench/ holds scripts, not a package: its modules import each other by bare name
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("scoring")


@pytest.fixture
def accuracy(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("accuracy")


def test_pinball_of_a_point_is_half_its_mase(scoring: ModuleType) -> None:
    """Quantiles that all equal the point forecast score half its MASE (the levels average 0.5)."""
    rng = np.random.default_rng(0)
    actual = rng.gamma(2.0, 10.0, size=(4, 6))
    point = actual + rng.normal(0.0, 5.0, size=actual.shape)
    scale = np.array([1.0, 2.0, 5.0, 10.0])
    bands = np.repeat(point[..., None], len(scoring.TAUS), axis=-1)
    mase, _ = scoring.point_errors(actual, point, scale)
    np.testing.assert_allclose(scoring.scaled_pinball(actual, bands, scale), mase / 2.0)


def test_pinball_by_hand(scoring: ModuleType) -> None:
    """One actual of 10 against quantiles 6, 8, 10, 12, 14 with scale 2 scores 0.2."""
    actual = np.array([[10.0]])
    bands = np.array([[[6.0, 8.0, 10.0, 12.0, 14.0]]])
    # losses: 0.1*4, 0.25*2, 0, 0.25*2, 0.1*4 -> mean 0.36, over scale 2
    np.testing.assert_allclose(scoring.scaled_pinball(actual, bands, np.array([2.0])), [0.18])


def test_interval_hits_count_the_bounds_as_inside(scoring: ModuleType) -> None:
    """An actual on an interval's bound counts as covered; one outside does not."""
    actual = np.array([[1.0, 5.0, 9.0]])
    bands = np.array([[[1.0, 2.0, 5.0, 8.0, 9.0]] * 3])
    hits = scoring.interval_hits(actual, bands)
    assert hits["80"].tolist() == [3]
    assert hits["50"].tolist() == [1]


def test_tidy_quantiles_clip_at_zero_and_uncross(scoring: ModuleType) -> None:
    """Negative quantiles become 0 and a lower level never ends above a higher one."""
    tidy = scoring.tidy_quantiles(np.array([[-3.0, -1.0, 4.0, 3.0, 7.0]]))
    assert tidy.tolist() == [[0.0, 0.0, 4.0, 4.0, 7.0]]


def test_interval_columns_follow_the_levels(scoring: ModuleType) -> None:
    """statsforecast's lo-80 .. hi-80 columns map to the levels 0.1 .. 0.9 in order."""
    assert scoring.interval_columns("AutoETS") == [
        "AutoETS-lo-80",
        "AutoETS-lo-50",
        "AutoETS",
        "AutoETS-hi-50",
        "AutoETS-hi-80",
    ]
    assert scoring.TAUS == (0.1, 0.25, 0.5, 0.75, 0.9)


def test_a_zero_figure_leaves_the_series_out_for_every_model(scoring: ModuleType) -> None:
    """A series one model scores 0 on is dropped from all models' geometric means, and counted."""
    means, left_out = scoring.paired_geometric_means(
        {"a": np.array([1.0, 4.0, 0.0]), "b": np.array([2.0, 8.0, 3.0])}
    )
    assert left_out == 1
    assert means["a"] == pytest.approx(2.0)
    assert means["b"] == pytest.approx(4.0)


def test_targets_verdicts_follow_the_figures(scoring: ModuleType) -> None:
    """Each target is met or not from the set ratios: geometric means over sets, worst set."""
    sets = [
        scoring.SetRatios("a", mase_ratio=0.81, spl_ratio=0.80, coverage_80=0.70),
        scoring.SetRatios("b", mase_ratio=1.00, spl_ratio=0.90, coverage_80=0.90),
        scoring.SetRatios("c", mase_ratio=0.81, spl_ratio=1.20, coverage_80=0.80),
    ]
    found = {t.name: t for t in scoring.targets(sets)}
    spl = found["scaled pinball loss vs AutoETS, geometric mean over sets"]
    assert spl.value == pytest.approx((0.8 * 0.9 * 1.2) ** (1 / 3))  # 0.884
    assert spl.met is False
    cover = found["80 % interval coverage, geometric mean over sets"]
    assert cover.value == pytest.approx((0.7 * 0.9 * 0.8) ** (1 / 3))  # 0.796
    assert cover.met is True
    assert found["point MASE vs AutoETS, geometric mean over sets"].met is True  # 0.869
    worst_mase = found["worst set, MASE vs AutoETS"]
    assert (worst_mase.value, worst_mase.met) == (1.0, True)
    worst_spl = found["worst set, scaled pinball loss vs AutoETS"]
    assert (worst_spl.value, worst_spl.met) == (1.2, False)
    assert "(c)" in worst_spl.detail


def test_a_missing_figure_gives_no_verdict(scoring: ModuleType) -> None:
    """A set without a figure leaves that target undecided rather than met."""
    sets = [scoring.SetRatios("a", 0.8, None, 0.8), scoring.SetRatios("b", 0.8, 0.8, 0.8)]
    verdicts = {t.name: t.met for t in scoring.targets(sets)}
    assert verdicts["scaled pinball loss vs AutoETS, geometric mean over sets"] is None
    assert verdicts["worst set, scaled pinball loss vs AutoETS"] is None
    assert verdicts["point MASE vs AutoETS, geometric mean over sets"] is True


def test_windows_tile_the_end_and_drop_short_series(accuracy: ModuleType) -> None:
    """Window k ends (k-1) horizons before the data; a series too short for it drops out."""
    dates = pd.date_range("2020-01-01", periods=30, freq="MS")
    frame = pd.concat(
        [
            pd.DataFrame({"series_id": "long", "date": dates, "sales": np.arange(30.0)}),
            pd.DataFrame({"series_id": "short", "date": dates[-14:], "sales": np.arange(14.0)}),
        ]
    )
    # h = 3, m = 4: a series needs 2 * 4 + 3 = 11 periods
    first = accuracy.cut_window(frame, 1, 3, 4)
    second = accuracy.cut_window(frame, 2, 3, 4)
    assert sorted(first["series_id"].unique()) == ["long", "short"]
    assert sorted(second["series_id"].unique()) == ["long", "short"]  # 11 left
    assert accuracy.cut_window(frame, 3, 3, 4)["series_id"].unique().tolist() == ["long"]
    _, test = accuracy.split_holdout(second[second["series_id"] == "long"], 3)
    assert test["sales"].tolist() == [24.0, 25.0, 26.0]
