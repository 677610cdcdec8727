"""Features of the global model, computed for any set of grid positions from one value matrix.

Training asks for every position at once, recursive prediction for one position at a time; both
go through :func:`build` so the model never sees features computed two different ways. Values are
divided by a per-row level (the recent mean sales of that series, with a floor) so one model
learns shapes shared by large and small series, and trees, which cannot extrapolate, see trends as
ratios to the recent level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

Matrix = NDArray[np.float64]


@dataclass(frozen=True)
class Spec:
    """Which lags, windows and calendar fields a frequency gets."""

    lags: tuple[int, ...]
    windows: tuple[int, ...]
    level_window: int
    calendar: tuple[str, ...]

    @property
    def lookback(self) -> int:
        """Past periods the features of one position read."""
        return max((*self.lags, *self.windows, self.level_window))


SPECS = {
    "D": Spec(
        (1, 2, 3, 4, 5, 6, 7, 14, 21, 28, 35, 364),
        (7, 28, 91, 364),
        28,
        ("dayofweek", "day", "month", "dayofyear", "weekofyear"),
    ),
    "W": Spec((1, 2, 3, 4, 8, 13, 26, 52), (4, 13, 52), 8, ("weekofyear", "month")),
    "M": Spec((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24), (3, 6, 12, 24), 6, ("month",)),
    "Q": Spec((1, 2, 3, 4, 8), (2, 4, 8), 4, ("quarter",)),
    "Y": Spec((1, 2, 3), (2, 3), 2, ()),
}


def spec_for(freq: str) -> Spec:
    """The feature spec for a pandas frequency alias (business days count as daily)."""
    family = pd.tseries.frequencies.to_offset(freq).name[0]
    return SPECS.get(family, SPECS["D"])


def calendar(dates: pd.DatetimeIndex, fields: tuple[str, ...]) -> Matrix:
    """Calendar fields of each date, shaped ``(len(dates), len(fields))``."""
    columns = [
        dates.isocalendar().week.to_numpy(dtype=float)
        if name == "weekofyear"
        else np.asarray(getattr(dates, name), dtype=float)
        for name in fields
    ]
    return np.column_stack(columns) if columns else np.empty((len(dates), 0))


@dataclass(frozen=True)
class Context:
    """Per-series facts the features need besides the value matrix."""

    floor: NDArray[np.float64]  # minimum level, so near-dead series are not divided by ~0
    price_reference: NDArray[np.float64] | None  # the series' median price
    starts: NDArray[np.int64]


def names(spec: Spec, regressors: list[str]) -> list[str]:
    """Column names of :func:`build`'s output, in order."""
    return [
        *(f"lag_{lag}" for lag in spec.lags),
        *(f"mean_{w}" for w in spec.windows),
        "seasonal_mean",
        "zero_share",
        "log_level",
        "age",
        *spec.calendar,
        *(f"{name}_ratio" if name == "price" else name for name in regressors),
    ]


def build(
    values: Matrix,
    positions: NDArray[np.int64],
    spec: Spec,
    season: int,
    calendar_rows: Matrix,
    regressors: dict[str, Matrix],
    context: Context,
) -> tuple[NDArray[np.float32], Matrix]:
    """Features for every series at grid ``positions``, plus the level each row was divided by.

    Returns ``(features, level)`` with features shaped ``(series * len(positions), n_features)``
    (series-major) and level shaped ``(series, len(positions))``. ``values`` may hold NaN before
    a series starts; features reading such cells are NaN, which the model treats as missing.
    """
    n_series = values.shape[0]
    filled = np.nan_to_num(values, nan=0.0)
    cumulative = np.zeros((n_series, values.shape[1] + 1))
    np.cumsum(filled, axis=1, out=cumulative[:, 1:])
    counts = np.zeros_like(cumulative)
    np.cumsum(~np.isnan(values), axis=1, out=counts[:, 1:])
    zeros = np.zeros_like(cumulative)
    np.cumsum(values == 0, axis=1, out=zeros[:, 1:])

    def window_mean(width: int, source: Matrix = cumulative) -> Matrix:
        low = np.maximum(positions - width, 0)
        n = counts[:, positions] - counts[:, low]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (source[:, positions] - source[:, low]) / n, np.nan)

    level = window_mean(spec.level_window)
    level = np.fmax(np.nan_to_num(level, nan=0.0), context.floor[:, None])

    def lagged(lag: int) -> Matrix:
        index = positions - lag
        out = np.full((n_series, len(positions)), np.nan)
        ok = index >= 0
        out[:, ok] = values[:, index[ok]]
        return out

    columns: list[Matrix] = [lagged(lag) / level for lag in spec.lags]
    columns += [window_mean(width) / level for width in spec.windows]
    seasonal = np.stack([lagged(season * k) for k in (1, 2, 3, 4)])
    with np.errstate(invalid="ignore"):
        counted = np.sum(~np.isnan(seasonal), axis=0)
        columns.append(
            np.where(counted > 0, np.nansum(seasonal, axis=0) / np.maximum(counted, 1), np.nan)
            / level
        )
    columns.append(window_mean(max(spec.windows), zeros))
    columns.append(np.log1p(level))
    columns.append((positions[None, :] - context.starts[:, None]).astype(float))
    columns += [
        np.broadcast_to(calendar_rows[:, i], level.shape) for i in range(calendar_rows.shape[1])
    ]
    for name, matrix in regressors.items():
        current = matrix[:, positions]
        if name == "price" and context.price_reference is not None:
            current = current / context.price_reference[:, None]
        columns.append(current)

    features = np.empty((n_series * len(positions), len(columns)), dtype=np.float32)
    for i, column in enumerate(columns):
        features[:, i] = np.asarray(column, dtype=np.float32).reshape(-1)
    return features, level
