"""Histories with known structure and small fitted forecasters, shared across forecast tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from salesmesh.forecast import Forecaster, Params, fit
from salesmesh.sample import generate

WEEK = np.array([10, 12, 14, 16, 20, 30, 25.0])  # Mon..Sun, no noise

Periodic = Callable[..., pd.DataFrame]


@pytest.fixture(scope="session")
def fast() -> Params:
    """Few boosting rounds: enough to learn the test patterns, quick on two cores."""
    return Params(rounds=60, threads=1)


@pytest.fixture(scope="session")
def periodic() -> Periodic:
    """Builder of noise-free daily series repeating WEEK, one per scale, from a Monday."""

    def build(days: int = 200, scales: tuple[float, ...] = (1.0, 3.0, 0.5)) -> pd.DataFrame:
        dates = pd.date_range("2024-01-01", periods=days, freq="D")
        return pd.concat(
            [
                pd.DataFrame(
                    {"series_id": f"s{i}", "date": dates, "sales": k * WEEK[dates.dayofweek]}
                )
                for i, k in enumerate(scales)
            ],
            ignore_index=True,
        )

    return build


@pytest.fixture(scope="session")
def sample_history() -> pd.DataFrame:
    """Realistic daily sales with price and promo: 3 stores x 4 products x 400 days."""
    frame = generate(stores=3, products=4, days=400, seed=1)
    ids = frame["store_id"] + "/" + frame["product_id"]
    return frame.drop(columns=["store_id", "product_id"]).assign(series_id=ids)


@pytest.fixture(scope="session")
def fitted(sample_history: pd.DataFrame, fast: Params) -> Forecaster:
    """A forecaster fitted on the sample history for 14 days."""
    return fit(sample_history, horizon=14, params=fast)


@pytest.fixture(scope="session")
def promo_history() -> pd.DataFrame:
    """Six daily series (integer ids) whose sales triple on promotion days (~15 % of days)."""
    rng = np.random.default_rng(5)
    dates = pd.date_range("2024-01-01", periods=300, freq="D")
    weekly = np.array([0.9, 0.9, 1.0, 1.0, 1.1, 1.3, 1.2])
    frames = []
    for series_id in range(101, 107):
        promo = (rng.random(len(dates)) < 0.15).astype(np.int64)
        promo[-3:] = 1  # history ends inside a promotion: the default must not hold it
        mean = rng.uniform(10, 60) * weekly[dates.dayofweek] * np.where(promo == 1, 3.0, 1.0)
        frames.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "date": dates,
                    "sales": rng.poisson(mean).astype(float),
                    "promo": promo,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def promo_model(promo_history: pd.DataFrame, fast: Params) -> Forecaster:
    """A forecaster fitted on promo_history for 14 days."""
    return fit(promo_history, horizon=14, params=fast)


SIGMA = 3.0  # the noise of noisy_history: N(0, SIGMA) on every day


def daily(count: int, days: int, sales: Callable[[int, pd.DatetimeIndex], object]) -> pd.DataFrame:
    """``count`` daily series ``s00``, ``s01`` .. of ``days`` days from 2024-01-01; series ``i``
    sells ``sales(i, dates)``."""
    dates = pd.date_range("2024-01-01", periods=days, freq="D")
    frames = [
        pd.DataFrame({"series_id": f"s{i:02d}", "date": dates, "sales": sales(i, dates)})
        for i in range(count)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="session")
def noisy_history() -> pd.DataFrame:
    """60 daily series: a weekly pattern (5 sizes) plus a level, and Gaussian noise of known
    spread (SIGMA), 260 days; the quantile tests hold out the last 14."""
    rng = np.random.default_rng(0)
    return daily(
        60,
        260,
        lambda i, dates: (2 + i % 5) * WEEK[dates.dayofweek] + 20 + rng.normal(0, SIGMA, 260),
    )


@pytest.fixture(scope="session")
def calibrated(noisy_history: pd.DataFrame, fast: Params) -> Forecaster:
    """A forecaster with quantiles, fitted on noisy_history but its last 14 days."""
    known = noisy_history[
        noisy_history["date"] < noisy_history["date"].max() - pd.Timedelta(13, "D")
    ]
    return fit(known, horizon=14, params=fast, quantiles=True)
