"""The sample-data generator: shape, determinism and the retail patterns it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesmesh.sample import COLUMNS, generate, write_sample

SERIES = ["store_id", "product_id"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(stores=5, products=10, days=730, seed=0)


def _longest_zero_run(sales: pd.Series) -> int:
    zero = np.concatenate([[0], (sales.to_numpy() == 0).astype(np.int64), [0]])
    edges = np.flatnonzero(np.diff(zero))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def test_same_seed_gives_identical_frames() -> None:
    """Two calls with the same seed return exactly the same data."""
    a = generate(stores=2, products=3, days=90, seed=7)
    b = generate(stores=2, products=3, days=90, seed=7)
    pd.testing.assert_frame_equal(a, b)


def test_different_seeds_give_different_sales() -> None:
    """Changing the seed changes the sales and the prices."""
    a = generate(stores=2, products=3, days=90, seed=1)
    b = generate(stores=2, products=3, days=90, seed=2)
    assert not np.array_equal(a["sales"].to_numpy(), b["sales"].to_numpy())
    assert not np.array_equal(a["price"].to_numpy(), b["price"].to_numpy())


def test_shape_columns_and_dtypes(frame: pd.DataFrame) -> None:
    """One row per store x product x day, canonical columns and dtypes, sorted by series."""
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 5 * 10 * 730
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])
    assert frame["sales"].dtype == np.float64
    assert frame["price"].dtype == np.float64
    assert frame["promo"].dtype == np.int64
    assert sorted(frame["store_id"].unique()) == [f"S{i:02d}" for i in range(1, 6)]
    assert sorted(frame["product_id"].unique()) == [f"P{i:03d}" for i in range(1, 11)]
    assert frame["date"].min() == pd.Timestamp("2024-01-01")
    assert frame.groupby(SERIES)["date"].diff().dropna().eq(pd.Timedelta(days=1)).all()
    expected = frame.sort_values([*SERIES, "date"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)


def test_values_are_valid_units_prices_and_flags(frame: pd.DataFrame) -> None:
    """Sales are non-negative whole units, prices positive with 2 decimals, promo is 0/1."""
    sales = frame["sales"].to_numpy()
    assert (sales >= 0).all()
    assert np.array_equal(sales, np.round(sales))
    price = frame["price"].to_numpy()
    assert (price > 0).all()
    assert np.allclose(price * 100, np.round(price * 100))
    assert set(frame["promo"].unique()) == {0, 1}


def test_weekend_sells_more_than_midweek(frame: pd.DataFrame) -> None:
    """Mean Saturday/Sunday sales exceed mean Tuesday/Wednesday sales across all series."""
    dow = frame["date"].dt.dayofweek
    weekend = frame.loc[dow >= 5, "sales"].mean()
    midweek = frame.loc[dow.isin([1, 2]), "sales"].mean()
    assert weekend > 1.1 * midweek


def test_promotions_lift_sales_and_cut_price(frame: pd.DataFrame) -> None:
    """Per series, promo days sell more on average and at a lower price than other days."""
    assert 0.03 < frame["promo"].mean() < 0.12
    sales = frame.groupby([*SERIES, "promo"])["sales"].mean().unstack().dropna()
    price = frame.groupby([*SERIES, "promo"])["price"].mean().unstack().dropna()
    assert len(sales) >= 45  # nearly every series runs at least one promotion
    lifted = sales[1] > sales[0]
    assert lifted.mean() > 0.8
    assert (sales[1].sum() / sales[0].sum()) > 1.3
    assert (price[1] < price[0]).all()


def test_christmas_day_is_closed(frame: pd.DataFrame) -> None:
    """Every store sells nothing on December 25, and December 24 sells above average."""
    dates = frame["date"]
    christmas = (dates.dt.month == 12) & (dates.dt.day == 25)
    eve = (dates.dt.month == 12) & (dates.dt.day == 24)
    assert christmas.sum() == 5 * 10 * 2
    assert (frame.loc[christmas, "sales"] == 0).all()
    assert frame.loc[eve, "sales"].mean() > frame["sales"].mean()


def test_intermittent_slow_movers_exist(frame: pd.DataFrame) -> None:
    """Some series are zero on more than 30% of days while others sell tens of units a day."""
    by_series = frame.groupby(SERIES)["sales"]
    zero_share = by_series.apply(lambda s: float((s == 0).mean()))
    assert (zero_share > 0.3).sum() >= 3
    assert by_series.mean().max() > 20


def test_stock_out_spells_exist(frame: pd.DataFrame) -> None:
    """Well-selling series show runs of 5+ consecutive zero-sales days (stock-outs)."""
    busy = frame.groupby(SERIES)["sales"].mean() > 10
    assert busy.sum() >= 5
    runs = frame.set_index(SERIES).loc[busy[busy].index].groupby(SERIES)["sales"]
    longest = runs.apply(_longest_zero_run)
    assert (longest >= 5).sum() >= 2


def test_write_sample_gzip_round_trip(tmp_path: Path) -> None:
    """A .csv.gz path is gzip-compressed, parents are created, and it reads back equal."""
    path = tmp_path / "nested" / "dir" / "sales.csv.gz"
    written = write_sample(path, stores=2, products=2, days=30, seed=3)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    back = pd.read_csv(path, parse_dates=["date"])
    assert list(back.columns) == COLUMNS
    assert len(back) == len(written) == 120
    assert np.array_equal(back["sales"].to_numpy(), written["sales"].to_numpy())
    assert np.allclose(back["price"], written["price"])
    assert back["date"].equals(written["date"])


def test_cli_writes_sample_file(tmp_path: Path) -> None:
    """`salesmesh sample-data` exits 0 and writes stores x products x days rows."""
    out = tmp_path / "sample.csv"
    cmd = [sys.executable, "-m", "salesmesh.cli", "sample-data", str(out)]
    cmd += ["--stores", "2", "--products", "3", "--days", "60"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert out.exists()
    assert len(pd.read_csv(out)) == 360
    assert "360" in result.stdout
