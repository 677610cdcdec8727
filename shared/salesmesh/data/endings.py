"""Series whose rows stop before the file's last date, and what the forecaster makes of them.

Rule: periods between a series' first and last row that have no row are zero sales (exports
leave out days without sales). Periods after its last row are unknown, not zero: a series
silent for at most ``inactive_after(family)`` periods (91 days, 13 weeks, 3 months, 1 quarter)
ended recently and is forecast from its real history; one silent for longer is inactive and is
not forecast. Either is a warning, never a rejection: a late or partial export is normal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from salesmesh.data.coded import IntArray
from salesmesh.data.contract import inactive_after
from salesmesh.data.dates import DAY_NS, DateArray, Frequency
from salesmesh.data.report import MAX_EXAMPLES, ValidationReport

UNITS = {"D": "days", "W": "weeks", "M": "months", "Q": "quarters"}


def periods_between(earlier: DateArray, later: np.datetime64, family: str) -> IntArray:
    """Whole periods of ``family`` from each of ``earlier`` to ``later`` (dates on its grid)."""
    if family in ("M", "Q"):
        stamps = pd.DatetimeIndex(earlier)
        end = pd.Timestamp(later)
        months = (end.year - stamps.year) * 12 + (end.month - stamps.month)
        return np.asarray(months.to_numpy() // (3 if family == "Q" else 1), dtype=np.intp)
    days = (pd.Timestamp(later).value - earlier.astype(np.int64)) // DAY_NS
    return np.asarray(days // (7 if family == "W" else 1), dtype=np.intp)


def report_endings(
    last_dates: DateArray,
    labels: list[str],
    frequency: Frequency | None,
    report: ValidationReport,
) -> None:
    """Warn about series whose last row (``last_dates``, one per series) precedes the file's.

    Records ``series_ended_early`` and ``series_inactive`` (counts) and ``inactive_after`` (the
    threshold in periods) in the stats.
    """
    if frequency is None or not frequency.family or len(last_dates) == 0:
        return
    family = frequency.family
    end = last_dates.max()
    silent = periods_between(last_dates, end, family)
    threshold = inactive_after(family)
    early = np.flatnonzero(silent > 0)
    inactive = int((silent > threshold).sum())
    report.stats |= {
        "series_ended_early": len(early),
        "series_inactive": inactive,
        "inactive_after": threshold,
    }
    if not len(early):
        return
    unit = UNITS[family]
    # the longest silences first: they are the ones a reader should check
    shown = early[np.argsort(-silent[early], kind="stable")][:MAX_EXAMPLES]
    examples = [
        {
            "value": labels[i],
            "last_date": str(pd.Timestamp(last_dates[i]).date()),
            "periods": int(silent[i]),
        }
        for i in shown
    ]
    listed = ", ".join(
        f"{item['value']} (last row {item['last_date']}, {item['periods']} {unit} before)"
        for item in examples
    )
    recent = len(early) - inactive
    report.warn(
        "ended_early",
        f"{len(early):,} of {len(last_dates):,} series have no rows up to the file's last date "
        f"{pd.Timestamp(end).date()}: {recent:,} went silent at most {threshold} {unit} before "
        "it and are forecast from their real history (the silent periods are not taken as zero "
        f"sales); {inactive:,} have been silent for more than {threshold} {unit} and are "
        f"inactive: they are not forecast. Longest silences: {listed}",
        examples,
    )
