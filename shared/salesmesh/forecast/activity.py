"""Series that stop before the panel's end: which are still forecast, and from what history.

After its last row a series is unknown (NaN in the panel), not zero. Silent for at most
``inactive_after`` periods (a season of the year: 91 days, 13 weeks, 3 months, 1 quarter) it
ended recently: the forecast starts from its real history, with the silent periods bridged by
the mean of the same phase in its last four observed seasons, so lags and the local models see
the level the series had rather than zeros. Silent for longer it is inactive and not forecast.
The thresholds live in :data:`salesmesh.data.contract.INACTIVE_AFTER`, shared with the
validation report.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.data.contract import inactive_after
from salesmesh.forecast.panel import Panel, season_length

Matrix = NDArray[np.float64]
CYCLES = 4  # seasons averaged to bridge a silence


@dataclass(frozen=True)
class Activity:
    """How long each series has been silent at the end of a value matrix."""

    silent: NDArray[np.int64]  # periods after the last observation (0: observed at the end)
    threshold: int  # silent for more than this many periods means inactive
    observed: NDArray[np.bool_]  # False for a series with no observation at all

    @property
    def inactive(self) -> NDArray[np.bool_]:
        """Series not forecast: observed once, silent for more than the threshold since."""
        return np.asarray(self.observed & (self.silent > self.threshold), dtype=bool)


def threshold_for(freq: str) -> int:
    """Silent periods after which a series of pandas frequency ``freq`` is inactive."""
    return inactive_after(pd.tseries.frequencies.to_offset(freq).name)


def activity(values: Matrix, freq: str, threshold: int | None = None) -> Activity:
    """Silence of every row of ``values`` (series x time, NaN where unknown) at its end."""
    observed = ~np.isnan(values)
    last = values.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
    any_observed = np.asarray(observed.any(axis=1), dtype=bool)
    silent = np.where(any_observed, values.shape[1] - 1 - last, 0).astype(np.int64)
    return Activity(silent, threshold_for(freq) if threshold is None else threshold, any_observed)


def bridge(values: Matrix, silent: NDArray[np.int64], season: int) -> Matrix:
    """``values`` with each series' trailing silence filled, so a forecast can start at the end.

    A silent period takes the mean of the same seasonal phase in the series' last ``CYCLES``
    observed seasons (its last value when it has none at that phase). Rows without silence,
    and series never observed, are returned unchanged.
    """
    out = values.copy()
    season = max(season, 1)
    length = values.shape[1]
    for row in np.flatnonzero((silent > 0) & (silent < length)):
        end = length - int(silent[row])  # first silent position
        history = values[row, :end]
        positions = np.arange(end, length)
        back = positions[:, None] - season * np.arange(1, CYCLES + (length - end) // season + 2)
        inside = back < end  # seasons back from a position, most recent first
        use = inside & (back >= 0) & (np.cumsum(inside, axis=1) <= CYCLES)
        picked = np.where(use, history[np.clip(back, 0, end - 1)], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a phase never observed: all NaN
            means = np.nanmean(picked, axis=1)
        out[row, end:] = np.where(np.isnan(means), _last(history), means)
    return out


def _last(history: NDArray[np.float64]) -> float:
    observed = history[~np.isnan(history)]
    return float(observed[-1]) if len(observed) else 0.0


def prepare(panel: Panel) -> tuple[Panel, Activity]:
    """The panel a forecast starts from (silences bridged) and each series' activity."""
    found = activity(panel.values, panel.freq)
    values = bridge(panel.values, found.silent, season_length(panel.freq))
    return Panel(panel.series, panel.dates, values, panel.regressors, panel.freq), found
