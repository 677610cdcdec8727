"""The accuracy half of ``bench/forecast.py``: fit salesmesh, AutoETS and seasonal naive on one
set over one or more holdout windows and score their point and quantile forecasts.

Window 1 holds out the last ``h`` periods of every series; window ``k`` first drops the last
``(k - 1) * h`` periods, so the windows tile the end of the data without overlapping. A series
enters a window when, so cut, it keeps at least ``2 * m + h`` periods (two seasons to train on,
the loaders' rule). Per series, each figure is the mean over the windows the series is in;
coverage counts every holdout point of every window.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scoring
from numpy.typing import NDArray

from salesmesh.forecast import fit
from salesmesh.forecast.metrics import seasonal_scale
from salesmesh.forecast.quantiles import column

Array = NDArray[np.float64]

SALESMESH = "salesmesh"
SALESMESH_FUTURE = "salesmesh_known_future"
AUTOETS = "AutoETS"
SNAIVE = "SeasonalNaive"
MODELS = (SALESMESH, AUTOETS, SNAIVE)
MAX_ETS_SEASON = 24  # ETS cannot estimate longer seasons (52 weeks): fit those with m = 1
QUANTILE_COLUMNS = [column(t) for t in scoring.TAUS]  # p10 .. p90
FIGURES = ("mase", "smape", "spl")


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class ModelScore:
    """One model on one set: a row per (window, series) with its figures, or an error."""

    parts: list[pd.DataFrame] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    window_seconds: dict[int, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.parts)

    def rows(self, window: int | None = None) -> pd.DataFrame:
        rows = pd.concat(self.parts, ignore_index=True)
        return rows if window is None else rows[rows["window"] == window]

    def per_series(self, window: int | None = None) -> pd.DataFrame:
        """Mean over windows of each series' figures, indexed by series id (sorted)."""
        return self.rows(window).groupby("series_id", sort=True)[list(FIGURES)].mean()

    def coverage(self, name: str, window: int | None = None) -> float | None:
        rows = self.rows(window)
        points = int(rows["points"].sum())
        if rows[f"hits{name}"].isna().any() or points == 0:
            return None
        return float(rows[f"hits{name}"].sum() / points)


@dataclass
class Window:
    number: int  # 1 = the latest holdout
    series: int
    first_date: pd.Timestamp
    last_date: pd.Timestamp  # of the holdout (latest end among the series)


@dataclass
class SetResult:
    name: str
    kind: str  # "real", "intermittent" or "sample"
    n_series: int
    horizon: int
    season_length: int
    ets_season: int
    windows: list[Window] = field(default_factory=list)
    scores: dict[str, ModelScore] = field(default_factory=dict)
    blend_weights: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the set could not be evaluated at all

    def complete(self) -> bool:
        return self.error is None and all(m in self.scores and self.scores[m].ok for m in MODELS)


# --------------------------------------------------------------------------------------------
# data


def align_ends(frame: pd.DataFrame, freq: str) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Re-date each (gap-free) series so that all end on the latest end date of the set.

    This shifts every series by a whole number of periods; its values are untouched.
    """
    frame = frame.sort_values(["series_id", "date"], ignore_index=True)
    end = pd.Timestamp(frame["date"].max())
    sizes = frame.groupby("series_id", sort=True)["date"].size()
    dates = [pd.date_range(end=end, periods=int(n), freq=freq) for n in sizes]
    return frame.assign(date=np.concatenate([d.to_numpy() for d in dates])), end


def cut_window(frame: pd.DataFrame, number: int, horizon: int, season: int) -> pd.DataFrame:
    """The data of window ``number`` (1 = all of it): the last ``(number - 1) * horizon``
    periods of every series dropped, and series left with under ``2 * season + horizon``
    periods dropped."""
    frame = frame.sort_values(["series_id", "date"], ignore_index=True)
    from_end = frame.groupby("series_id", sort=True).cumcount(ascending=False)
    cut = frame[from_end >= (number - 1) * horizon]
    sizes = cut.groupby("series_id")["date"].transform("size")
    return cut[sizes >= 2 * season + horizon].reset_index(drop=True)


def split_holdout(frame: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the last ``horizon`` rows of every series are the test part."""
    frame = frame.sort_values(["series_id", "date"], ignore_index=True)
    from_end = frame.groupby("series_id", sort=True).cumcount(ascending=False)
    return (
        frame[from_end >= horizon].reset_index(drop=True),
        frame[from_end < horizon].reset_index(drop=True),
    )


# --------------------------------------------------------------------------------------------
# models


def salesmesh_forecasts(
    train: pd.DataFrame, test: pd.DataFrame, horizon: int, freq: str, known_future: bool
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[float]]:
    """Fit one salesmesh model (with quantiles) per group of series that end on the same date.

    salesmesh forecasts from the last date of the whole panel (an earlier-ending series would
    be forecast from there, its silence bridged, not from its own end), so series with
    different end dates must not share a model.
    Returns the forecasts, the forecasts given the test part's regressors (``known_future``)
    and the blend weight of every group's model.
    """
    ends = train.groupby("series_id")["date"].transform("max")
    forecasts, with_future, weights = [], [], []
    for _, group in train.groupby(ends, sort=True):
        model = fit(group, horizon, freq=freq, quantiles=True)
        weights.append(model.blend_weight)
        forecasts.append(model.predict(quantiles=scoring.TAUS))
        if known_future:
            future = test[test["series_id"].isin(group["series_id"].unique())]
            future = future.drop(columns=["sales"])
            with_future.append(model.predict(future=future, quantiles=scoring.TAUS))
    known = pd.concat(with_future, ignore_index=True) if with_future else None
    return pd.concat(forecasts, ignore_index=True), known, weights


def statsforecast_forecasts(
    train: pd.DataFrame, model: Any, horizon: int, freq: str, n_jobs: int
) -> pd.DataFrame:
    """``series_id, date, forecast, p10 .. p90`` from a statsforecast model's own intervals
    (``level=[50, 80]``), tidied by :func:`scoring.tidy_quantiles`."""
    from statsforecast import StatsForecast

    frame = train.loc[:, ["series_id", "date", "sales"]].rename(
        columns={"series_id": "unique_id", "date": "ds", "sales": "y"}
    )
    engine = StatsForecast(models=[model], freq=freq, n_jobs=n_jobs)
    out = engine.forecast(df=frame, h=horizon, level=list(scoring.ETS_LEVELS))
    if "unique_id" not in out.columns:  # older statsforecast returned it as the index
        out = out.reset_index()
    name = model.alias  # statsforecast names the forecast columns after it
    bands = scoring.tidy_quantiles(out[scoring.interval_columns(name)].to_numpy(dtype=float))
    result = pd.DataFrame(
        {"series_id": out["unique_id"], "date": out["ds"], "forecast": out[name].astype(float)}
    )
    result[QUANTILE_COLUMNS] = bands
    return result


def aligned(
    forecast: pd.DataFrame, test: pd.DataFrame, n_series: int, horizon: int
) -> tuple[Array, Array | None]:
    """The point ``(series, steps)`` and quantiles ``(series, steps, 5)`` of ``forecast`` on
    the holdout dates of ``test`` (sorted by series, then date)."""
    keys = pd.MultiIndex.from_frame(test[["series_id", "date"]])
    indexed = forecast.set_index(["series_id", "date"]).reindex(keys)
    point = indexed["forecast"].to_numpy(dtype=float).reshape(n_series, horizon)
    missing = int((~np.isfinite(point)).any(axis=1).sum())
    if missing:
        raise ValueError(f"{missing} series lack a finite forecast for some holdout date")
    if not set(QUANTILE_COLUMNS) <= set(forecast.columns):
        return point, None
    bands = indexed[QUANTILE_COLUMNS].to_numpy(dtype=float).reshape(n_series, horizon, -1)
    return point, bands


def window_rows(
    number: int,
    series: NDArray[Any],
    actual: Array,
    scale: Array,
    forecast: pd.DataFrame,
    test: pd.DataFrame,
) -> pd.DataFrame:
    """One row per series of this window: MASE, sMAPE, SPL and interval hits."""
    n_series, horizon = actual.shape
    point, bands = aligned(forecast, test, n_series, horizon)
    mase, smape = scoring.point_errors(actual, point, scale)
    rows = pd.DataFrame(
        {"window": number, "series_id": series, "mase": mase, "smape": smape, "points": horizon}
    )
    if bands is None:
        rows["spl"] = np.nan
        for name in scoring.INTERVALS:
            rows[f"hits{name}"] = np.nan
        return rows
    rows["spl"] = scoring.scaled_pinball(actual, bands, scale)
    for name, hits in scoring.interval_hits(actual, bands).items():
        rows[f"hits{name}"] = hits
    return rows


# --------------------------------------------------------------------------------------------
# one set


def evaluate(
    result: SetResult,
    frame: pd.DataFrame,
    freq: str,
    windows: int,
    n_jobs: int,
    say: Callable[[str], None],
    known_future: bool = False,
) -> SetResult:
    """Fit and score the models on every window of ``frame``; failures are caught and recorded
    (a model that fails in one window is left out of the set)."""
    name, horizon, season = result.name, result.horizon, result.season_length
    for number in range(1, windows + 1):
        try:
            data = cut_window(frame, number, horizon, season)
            if data.empty:
                result.notes.append(
                    f"{name}: only {number - 1} window(s): with {(number - 1) * horizon} more "
                    f"periods cut, no series keeps 2 x m + h = {2 * season + horizon} periods."
                )
                break
            holdout = Holdout(number, data, horizon, season)
        except Exception as exc:
            result.error = short_error(exc)
            say(f"{name}: cannot evaluate window {number}: {result.error}")
            traceback.print_exc()
            return result
        result.windows.append(holdout.window())
        evaluate_window(result, holdout, freq, n_jobs, say, known_future)
    return result


class Holdout:
    """One window of one set: its training part, holdout and scales."""

    def __init__(self, number: int, data: pd.DataFrame, horizon: int, season: int) -> None:
        self.number = number
        self.train, self.test = split_holdout(data, horizon)
        self.series = np.sort(data["series_id"].unique())
        history = self.train.pivot(index="series_id", columns="date", values="sales")
        self.scale = seasonal_scale(history.reindex(self.series).to_numpy(dtype=float), season)
        self.actual = self.test["sales"].to_numpy(dtype=float).reshape(len(self.series), horizon)

    def window(self) -> Window:
        dates = self.test["date"]
        return Window(self.number, len(self.series), dates.min(), dates.max())

    def rows(self, forecast: pd.DataFrame) -> pd.DataFrame:
        return window_rows(self.number, self.series, self.actual, self.scale, forecast, self.test)


def evaluate_window(
    result: SetResult,
    holdout: Holdout,
    freq: str,
    n_jobs: int,
    say: Callable[[str], None],
    known_future: bool,
) -> None:
    from statsforecast.models import AutoETS, SeasonalNaive

    label = f"{result.name} w{holdout.number}"
    horizon, train = result.horizon, holdout.train

    def run(model: str, make: Callable[[], pd.DataFrame]) -> None:
        score = result.scores.setdefault(model, ModelScore())
        if score.error is not None:
            return
        say(f"{label}: {model} on {len(holdout.series)} series ...")
        start = time.perf_counter()
        try:
            forecast = make()
            seconds = time.perf_counter() - start
            rows = holdout.rows(forecast)
        except Exception as exc:
            score.error = short_error(exc)
            say(f"{label}: {model} FAILED: {score.error}")
            traceback.print_exc()
            return
        score.parts.append(rows)
        score.seconds += seconds
        score.window_seconds[holdout.number] = seconds
        mase = rows["mase"].to_numpy()
        gm = scoring.geometric_mean(mase[mase > 0])
        say(f"{label}: {model} done in {seconds:.1f}s, gm MASE {gm:.3f} (zeros left out)")

    known: list[pd.DataFrame] = []

    def salesmesh() -> pd.DataFrame:
        plain, future, weights = salesmesh_forecasts(
            train, holdout.test, horizon, freq, known_future
        )
        if future is not None:
            known.append(future)
        result.blend_weights.extend(weights)
        return plain

    run(SALESMESH, salesmesh)
    run(
        AUTOETS,
        lambda: statsforecast_forecasts(
            train, AutoETS(season_length=result.ets_season), horizon, freq, n_jobs
        ),
    )
    run(
        SNAIVE,
        lambda: statsforecast_forecasts(
            train, SeasonalNaive(season_length=result.season_length), horizon, freq, n_jobs
        ),
    )
    if known:
        run(SALESMESH_FUTURE, lambda: known[0])
        future = result.scores[SALESMESH_FUTURE]
        future.seconds, future.window_seconds = 0.0, {}  # its fit is salesmesh's


# --------------------------------------------------------------------------------------------
# summaries


def summary(
    scores: dict[str, ModelScore], salesmesh_key: str = SALESMESH, window: int | None = None
) -> dict[str, Any]:
    """Per model: geometric-mean MASE and SPL (paired, :data:`scoring.ZERO_RULE`: salesmesh
    with AutoETS, and salesmesh with seasonal naive for ``*_vs_snaive``), arithmetic
    means of sMAPE and SPL, interval coverage and seconds; salesmesh/AutoETS ratios and the
    gain over seasonal naive."""
    keys = {SALESMESH: salesmesh_key, AUTOETS: AUTOETS, SNAIVE: SNAIVE}
    present = {m: scores[k] for m, k in keys.items() if k in scores and scores[k].ok}
    tables = {m: s.per_series(window) for m, s in present.items()}
    out: dict[str, Any] = {}
    if tables:
        common = sorted(set.intersection(*(set(t.index) for t in tables.values())))
        tables = {m: t.loc[common] for m, t in tables.items()}
    for figure in ("mase", "spl"):
        usable = {m: t[figure].to_numpy() for m, t in tables.items() if t[figure].notna().all()}
        # each comparison pairs its own two models (ZERO_RULE)
        means, left_out = scoring.paired_geometric_means(
            {m: v for m, v in usable.items() if m in (SALESMESH, AUTOETS)}
        )
        out[f"{figure}_left_out"] = left_out
        out[f"{figure}_{SALESMESH}"] = means.get(SALESMESH)
        out[f"{figure}_{AUTOETS}"] = means.get(AUTOETS)
        means, left_out = scoring.paired_geometric_means(
            {m: v for m, v in usable.items() if m in (SALESMESH, SNAIVE)}
        )
        out[f"{figure}_left_out_vs_snaive"] = left_out
        out[f"{figure}_{SNAIVE}"] = means.get(SNAIVE)
        out[f"{figure}_{SALESMESH}_vs_snaive"] = means.get(SALESMESH)
    for model in keys:
        table, score = tables.get(model), present.get(model)
        if table is None or score is None:
            for figure in ("smape", "spl_mean", "coverage_50", "coverage_80", "seconds"):
                out[f"{figure}_{model}"] = None
            continue
        out[f"smape_{model}"] = float(table["smape"].mean())
        spl = table["spl"]
        out[f"spl_mean_{model}"] = float(spl.mean()) if spl.notna().all() else None
        for name in scoring.INTERVALS:
            out[f"coverage_{name}_{model}"] = score.coverage(name, window)
        seconds = score.seconds if window is None else score.window_seconds.get(window)
        out[f"seconds_{model}"] = seconds
    out["series"] = len(next(iter(tables.values()))) if tables else 0
    out["mase_ratio"] = scoring.ratio(out[f"mase_{SALESMESH}"], out[f"mase_{AUTOETS}"])
    out["spl_ratio"] = scoring.ratio(out[f"spl_{SALESMESH}"], out[f"spl_{AUTOETS}"])
    vs_naive = scoring.ratio(out[f"mase_{SALESMESH}_vs_snaive"], out[f"mase_{SNAIVE}"])
    out["gain_vs_SeasonalNaive_pct"] = None if vs_naive is None else 100.0 * (1.0 - vs_naive)
    return out


def pooled(results: Sequence[SetResult]) -> dict[str, ModelScore]:
    """Every series of every complete set as one big set (ids prefixed by the set's name)."""
    done = [r for r in results if r.complete()]
    out: dict[str, ModelScore] = {}
    for model in MODELS:
        parts = [
            part.assign(series_id=r.name + ": " + part["series_id"].astype(str))
            for r in done
            for part in r.scores[model].parts
        ]
        out[model] = ModelScore(
            parts,
            sum(r.scores[model].seconds for r in done),
            None if done else "no complete set",
        )
    return out
