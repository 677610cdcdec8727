"""Load a sales file against the contract: a normalised frame when it holds, the reasons if not.

Only an unreadable source raises (SourceError); every problem with the content becomes a
finding in the report, so a bad upload is quarantined with its reasons, never a traceback.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from salesmesh.data.coded import Coded, FloatArray, IntArray
from salesmesh.data.columns import SINGLE_ID, ColumnPlan, fold, plan_columns
from salesmesh.data.contract import PRICE, PROMO, Contract
from salesmesh.data.dates import parse_dates
from salesmesh.data.dialect import count_lines, read_table, sniff_dialect
from salesmesh.data.report import ContractViolationError, ValidationReport, empty_cells
from salesmesh.data.series import assemble, index_series
from salesmesh.data.sniff import decode
from salesmesh.data.source import (
    DEFAULT_CONTRACT,
    SourceInfo,
    SourceTooLargeError,
    md5_base64,
    read_source,
)
from salesmesh.data.values import check_regressor, check_sales, detect_decimal, non_numeric

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """The normalised frame (None unless the report is ok), the report and what was read."""

    frame: pd.DataFrame | None
    report: ValidationReport
    source: SourceInfo

    @property
    def ok(self) -> bool:
        return self.report.ok


def load_sales(uri: str | os.PathLike[str], contract: Contract = DEFAULT_CONTRACT) -> LoadResult:
    """Read a local path or gs:// object and check it; raises SourceError only if unreadable."""
    try:
        data, source = read_source(uri, contract)
    except SourceTooLargeError as exc:
        report = ValidationReport(stats={"source": asdict(exc.info)})
        report.error("size_limit", str(exc), [{"value": exc.info.size}])
        return LoadResult(None, report, exc.info)
    return load_sales_bytes(data, source.uri, contract, source=source)


def validate_file(
    uri: str | os.PathLike[str], contract: Contract = DEFAULT_CONTRACT
) -> ValidationReport:
    """The report of `load_sales`, for callers that only need the verdict and its reasons."""
    return load_sales(uri, contract).report


def load_sales_bytes(
    data: bytes,
    name: str,
    contract: Contract = DEFAULT_CONTRACT,
    *,
    source: SourceInfo | None = None,
) -> LoadResult:
    """Check in-memory file content (gzip is recognised by its magic bytes); `name` is used
    in messages."""
    source = source or SourceInfo(name, len(data), md5=md5_base64(data))
    report = ValidationReport(stats={"source": asdict(source)})
    frame = None
    try:
        if len(data) > contract.max_bytes:
            raise SourceTooLargeError(source, contract.max_bytes)
        frame = _check(data, name, contract, report)
    except SourceTooLargeError as exc:
        report.error("size_limit", str(exc), [{"value": len(data)}])
    except ContractViolationError as exc:
        report.errors.append(exc.finding)
    except Exception as exc:
        # A bug of ours must still end in a report: the upload is quarantined, not retried forever.
        logger.exception("unexpected failure validating %s", name)
        report.error(
            "internal",
            f"validation stopped unexpectedly ({type(exc).__name__}: {exc}); "
            "this is a salesmesh bug, please report it with the file",
        )
    return LoadResult(frame if report.ok else None, report, source)


def _check(
    data: bytes, name: str, contract: Contract, report: ValidationReport
) -> pd.DataFrame | None:
    decoded = decode(data, name, contract.max_decompressed_bytes)
    report.stats |= {"encoding": decoded.encoding, "compression": decoded.compression}
    dialect = sniff_dialect(decoded.data)
    report.stats["delimiter"] = dialect.delimiter
    _check_limits(len(dialect.header), count_lines(decoded.data) - dialect.header_line, contract)
    plan = plan_columns(dialect.header, contract.mapping)
    report.warnings += plan.warnings
    columns, lines = _code_table(read_table(decoded.data, dialect), plan, dialect.header_line)
    if len(lines) == 0:
        raise ContractViolationError(
            "empty", f"{name} has a header (line {dialect.header_line}) but no data rows"
        )
    _check_limits(len(dialect.header), len(lines), contract)
    report.stats["rows"] = len(lines)
    for target in ("store_id", "product_id"):
        columns.setdefault(target, Coded.constant(SINGLE_ID, lines, target))
    decimal = detect_decimal(
        dialect.delimiter,
        [columns[n] for n in columns if n not in ("date", "store_id", "product_id")],
    )
    report.stats["decimal"] = decimal
    ids_ok = _check_ids(columns["store_id"], columns["product_id"], report)
    dates = parse_dates(columns["date"], contract.date_format, report)
    sales = check_sales(columns["sales"], decimal, report)
    regressors = _check_regressors(plan, columns, decimal, contract, report)
    kept = [target for target in plan.roles if target not in (PRICE, PROMO)] + list(regressors)
    report.stats["columns"] = {plan.source[target]: target for target in kept}
    if dates is None or not ids_ok:
        return None
    report.stats["date_format"] = dates[1]
    series = index_series(
        columns["store_id"], columns["product_id"], columns["date"], dates[0], contract, report
    )
    if report.errors:
        return None
    return assemble(series, sales, regressors)


def _code_table(
    table: pd.DataFrame, plan: ColumnPlan, header_line: int
) -> tuple[dict[str, Coded], IntArray]:
    """Code every planned column and drop blank lines; returns the columns and their lines."""
    every_line = np.arange(len(table)) + header_line + 1
    columns = {
        target: Coded.from_cells(
            table[position].to_numpy(), every_line, plan.source[target], plan.label(target)
        )
        for target, position in (plan.roles | plan.regressors).items()
    }
    blank = np.logical_and.reduce([column.missing for column in columns.values()])
    if not blank.any():
        return columns, every_line
    rows = np.flatnonzero(~blank)
    lines = every_line[rows]
    return {target: column.subset(rows, lines) for target, column in columns.items()}, lines


def _check_limits(columns: int, rows: int, contract: Contract) -> None:
    if columns > contract.max_columns:
        raise ContractViolationError(
            "column_limit",
            f"the header has {columns:,} columns, over the limit of {contract.max_columns:,} "
            "(raise Contract.max_columns to accept it)",
            [{"value": columns}],
        )
    if rows > contract.max_rows:
        raise ContractViolationError(
            "row_limit",
            f"the file has about {rows:,} data rows, over the limit of {contract.max_rows:,} "
            "(raise Contract.max_rows to accept it)",
            [{"value": rows}],
        )


def _check_ids(store: Coded, product: Coded, report: ValidationReport) -> bool:
    ok = True
    for column in (store, product):
        if column.missing.any():
            rows = np.flatnonzero(column.missing)
            lines = column.lines[rows]
            report.error("id_missing", *empty_cells(column.label, column.name, lines))
            ok = False
    return ok


def _check_regressors(
    plan: ColumnPlan,
    columns: dict[str, Coded],
    decimal: str,
    contract: Contract,
    report: ValidationReport,
) -> dict[str, FloatArray]:
    names = [n for n in (PRICE, PROMO) if n in plan.roles] + list(plan.regressors)
    known = _known_in_advance(plan, names, contract, report)
    declared = {PRICE, PROMO} | plan.explicit | set(known)
    kept: dict[str, FloatArray] = {}
    dropped: list[tuple[str, str]] = []
    for name in names:
        column = columns[name]
        if column.missing.all():
            dropped.append((column.name, "empty"))
            continue
        if name not in declared:
            bad = non_numeric(column, decimal)
            if bad.any():
                (line, value), *_ = column.first_rows(bad, limit=1)
                dropped.append((column.name, f"not numeric, e.g. line {line}: {value!r}"))
                continue
        values = check_regressor(column, name, decimal, report)
        if values is not None:
            kept[name] = values
            _warn_gaps(column, values, name, report)
    if dropped:
        report.warn(
            "dropped_columns",
            "dropped "
            + ", ".join(f"{column!r} ({why})" for column, why in dropped)
            + ": only numeric extra columns are kept as regressors",
            [{"column": column, "value": why} for column, why in dropped[:5]],
        )
    report.stats["regressors"] = [name for name in kept if name in known]
    ignored = [name for name in kept if name not in known]
    report.stats["ignored_columns"] = ignored
    report.stats["dropped_columns"] = [column for column, _ in dropped]
    if ignored:
        listed = ", ".join(plan.label(name) for name in ignored)
        report.warn(
            "not_known_in_advance",
            f"numeric column(s) {listed} are ignored by the forecaster: only regressors known "
            f"in advance ({', '.join(contract.known_in_advance)}) are read on the dates it "
            "forecasts, because a value nobody knows ahead (revenue, stock) leaks the answer "
            "into the backtest. Declare a column that is planned ahead with --regressor NAME "
            "or SALESMESH_REGRESSORS",
            [{"column": plan.source.get(name, name), "value": name} for name in ignored[:5]],
        )
    return kept


def _known_in_advance(
    plan: ColumnPlan, names: list[str], contract: Contract, report: ValidationReport
) -> list[str]:
    """The columns among ``names`` the forecaster may read on a forecast date.

    A declared name matches a column by its output name or by the file's own (folded) name.
    """
    wanted = {fold(name) for name in contract.known_in_advance}
    known = [
        name
        for name in names
        if fold(name) in wanted or fold(plan.source.get(name, name)) in wanted
    ]
    found = {fold(name) for name in known} | {fold(plan.source.get(n, n)) for n in known}
    absent = [name for name in contract.regressors if fold(name) not in found]
    if absent:
        report.warn(
            "regressor_absent",
            f"declared regressor(s) {', '.join(repr(name) for name in absent)} are not columns "
            "of this file",
            [{"column": name} for name in absent[:5]],
        )
    return known


def _warn_gaps(column: Coded, values: FloatArray, name: str, report: ValidationReport) -> None:
    empty = np.flatnonzero(np.isnan(values))
    if not len(empty):
        return
    message, listed = empty_cells(column.label, column.name, column.lines[empty])
    fallback = "0" if name == PROMO else "the column median"
    report.warn(
        "regressor_missing",
        f"{message}; filled with the series' previous value (its next value at a series' start, "
        f"{fallback} for a series without any)",
        listed,
    )
