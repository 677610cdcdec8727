"""Long sales tables <-> the dense (series x time) matrices the forecaster works on.

A regular date grid is shared by all series. Before its first observation a series is NaN (it did
not exist yet); a missing period between its first and last rows counts as zero sales, because
retail exports leave out days without sales; after its last row it is NaN again (unknown: see
:mod:`salesmesh.forecast.activity`). Regressors carry their last value forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.data.contract import KNOWN_IN_ADVANCE
from salesmesh.errors import ForecastError

Matrix = NDArray[np.float64]

# Season length and the calendar attributes the model may use, per frequency family.
SEASON = {"D": 7, "B": 5, "W": 52, "M": 12, "Q": 4, "Y": 1, "H": 24}


def infer_freq(dates: pd.Series) -> str:
    """The pandas frequency alias of a date column, from the most common spacing between dates.

    ``pd.infer_freq`` needs a perfectly regular index; sales exports have gaps and many series, so
    the modal gap between consecutive unique dates decides, and the anchor (weekday, month start or
    end) comes from the dates themselves.
    """
    unique = pd.DatetimeIndex(pd.to_datetime(dates).unique()).sort_values()
    if len(unique) < 2:
        raise ForecastError("cannot infer a frequency from fewer than two distinct dates")
    days = int(pd.Series(np.diff(unique.asi8) // 86_400_000_000_000).mode().iloc[0])
    if days == 1:
        return "D"
    if days == 7:
        return f"W-{unique[0].day_name()[:3].upper()}"
    if 28 <= days <= 31:
        return "MS" if bool((unique.day == 1).all()) else "ME"
    # quarters and years keep the anchor month of the data (fiscal quarters start in Feb ...)
    month = unique[0].strftime("%b").upper()
    if 89 <= days <= 92:
        return f"QS-{month}" if bool((unique.day == 1).all()) else f"QE-{month}"
    if 365 <= days <= 366:
        return f"YS-{month}" if bool((unique.day == 1).all()) else f"YE-{month}"
    raise ForecastError(
        f"unsupported spacing of {days} days between dates; use daily, weekly, "
        "monthly, quarterly or yearly data"
    )


def season_length(freq: str) -> int:
    """Periods per seasonal cycle used by the baselines and lags (7 for daily, 12 for monthly)."""
    family = pd.tseries.frequencies.to_offset(freq).name.split("-")[0].rstrip("SE") or "D"
    return SEASON.get(family[0], 1)


@dataclass
class Panel:
    """Aligned matrices for every series over one regular date grid."""

    series: NDArray[np.object_]
    dates: pd.DatetimeIndex
    values: Matrix
    regressors: dict[str, Matrix]
    freq: str

    @property
    def starts(self) -> NDArray[np.int64]:
        """Index of each series' first observation."""
        observed = ~np.isnan(self.values)
        return np.asarray(np.argmax(observed, axis=1), dtype=np.int64)

    def truncate(self, end: int) -> Panel:
        """The panel as it was known before grid position ``end`` (for backtests)."""
        return Panel(
            self.series,
            self.dates[:end],
            self.values[:, :end],
            {name: matrix[:, :end] for name, matrix in self.regressors.items()},
            self.freq,
        )


def to_panel(
    history: pd.DataFrame, freq: str | None = None, regressors: Sequence[str] | None = None
) -> Panel:
    """Pivot ``series_id, date, sales [+ regressors]`` into a :class:`Panel`.

    ``regressors`` names the columns known in advance (default: price and promo); only those
    become regressors, any other column is ignored (measured: read as lagged features, extra
    columns such as revenue made the backtest slightly worse, never better).
    """
    missing = {"series_id", "date", "sales"} - set(history.columns)
    if missing:
        raise ForecastError(
            f"history lacks column(s) {sorted(missing)}; it needs series_id, date, sales "
            "and optional numeric regressors"
        )
    if history.empty:
        raise ForecastError("history is empty")
    known = KNOWN_IN_ADVANCE if regressors is None else tuple(regressors)
    absent = [name for name in known if name not in history.columns]
    if regressors is not None and absent:
        raise ForecastError(f"regressor(s) {absent} are not columns of the history")
    keys = ("series_id", "date", "sales")
    regressor_names = [c for c in known if c in history.columns and c not in keys]
    frame = history[["series_id", "date", "sales", *regressor_names]].copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.normalize()
    freq = freq or infer_freq(frame["date"])
    frame["date"] = snap(frame["date"], freq)
    text = [name for name in regressor_names if not pd.api.types.is_numeric_dtype(frame[name])]
    if text:
        raise ForecastError(
            f"regressor column(s) {text} are not numeric; drop them or encode them as numbers"
        )
    aggregations = {"sales": "sum", **{name: "mean" for name in regressor_names}}
    frame = frame.groupby(["series_id", "date"], sort=True).agg(aggregations)

    dates = frame.index.get_level_values("date")
    grid = pd.date_range(dates.min(), dates.max(), freq=freq)
    series = frame.index.get_level_values("series_id").unique().to_numpy(dtype=object)
    series_codes = pd.Index(series).get_indexer(frame.index.get_level_values("series_id"))
    date_codes = grid.get_indexer(dates)
    if (date_codes < 0).any():
        raise ForecastError(f"dates do not fall on a {freq} grid, e.g. {dates[date_codes < 0][0]}")

    values = np.full((len(series), len(grid)), np.nan)
    values[series_codes, date_codes] = frame["sales"].to_numpy(dtype=float)
    observed = ~np.isnan(values)
    started = np.maximum.accumulate(observed, axis=1)
    going = np.maximum.accumulate(observed[:, ::-1], axis=1)[:, ::-1]
    # a gap between a series' first and last row is a period without sales; after its last
    # row it is unknown (see forecast.activity)
    values[started & going & ~observed] = 0.0

    matrices: dict[str, Matrix] = {}
    for name in regressor_names:
        matrix = np.full_like(values, np.nan)
        matrix[series_codes, date_codes] = frame[name].to_numpy(dtype=float)
        matrices[name] = _forward_fill(matrix)
    return Panel(series, grid, values, matrices, freq)


def snap(dates: pd.Series, freq: str) -> pd.Series:
    """Move each date onto the grid of ``freq`` (a month's sales dated the 15th join ``MS``).

    Start-anchored frequencies (``MS``, ``QS-FEB`` ...) roll back to their period's start, the
    others (``W-SUN``, ``ME`` ...) forward to its end, exactly as ``pd.date_range`` lays the grid.
    """
    offset = pd.tseries.frequencies.to_offset(freq)
    name = offset.name
    if name == "D":
        return dates
    if not name.startswith(("W", "M", "Q", "Y")):
        raise ForecastError(
            f"unsupported frequency {freq!r}; use daily (D), weekly (W-SUN ...), monthly (MS, ME), "
            "quarterly (QS, QE) or yearly (YS, YE) data"
        )
    roll = offset.rollback if name.split("-")[0].endswith("S") else offset.rollforward
    unique = pd.DatetimeIndex(dates.unique())  # a few thousand dates for millions of rows
    snapped = pd.DatetimeIndex([roll(day) for day in unique]).normalize()
    lookup = pd.Series(snapped, index=unique)
    return pd.Series(lookup.loc[dates.to_numpy()].to_numpy(), index=dates.index, name=dates.name)


def _forward_fill(matrix: Matrix) -> Matrix:
    """Carry each row's last observed value forward along time."""
    index = np.where(~np.isnan(matrix), np.arange(matrix.shape[1]), 0)
    np.maximum.accumulate(index, axis=1, out=index)
    return matrix[np.arange(matrix.shape[0])[:, None], index]


def future_dates(dates: pd.DatetimeIndex, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` grid dates that follow the last date of ``dates``."""
    return pd.date_range(dates[-1], periods=horizon + 1, freq=freq)[1:]
