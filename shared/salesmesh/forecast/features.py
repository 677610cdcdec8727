"""Features of the global direct multi-horizon model.

One row describes a series at a forecast origin and a step ahead; training samples many origins
and steps, prediction uses the last origin and every step, and both go through :func:`build` so
the model never sees features computed two different ways. Forecasting each step directly, with
the step as a feature, avoids feeding forecasts back as lags, whose errors compound over a
horizon. Values are divided by the series' recent level (with a floor) so one model learns shapes
shared by large and small series, and trees, which cannot extrapolate, see trends as ratios.
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

    year: int

    @property
    def lookback(self) -> int:
        """Past periods the features of one origin read (for any step up to a year)."""
        return max((*self.lags, *self.windows, self.level_window, self.year + 1))


SPECS = {
    "D": Spec(
        (1, 2, 3, 4, 5, 6, 7, 14, 21, 28, 35, 364),
        (7, 28, 91, 364),
        28,
        ("dayofweek", "day", "month", "dayofyear", "weekofyear"),
        364,
    ),
    "W": Spec((1, 2, 3, 4, 8, 13, 26, 52), (4, 13, 52), 8, ("weekofyear", "month"), 52),
    "M": Spec((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24), (3, 6, 12, 24), 6, ("month",), 12),
    "Q": Spec((1, 2, 3, 4, 8), (2, 4, 8), 4, ("quarter",), 4),
    "Y": Spec((1, 2, 3), (2, 3), 2, (), 1),
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
        "season_last",
        "season_mean",
        "year_ago",
        "zero_share",
        "log_level",
        "age",
        "step",
        *spec.calendar,
        *(f"{name}_ratio" if name == "price" else name for name in regressors),
    ]


class History:
    """Running sums over a value matrix, so any window mean costs two lookups."""

    def __init__(self, values: Matrix) -> None:
        self.values = values
        shape = (values.shape[0], values.shape[1] + 1)
        self._sums = np.zeros(shape)
        np.cumsum(np.nan_to_num(values, nan=0.0), axis=1, out=self._sums[:, 1:])
        self._counts = np.zeros(shape)
        np.cumsum(~np.isnan(values), axis=1, out=self._counts[:, 1:])
        self._zeros = np.zeros(shape)
        np.cumsum(values == 0, axis=1, out=self._zeros[:, 1:])

    def mean(self, ends: NDArray[np.int64], width: int, zeros: bool = False) -> Matrix:
        """Mean of the ``width`` values before each position in ``ends`` (NaN if none known).

        With ``zeros`` it is the share of zero values instead.
        """
        sums = self._zeros if zeros else self._sums
        low = np.maximum(ends - width, 0)
        known = self._counts[:, ends] - self._counts[:, low]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(known > 0, (sums[:, ends] - sums[:, low]) / known, np.nan)

    def at(self, positions: NDArray[np.int64]) -> Matrix:
        """Values at ``positions``; positions before the grid read as NaN."""
        out = np.full((self.values.shape[0], len(positions)), np.nan)
        inside = positions >= 0
        out[:, inside] = self.values[:, positions[inside]]
        return out


def build(
    history: History,
    origins: NDArray[np.int64],
    step: int,
    spec: Spec,
    season: int,
    calendar_rows: Matrix,
    regressors: dict[str, Matrix],
    context: Context,
) -> tuple[NDArray[np.float32], Matrix]:
    """Features for forecasting ``step`` periods ahead from each of ``origins``.

    A row describes one series at one origin using only values before the origin, plus what is
    known about the target period (its calendar row, its price and promotion, how far ahead it
    is). Returns ``(features, level)``: features shaped ``(series * len(origins), n)``
    (series-major) and the level each series was divided by, shaped ``(series, len(origins))``.
    """
    level = history.mean(origins, spec.level_window)
    level = np.fmax(np.nan_to_num(level, nan=0.0), context.floor[:, None])
    target = origins + step - 1
    columns: list[Matrix] = [history.at(origins - lag) / level for lag in spec.lags]
    columns += [history.mean(origins, width) / level for width in spec.windows]
    # the same phase as the target in the last four cycles known at the origin
    back = season * int(np.ceil(step / season))
    cycles = np.stack([history.at(target - back - season * k) for k in range(4)])
    columns.append(cycles[0] / level)
    with np.errstate(invalid="ignore"):
        known = np.sum(~np.isnan(cycles), axis=0)
        columns.append(
            np.where(known > 0, np.nansum(cycles, axis=0) / np.maximum(known, 1), np.nan) / level
        )
    columns.append(history.at(target - spec.year * int(np.ceil(step / spec.year))) / level)
    columns.append(history.mean(origins, max(spec.windows), zeros=True))
    columns.append(np.log1p(level))
    columns.append((origins[None, :] - context.starts[:, None]).astype(float))
    columns.append(np.full(level.shape, float(step)))
    columns += [
        np.broadcast_to(calendar_rows[:, i], level.shape) for i in range(calendar_rows.shape[1])
    ]
    for name, matrix in regressors.items():
        current = matrix[:, target]
        if name == "price" and context.price_reference is not None:
            current = current / context.price_reference[:, None]
        columns.append(current)

    features = np.empty((level.size, len(columns)), dtype=np.float32)
    for i, column in enumerate(columns):
        features[:, i] = np.asarray(column, dtype=np.float32).reshape(-1)
    return features, level
