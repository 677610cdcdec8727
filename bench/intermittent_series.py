"""Real intermittent (zero-heavy) demand series, read offline from the same files as
``bench/real_series.py``.

No clean intermittent sales set ships in the packages the benchmark reads, so these two are cut
from their real sets by the rules of the study behind issue 12's quantile method:

* ``tourism_intermittent``: the quarterly tourism series (``tsdata/fpp3/tourism.csv``) with at
  least 20 % (and under 95 %) zero quarters over 1998 Q1-2017 Q4; ``tourism_trips`` leaves
  them out. 40 series, h = 8, m = 4.
* ``pbs_intermittent``: PBS prescription groups (``tsdata/fpp3/PBS.csv``) that are
  intermittent (average inter-demand interval, ADI, of 1.32-20 months over the whole series,
  months missing inside a series counted as zero) *and still dispensing*: in the 36 months
  before the last 12 (the benchmark's latest holdout) at least 6 months with scripts and at
  least 20 % without. The ADI rule alone picks 43 groups, mostly discontinued or newly listed
  drugs whose zeros are a structural tail or head and whose holdout is all zeros. 13 series,
  h = 12, m = 12.

The rules read the whole series, holdout included, to choose the series (not to fit them); the
PBS activity window also overlaps the holdouts of earlier benchmark windows. Every model sees
the same series, so the comparison stays fair, but the sets are chosen with hindsight.

Frames are as in ``real_series`` (``series_id``, ``date`` on a gap-free grid, ``sales``
float64) except that ``sales`` holds zeros. The number of series each rule picks from the
pinned file is checked: another file version fails loudly instead of changing the set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from real_series import (
    _TSDATA,
    RealDataUnavailableError,
    RealSeriesSet,
    _finish,
    _month,
    _package_file,
    load_sets,
    tourism_frame,
)

__all__ = ["INTERMITTENT_SET_NAMES", "load_intermittent_series"]

INTERMITTENT_ADI = 1.32  # Syntetos & Boylan's cut-off, as in salesmesh.forecast.quantiles
MAX_ADI = 20.0  # rarer than one demand in 20 months is a dead series, not intermittent demand
ZERO_SHARE = (0.2, 0.95)
ACTIVE_MONTHS, ACTIVE_DEMANDS, PBS_HOLDOUT = 36, 6, 12


def _checked(name: str, frame: pd.DataFrame, expected: int, source: str) -> pd.DataFrame:
    found = int(frame["series_id"].nunique())
    if found != expected:
        raise RealDataUnavailableError(
            f"{name}: the selection rule picked {found} series from {source}, expected "
            f"{expected}; the installed file differs from the checked one: "
            f"pip install '{_TSDATA[1]}'"
        )
    return frame


def _tourism_intermittent() -> RealSeriesSet:
    source = "tsdata/fpp3/tourism.csv"
    frame = tourism_frame()
    zeros = frame.groupby("series_id")["sales"].transform(lambda s: float((s == 0).mean()))
    low, high = ZERO_SHARE
    chosen = _finish(frame[(zeros >= low) & (zeros < high)], 4, 8)
    return RealSeriesSet(
        name="tourism_intermittent",
        description=(
            "Australian domestic overnight trips (thousands) by region x purpose, quarterly "
            "1998 Q1 to 2017 Q4, series with 20-95 % zero quarters"
        ),
        source=f"{_TSDATA[1]}: {source}",
        freq="QS",
        season_length=4,
        horizon=8,
        real_dates=True,
        frame=_checked("tourism_intermittent", chosen, 40, source),
    )


def _gap_free(series: pd.Series, grid: pd.DatetimeIndex) -> pd.Series:
    """One series from its first to its last month, months without a record as zero."""
    filled = series.reindex(grid)
    first, last = filled.first_valid_index(), filled.last_valid_index()
    return filled.loc[first:last].fillna(0.0)


def _intermittent(values: np.ndarray) -> bool:
    demands = int((values > 0).sum())
    return len(values) >= 60 and demands > 0 and INTERMITTENT_ADI <= len(values) / demands < MAX_ADI


def _still_dispensing(values: np.ndarray) -> bool:
    recent = values[:-PBS_HOLDOUT][-ACTIVE_MONTHS:]
    return (
        int((recent > 0).sum()) >= ACTIVE_DEMANDS and float((recent == 0).mean()) >= ZERO_SHARE[0]
    )


def _pbs_intermittent() -> RealSeriesSet:
    source = "tsdata/fpp3/PBS.csv"
    raw = pd.read_csv(_package_file(_TSDATA, "fpp3", "PBS.csv"))
    frame = pd.DataFrame(
        {
            "series_id": raw["ATC2"] + " / " + raw["Concession"] + " / " + raw["Type"],
            "date": _month(raw["Month"]),
            "sales": raw["Scripts"].astype("float64"),
        }
    )
    grid = pd.date_range(frame["date"].min(), frame["date"].max(), freq="MS")
    kept = []
    for series_id, group in frame.groupby("series_id", sort=True):
        series = _gap_free(group.set_index("date")["sales"], grid)
        values = series.to_numpy()
        if _intermittent(values) and _still_dispensing(values):
            kept.append(
                pd.DataFrame({"series_id": series_id, "date": series.index, "sales": values})
            )
    chosen = _finish(pd.concat(kept, ignore_index=True), 12, 12)
    return RealSeriesSet(
        name="pbs_intermittent",
        description=(
            "Medicare Australia PBS monthly prescriptions, 1991-07 to 2008-06: intermittent "
            "drug groups (ADI 1.32-20) still dispensing in the 36 months before the last 12"
        ),
        source=f"{_TSDATA[1]}: {source}",
        freq="MS",
        season_length=12,
        horizon=12,
        real_dates=True,
        frame=_checked("pbs_intermittent", chosen, 13, source),
    )


_LOADERS: dict[str, Callable[[], RealSeriesSet]] = {
    "tourism_intermittent": _tourism_intermittent,
    "pbs_intermittent": _pbs_intermittent,
}
INTERMITTENT_SET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_intermittent_series(
    names: Iterable[str] | None = None, max_series: int | None = None
) -> list[RealSeriesSet]:
    """Load the named intermittent sets (all of ``INTERMITTENT_SET_NAMES`` by default), offline.

    ``max_series`` and the errors are as in :func:`real_series.load_real_series`.
    """
    return load_sets(_LOADERS, "intermittent", names, max_series)
