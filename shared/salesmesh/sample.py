"""Realistic synthetic daily retail sales for demos, tests and benchmarks.

Every component is an array shaped (series, days), so a thousand series over three years
take well under a few seconds. A series is one store x product; its expected demand is

    store size x product level x weekly x yearly x trend x holidays x price effect x promo,

and the observed units are gamma-Poisson (negative binomial) draws around that mean, with
stock-out spells forced to zero and Christmas Day closed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["COLUMNS", "generate", "write_sample"]

COLUMNS = ["date", "store_id", "product_id", "sales", "price", "promo"]

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Day-of-week shapes (Mon..Sun) for four product categories: everyday groceries, household,
# personal care and leisure. Weekends peak; how much varies by category and store.
_WEEKLY = np.array(
    [
        [0.88, 0.86, 0.90, 0.95, 1.10, 1.30, 1.01],
        [0.92, 0.90, 0.92, 0.96, 1.04, 1.24, 1.02],
        [0.95, 0.93, 0.94, 0.97, 1.05, 1.16, 1.00],
        [0.78, 0.76, 0.80, 0.88, 1.12, 1.46, 1.20],
    ]
)


def _easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _holiday_multipliers(dates: pd.DatetimeIndex) -> Array:
    """Chain-wide demand multiplier per day: 0 when closed, > 1 on shopping peaks."""
    effects: dict[dt.date, float] = {}
    for year in range(dates[0].year, dates[-1].year + 1):
        easter = _easter(year)
        nov1 = dt.date(year, 11, 1)
        black_friday = nov1 + dt.timedelta(days=(3 - nov1.weekday()) % 7 + 22)
        effects |= {
            dt.date(year, 1, 1): 0.55,  # New Year's Day: short hours
            easter - dt.timedelta(days=2): 1.15,  # Good Friday
            easter - dt.timedelta(days=1): 1.45,  # Easter Saturday
            easter: 0.60,
            easter + dt.timedelta(days=1): 0.85,
            black_friday: 2.0,
            black_friday + dt.timedelta(days=1): 1.35,
            dt.date(year, 12, 23): 1.30,
            dt.date(year, 12, 24): 2.0,
            dt.date(year, 12, 25): 0.0,  # Christmas Day: stores closed
            dt.date(year, 12, 26): 0.80,
            dt.date(year, 12, 31): 1.30,
        }
    return np.array([effects.get(day.date(), 1.0) for day in dates], dtype=np.float64)


def _spells(
    rng: np.random.Generator, shape: tuple[int, int], rate: float, low: int, high: int
) -> tuple[BoolArray, IntArray, IntArray]:
    """Random multi-day spells: (active mask, index of the latest start, days since it ended).

    A spell starts on a day with probability `rate` and lasts `low..high` days; a new start
    inside a running spell replaces it.
    """
    col = np.broadcast_to(np.arange(shape[1]), shape)
    starts = rng.random(shape) < rate
    length = rng.integers(low, high + 1, size=shape)
    last = np.maximum.accumulate(np.where(starts, col, -1), axis=1)
    length_at = np.take_along_axis(length, np.maximum(last, 0), axis=1)
    since_end = np.where(last >= 0, col - last - length_at, -(10**9))
    active = (last >= 0) & (since_end < 0)
    return active, last, since_end


def _product_levels(rng: np.random.Generator, n: int) -> Array:
    """Heavy-tailed product levels (mean units/day at a typical store).

    Stratified logistic quantiles on a log scale: about a fifth of products sell under one
    unit a day, the top decile tens to hundreds.
    """
    u = (rng.permutation(n) + rng.uniform(0.05, 0.95, n)) / n
    return np.clip(4.0 * np.exp(0.95 * np.log(u / (1.0 - u))), 0.08, 250.0)


def _price_points(raw: Array) -> Array:
    """Round regular prices to retail points ending in 9 cents (x.09 ... x.99)."""
    points: Array = np.ceil(raw * 10.0) / 10.0 - 0.01
    return points.clip(0.19).round(2)


def generate(
    stores: int = 5,
    products: int = 10,
    days: int = 730,
    seed: int = 0,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    """Daily sales for every store x product, sorted by store_id, product_id, date."""
    if min(stores, products, days) < 1:
        raise ValueError("stores, products and days must all be positive")
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    n = stores * products
    shape = (n, days)
    store_of = np.repeat(np.arange(stores), products)
    product_of = np.tile(np.arange(products), stores)
    t = np.arange(days, dtype=np.float64)

    # Levels: store size x heavy-tailed product base.
    store_size = np.exp(rng.normal(0.0, 0.35, stores))
    product_level = _product_levels(rng, products)
    level = (store_size[store_of] * product_level[product_of])[:, None]

    # Weekly: category shape, sharpened or flattened per store and per series.
    category = rng.integers(0, len(_WEEKLY), products)[product_of]
    strength = np.exp(rng.normal(0.0, 0.25, stores))[store_of] * rng.uniform(0.7, 1.3, n)
    weekly = _WEEKLY[category][:, dates.dayofweek.to_numpy()] ** strength[:, None]

    # Yearly: two Fourier harmonics per series (most products peak in late autumn, a fifth
    # are summer lines) plus a Christmas-shopping bump in the weeks before December 25.
    doy = np.asarray(dates.dayofyear, dtype=np.float64)
    phase = 2 * np.pi * doy / 365.25
    summer = rng.random(products) < 0.2
    peak_day = np.where(summer, 196.0, 320.0)[product_of] + rng.normal(0.0, 12.0, n)
    shift = phase[None, :] - (2 * np.pi * peak_day / 365.25)[:, None]
    amp1 = rng.gamma(2.0, 0.12, products)[product_of] * rng.uniform(0.8, 1.2, n)
    amp2 = rng.normal(0.0, 0.06, n)
    xmas = np.where(summer, 0.05, rng.uniform(0.15, 0.5, products))[product_of]
    bump = np.exp(-0.5 * ((doy - 352.0) / 9.0) ** 2)
    yearly = np.exp(
        amp1[:, None] * np.cos(shift)
        + amp2[:, None] * np.cos(2 * shift)
        + xmas[:, None] * bump[None, :]
    )

    # Trend: damped log-linear growth or decline, a few percent a year.
    growth = rng.normal(0.02, 0.10, n)
    tau = rng.uniform(1.0, 4.0, n) * 365.25
    trend = np.exp(
        growth[:, None] * tau[:, None] * (1 - np.exp(-t[None, :] / tau[:, None])) / 365.25
    )

    # Holidays: shared calendar, each series reacting more or less strongly; 0 stays 0.
    sensitivity = rng.uniform(0.6, 1.4, n)
    holidays = _holiday_multipliers(dates)[None, :] ** sensitivity[:, None]

    # Regular price: per-product base, store offsets, rare permanent (mostly upward) changes.
    base_price = np.exp(np.log(6.0) - 0.3 * np.log(product_level) + rng.normal(0, 0.5, products))
    changes = np.where(
        rng.random((products, days)) < 1.2 / 365.25, rng.normal(0.04, 0.04, (products, days)), 0.0
    )
    changes[:, 0] = 0.0
    store_offset = np.exp(rng.normal(0.0, 0.03, stores))[store_of]
    regular = _price_points(
        (base_price[:, None] * np.exp(np.cumsum(changes, axis=1)))[product_of]
        * store_offset[:, None]
    )

    # Promotions: spells of 3-14 days (~7% of days), 10-30% off, then a short dip.
    promo, last, since_end = _spells(rng, shape, 0.07 / 8.5, 3, 14)
    depth = np.take_along_axis(rng.uniform(0.10, 0.30, shape), np.maximum(last, 0), axis=1)
    price = np.round(np.where(promo, regular * (1.0 - depth), regular), 2)
    feature = rng.uniform(1.15, 1.30, n)[:, None]  # display / leaflet uplift on top of price
    post_dip = np.where(
        (since_end >= 0) & (since_end < 7), rng.uniform(0.75, 0.92, n)[:, None], 1.0
    )
    elasticity = rng.uniform(1.2, 1.8, n)[:, None]
    price_effect = (price / regular[:, :1]) ** -elasticity * np.where(promo, feature, post_dip)

    mean = level * weekly * yearly * trend * holidays * price_effect

    # Negative binomial counts (gamma-mixed Poisson), then stock-out spells of 2-10 days.
    shape_k = rng.uniform(1.5, 8.0, n)[:, None]
    sales = rng.poisson(mean * rng.gamma(shape_k, 1.0 / shape_k, shape)).astype(np.float64)
    out_of_stock, _, _ = _spells(rng, shape, 2.0 / 365.25, 2, 10)
    sales[out_of_stock] = 0.0

    s_width, p_width = max(2, len(str(stores))), max(3, len(str(products)))
    store_ids = np.array([f"S{i + 1:0{s_width}d}" for i in range(stores)], dtype=object)
    product_ids = np.array([f"P{i + 1:0{p_width}d}" for i in range(products)], dtype=object)
    return pd.DataFrame(
        {
            "date": np.tile(dates.to_numpy(), n),
            "store_id": np.repeat(store_ids[store_of], days),
            "product_id": np.repeat(product_ids[product_of], days),
            "sales": sales.ravel(),
            "price": price.ravel(),
            "promo": promo.ravel().astype(np.int64),
        }
    )


def write_sample(
    path: Path,
    stores: int = 5,
    products: int = 10,
    days: int = 730,
    seed: int = 0,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    """Generate a sample and write it as CSV (gzip when the suffix is .gz); return the frame."""
    frame = generate(stores=stores, products=products, days=days, seed=seed, start=start)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.assign(sales=frame["sales"].astype(np.int64))  # whole units: smaller file
    out.to_csv(
        path,
        index=False,
        columns=COLUMNS,
        date_format="%Y-%m-%d",
        compression="gzip" if path.suffix == ".gz" else None,
    )
    return frame
