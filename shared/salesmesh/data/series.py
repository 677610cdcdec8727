"""Series: (store, product) pairs ordered by date, their period, history and duplicate keys.

Duplicate rule: rows that share (date, store_id, product_id) are one observation reported
twice (split exports, appended files); they are merged with sales summed, price averaged, promo
taking the maximum and any other regressor averaged, and a warning counts them. Monthly and
quarterly dates are first moved to their period start, so two dates in one month also merge.

History rule: the longest series needs max(2 * horizon, horizon + 2 * season) periods (season:
7 days, 4 weeks, 12 months, 4 quarters) for a backtest to mean anything; shorter series are
only warned about, since a fallback forecaster will handle them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from salesmesh.data.coded import BoolArray, Coded, FloatArray, IntArray, ObjectArray
from salesmesh.data.contract import Contract
from salesmesh.data.dates import DAY_NS, DateArray, Frequency, infer_frequency, snap
from salesmesh.data.endings import report_endings
from salesmesh.data.report import ValidationReport, examples

_AGGREGATION = "sales summed, price averaged, promo taking the maximum, other regressors averaged"


@dataclass(frozen=True)
class Series:
    """Rows sorted by (store_id, product_id, date); per sorted row its series and date rank."""

    order: IntArray
    first: BoolArray  # False for a row repeating the previous row's key
    series: IntArray
    date_rank: IntArray
    dates: DateArray  # distinct dates, ascending
    stores: ObjectArray  # per series
    products: ObjectArray
    frequency: Frequency | None


def index_series(
    store: Coded,
    product: Coded,
    date: Coded,
    date_values: DateArray,
    contract: Contract,
    report: ValidationReport,
) -> Series:
    """Order rows and infer the period; records frequency/history findings and stats."""
    store_rank, stores = _ranked(store)
    product_rank, products = _ranked(product)
    pair = store_rank.astype(np.int64) * len(products) + product_rank
    series_of_row, pairs = pd.factorize(pair, sort=True)
    indexed = _sorted(series_of_row, date, date_values)
    frequency = infer_frequency(_steps(indexed), indexed.dates)
    if frequency is not None and frequency.family in ("M", "Q"):
        snapped = snap(date_values, frequency)
        if not np.array_equal(snapped, date_values):
            report.stats["dates_moved_to_period_start"] = int((snapped != date_values).sum())
        indexed = _sorted(series_of_row, date, snapped)
    result = Series(
        indexed.order,
        indexed.first,
        indexed.series,
        indexed.date_rank,
        indexed.dates,
        stores[pairs // len(products)],
        products[pairs % len(products)],
        frequency,
    )
    _record(result, date, contract, report)
    if frequency is not None and frequency.alias:
        last = np.flatnonzero(np.r_[result.series[1:] != result.series[:-1], True])
        pairs_text = zip(result.stores, result.products, strict=True)
        labels = [f"{store}/{product}" for store, product in pairs_text]
        report_endings(result.dates[result.date_rank[last]], labels, frequency, report)
    report.stats["duplicates_merged"] = int((~result.first).sum())
    if report.stats["duplicates_merged"]:
        _warn_duplicates(result, date.lines, report)
    return result


@dataclass(frozen=True)
class _Sorted:
    order: IntArray
    first: BoolArray
    series: IntArray
    date_rank: IntArray
    dates: DateArray


def _ranked(column: Coded) -> tuple[IntArray, ObjectArray]:
    """Per-row rank of the value in sorted order, and the sorted values."""
    order = np.argsort(column.uniques.astype(str), kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    return rank[column.codes], column.uniques[order]


def _sorted(series_of_row: IntArray, date: Coded, date_values: DateArray) -> _Sorted:
    rank_of_unique, dates = pd.factorize(date_values, sort=True)
    date_rank = rank_of_unique[date.codes]
    key = series_of_row.astype(np.int64) * len(dates) + date_rank
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return _Sorted(
        order,
        first,
        series_of_row[order],
        date_rank[order],
        np.asarray(dates, dtype="datetime64[ns]"),
    )


def _steps(indexed: _Sorted) -> IntArray:
    """Days between consecutive distinct dates within each series."""
    series = indexed.series[indexed.first]
    days = indexed.dates.astype(np.int64)[indexed.date_rank[indexed.first]] // DAY_NS
    same = series[1:] == series[:-1]
    steps: IntArray = np.diff(days)[same].astype(np.intp)
    return steps


def _record(series: Series, date: Coded, contract: Contract, report: ValidationReport) -> None:
    periods = np.bincount(series.series[series.first], minlength=len(series.stores))
    frequency = series.frequency
    family = frequency.family if frequency else ""
    needed = contract.history_needed(family)
    report.stats |= {
        "series": len(series.stores),
        "stores": len(pd.unique(series.stores)),
        "products": len(pd.unique(series.products)),
        "date_min": str(pd.Timestamp(series.dates[0]).date()),
        "date_max": str(pd.Timestamp(series.dates[-1]).date()),
        "freq": frequency.alias if frequency and frequency.alias else None,
        "periods_max": int(periods.max()),
        "periods_min": int(periods.min()),
        "history_needed": needed,
    }
    if frequency is not None and not frequency.alias:
        report.error(
            "frequency",
            f"column {date.label}: consecutive dates of a series are usually {frequency.step_days} "
            "days apart; supported periods are daily (1 day), weekly (7), monthly (28-31) and "
            "quarterly (89-92)",
        )
        return
    longest = int(periods.max())
    unit = {"D": "days", "W": "weeks", "M": "months", "Q": "quarters"}.get(family, "periods")
    if longest < needed and contract.require_history:
        report.error(
            "history_length",
            f"the longest series has {longest} {unit} of history; a horizon of "
            f"{contract.horizon} {unit.removesuffix('s') if contract.horizon == 1 else unit} "
            f"needs at least {needed} (max(2 x horizon, horizon + "
            "2 seasons)); send more history or lower the horizon",
        )
    short = np.flatnonzero(periods < contract.horizon)
    report.stats["short_series"] = len(short)
    if len(short):
        shown = [
            {"value": f"{series.stores[i]}/{series.products[i]}", "periods": int(periods[i])}
            for i in short[:5]
        ]
        report.warn(
            "short_series",
            f"{len(short):,} of {len(periods):,} series have fewer than {contract.horizon} "
            f"{unit} (the horizon); a simple fallback will forecast them, e.g. "
            + ", ".join(f"{item['value']} ({item['periods']})" for item in shown),
            shown,
        )


def assemble(
    series: Series, sales: FloatArray, regressors: Mapping[str, FloatArray]
) -> pd.DataFrame:
    """The normalised frame: duplicates merged, regressor gaps filled within each series."""
    order = series.order
    frame = pd.DataFrame(
        {
            "date": series.dates[series.date_rank],
            "store_id": series.stores[series.series],
            "product_id": series.products[series.series],
            "sales": sales[order],
            **{name: values[order] for name, values in regressors.items()},
        }
    )
    if not series.first.all():
        frame = _merge(frame, np.cumsum(series.first) - 1, list(regressors))
        keys = series.series[series.first]
    else:
        keys = series.series
    for name in regressors:
        frame[name] = _fill(frame[name], keys, name)
    return frame


def _merge(frame: pd.DataFrame, group: IntArray, regressors: list[str]) -> pd.DataFrame:
    rules = {"date": "first", "store_id": "first", "product_id": "first", "sales": "sum"}
    rules |= {name: "max" if name == "promo" else "mean" for name in regressors}
    merged = frame.groupby(group, sort=False).agg(rules)
    return merged.reset_index(drop=True)


def _warn_duplicates(series: Series, lines: IntArray, report: ValidationReport) -> None:
    repeated = np.flatnonzero(~series.first)
    shown = []
    for position in repeated[:5]:
        start = position
        while not series.first[start]:
            start -= 1
        key = (
            f"{pd.Timestamp(series.dates[series.date_rank[position]]).date()}/"
            f"{series.stores[series.series[position]]}/{series.products[series.series[position]]}"
        )
        shown.append((int(lines[series.order[position]]), int(lines[series.order[start]]), key))
    report.warn(
        "duplicates",
        f"{len(repeated):,} row(s) repeat a (date, store_id, product_id) key seen on another "
        f"line; they were merged ({_AGGREGATION}): "
        + ", ".join(f"line {line} repeats line {seen} ({key})" for line, seen, key in shown),
        examples([line for line, _, _ in shown], [key for _, _, key in shown]),
    )


def _fill(values: pd.Series, series: IntArray, name: str) -> pd.Series:
    """Forward-fill within each series, back-fill its start; a series with no value at all
    gets 0 for promo and the column median otherwise."""
    if not values.isna().any():
        return values
    filled = values.groupby(series).ffill()
    filled = filled.fillna(filled.groupby(series).bfill())
    return filled.fillna(0.0 if name == "promo" else filled.median()).astype(np.float64)


# a series is one store x product; its id joins the two (escaped) with this
SERIES_SEPARATOR = "/"


def series_frame(sales: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract-normalised sales -> (history with ``series_id``, table of series ids).

    A series is one store x product; the table maps ids back for the prediction server.
    """
    ids = _id_part(sales["store_id"]) + SERIES_SEPARATOR + _id_part(sales["product_id"])
    history = sales.drop(columns=["store_id", "product_id"]).assign(series_id=ids)
    table = (
        sales[["store_id", "product_id"]]
        .assign(series_id=ids)
        .drop_duplicates("series_id")
        .sort_values("series_id")[["series_id", "store_id", "product_id"]]
    )
    return history, table


def _id_part(column: pd.Series) -> pd.Series:
    """Percent-escape the separator, so store 'a/b' + product 'c' and 'a' + 'b/c' stay apart."""
    return column.astype(str).str.replace("%", "%25").str.replace(SERIES_SEPARATOR, "%2F")
