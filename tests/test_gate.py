"""The sound gate on plain data: paired per-series comparison, bootstrap interval, coverage.

Sales are simulated (weekly pattern plus noise, the last four weeks noisier: a harder window);
the "model" is a weekday mean of the last eight weeks, the same code in every version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from salesmesh.errors import ConfigError, GateEvidenceError
from salesmesh.gate import (
    BACKTEST_COLUMNS,
    Coverage,
    GateSettings,
    NaiveRelative,
    Overlap,
    brief,
    compare,
    decide,
    judge,
)
from salesmesh.rollout import policy

H, SEASON, DAYS = 28, 7, 224
Forecaster = Callable[[np.ndarray], np.ndarray]


def business(n: int = 12, seed: int = 1, hard: float = 1.6) -> np.ndarray:
    """(series, days) of daily sales; the noise of the last ``H`` days is ``hard`` times larger."""
    rng = np.random.default_rng(seed)
    t = np.arange(DAYS)
    level = rng.uniform(10, 60, (n, 1))
    weekly = 1 + 0.35 * np.sin(2 * np.pi * t / SEASON + rng.uniform(0, 2 * np.pi, (n, 1)))
    noise = 0.2 * level * np.where(t >= DAYS - H, hard, 1.0) * rng.normal(size=(n, DAYS))
    return np.maximum(0.0, level * weekly + noise)


def weekday_mean(known: np.ndarray) -> np.ndarray:
    """The unchanged model: each weekday's mean over the last eight weeks."""
    end = known.shape[1]
    days = np.arange(end - 56, end)
    return np.stack(
        [known[:, end - 56 :][:, days % SEASON == (end + k) % SEASON].mean(1) for k in range(H)], 1
    )


def seasonal_naive(known: np.ndarray) -> np.ndarray:
    return known[:, known.shape[1] - SEASON + np.arange(H) % SEASON]


def random_walk(known: np.ndarray) -> np.ndarray:
    return np.repeat(known[:, -1:], H, axis=1)


def jittered(model: Forecaster, seed: int, size: float = 0.02) -> Forecaster:
    """The same code refitted: forecasts that differ from ``model``'s by refit noise."""
    rng = np.random.default_rng(seed)
    return lambda known: model(known) * (1 + size * rng.normal(size=(known.shape[0], H)))


def scale(known: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(known[:, SEASON:] - known[:, :-SEASON]), axis=1)


def rows(sales: np.ndarray, origin: int, columns: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """One window's table (series, window, step, the given |error| columns, scale), columnar."""
    n = sales.shape[0]
    table: dict[str, list[Any]] = {
        "series": [f"s{i}" for i in range(n) for _ in range(H)],
        "window": [f"day-{origin}"] * (n * H),
        "step": list(range(1, H + 1)) * n,
    }
    table |= {name: values.ravel().tolist() for name, values in columns.items()}
    table["scale"] = np.repeat(scale(sales[:, :origin]), H).tolist()
    return table


def backtest(sales: np.ndarray, end: int, model: Forecaster, origins: int = 3) -> dict[str, Any]:
    """A run's own rolling-origin backtest on data up to ``end``, with seasonal naive beside."""
    parts = []
    for k in range(origins, 0, -1):
        origin = end - k * H
        known, actual = sales[:, :origin], sales[:, origin : origin + H]
        errors = {
            "model": np.abs(actual - model(known)),
            "naive": np.abs(actual - seasonal_naive(known)),
        }
        parts.append(rows(sales, origin, errors))
    return {c: [v for part in parts for v in part[c]] for c in BACKTEST_COLUMNS}


def overlap(
    sales: np.ndarray, origin: int, champion: Forecaster, challenger: Forecaster
) -> dict[str, Any]:
    """The champion's stored forecasts from ``origin`` and the challenger's backtest from the
    same origin, scored against the same actuals."""
    known, actual = sales[:, :origin], sales[:, origin : origin + H]
    errors = {
        "champion": np.abs(actual - champion(known)),
        "challenger": np.abs(actual - challenger(known)),
    }
    return rows(sales, origin, errors)


def served(sales: np.ndarray, origin: int, model: Forecaster) -> dict[str, Any]:
    """A champion's ``forecast`` table: what it serves from the end of its data, ``origin``."""
    table = rows(sales, origin, {"forecast": model(sales[:, :origin])})
    table["date"] = [f"day-{origin + step - 1}" for step in table["step"]]
    return {c: table[c] for c in ("series", "window", "step", "date", "forecast")}


def since(sales: np.ndarray, origin: int, model: Forecaster, steps: int = H) -> dict[str, Any]:
    """A challenger's ``since`` table: its backtest from ``origin``, beside the actuals."""
    known, actual = sales[:, :origin], sales[:, origin : origin + H]
    table = rows(sales, origin, {"forecast": model(known), "actual": actual})
    keep = [step <= steps for step in table["step"]]
    return {c: [v for v, ok in zip(vs, keep, strict=True) if ok] for c, vs in table.items()}


def metrics(run_id: str, table: dict[str, Any], **gate: Any) -> dict[str, Any]:
    """A run's metrics.json: protocol, pooled figures as the trainer writes them, gate block."""
    frame = pd.DataFrame(table)
    pooled = {
        name: {"mase": float((frame[column] / frame["scale"]).mean())}
        for name, column in (("salesmesh", "model"), ("seasonal_naive", "naive"))
    }
    origins = sorted(set(table["window"]))
    block = {"format": 2, "id": run_id, "series": sorted(set(table["series"])), "backtest": table}
    return {
        "protocol": {"horizon": H, "freq": "D", "season_length": SEASON, "origins": origins},
        "models": pooled,
        "gate": block | gate,
    }


def scaled(frame: dict[str, Any], column: str, factors: dict[str, float]) -> dict[str, Any]:
    """``frame`` with ``column`` multiplied per series (``factors`` by series id)."""
    out = dict(frame)
    out[column] = [
        v * factors.get(s, 1.0) for s, v in zip(frame["series"], frame[column], strict=True)
    ]
    return out


def test_harder_window_gates_nothing_when_scored_on_the_same_actuals():
    """The issue's case: an unchanged model retrained 28 days later, on a harder window, passes;
    the pooled-MASE rule would have gated it."""
    sales = business()
    served_then = served(sales, DAYS - H, weekday_mean)
    champion = metrics("r-2", backtest(sales, DAYS - H, weekday_mean), forecast=served_then)
    refit = jittered(weekday_mean, seed=5)
    late = since(sales, DAYS - H, refit)
    challenger = metrics("r-3", backtest(sales, DAYS, refit), since=late)
    assert not policy.gate(policy.summary(challenger), policy.summary(champion), 0.05).passed
    decision = judge(challenger, champion)
    assert decision.passed, decision.reason
    assert decision.evidence and decision.evidence["mode"] == "overlap"
    found = decision.evidence["comparison"]
    assert abs(found["relative_difference"]) < 0.05
    assert found["windows"] == {"challenger": ["day-196"], "champion": ["day-196"]}
    assert found["series"] == 12 and found["points"]["challenger"] == 12 * H


def test_harder_window_without_overlap_is_judged_on_the_shared_backtest_windows():
    """Without overlapping actuals the two backtests are compared, relative to seasonal naive,
    on the windows both hold: the unchanged model passes, the harder window left out."""
    sales = business(seed=2)
    champion = metrics("r-2", backtest(sales, DAYS - H, weekday_mean))
    challenger = metrics("r-3", backtest(sales, DAYS, jittered(weekday_mean, seed=6)))
    assert not policy.gate(policy.summary(challenger), policy.summary(champion), 0.05).passed
    decision = judge(challenger, champion)
    assert decision.passed, decision.reason
    found = decision.evidence["comparison"] if decision.evidence else {}
    assert found["mode"] == "naive_relative"
    assert found["windows"]["challenger"] == found["windows"]["champion"] == ["day-140", "day-168"]
    assert "no overlapping actuals yet" in decision.evidence["note"]


def test_window_that_hurts_model_and_naive_alike_does_not_gate():
    """On disjoint windows, errors 30 % higher for the model and seasonal naive alike leave the
    ratio, and so the verdict, unchanged."""
    sales = business(hard=1.0)
    old = backtest(sales, DAYS - 3 * H, weekday_mean)
    harder = backtest(sales, DAYS, weekday_mean)
    harder |= {column: [v * 1.3 for v in harder[column]] for column in ("model", "naive")}
    found = compare(NaiveRelative(pd.DataFrame(harder), pd.DataFrame(old)))
    assert found.windows["challenger"] != found.windows["champion"]
    decision = decide(found, None)
    assert decision.passed, decision.reason


@pytest.mark.parametrize("mode", ["overlap", "naive_relative"])
def test_random_walk_is_gated_with_a_clear_reason(mode: str):
    """A genuinely worse model (last value carried forward) is credibly worse in either mode."""
    sales = business(hard=1.0)
    forecast = served(sales, DAYS - H, weekday_mean)
    champion = metrics("r-2", backtest(sales, DAYS - H, weekday_mean), forecast=forecast)
    extra = {}
    if mode == "overlap":
        extra["since"] = since(sales, DAYS - H, random_walk)
    challenger = metrics("r-3", backtest(sales, DAYS, random_walk), **extra)
    decision = judge(challenger, champion)
    assert not decision.passed
    assert decision.evidence and decision.evidence["mode"] == mode
    low = decision.evidence["comparison"]["interval"][0]
    assert low > 0.05
    assert "credibly worse" in decision.reason and "higher than the champion's" in decision.reason


def test_errors_thirty_percent_higher_on_most_series_are_gated():
    """Challenger errors 30 % higher on 10 of 12 series: gated, the interval far above 5 %."""
    sales = business(hard=1.0)
    table = overlap(sales, DAYS - H, weekday_mean, weekday_mean)
    worse = scaled(table, "challenger", {f"s{i}": 1.3 for i in range(10)})
    found = compare(Overlap(pd.DataFrame(worse)))
    assert found.interval[0] > 0.15
    assert not decide(found, None).passed


def test_noise_level_differences_pass():
    """Per-series differences of a few percent either way, around +2 %, do not gate."""
    rng = np.random.default_rng(3)
    table = overlap(business(n=30), DAYS - H, weekday_mean, weekday_mean)
    noise = {f"s{i}": 1.02 + 0.05 * rng.normal() for i in range(30)}
    decision = decide(compare(Overlap(pd.DataFrame(scaled(table, "challenger", noise)))), None)
    assert decision.passed, decision.reason
    assert "not credibly" in decision.reason or "within the 5% tolerance" in decision.reason


def test_dropping_active_series_is_gated_and_lists_them():
    """A challenger without 2 of the champion's active series is gated even when better; a
    series silent for a season may go, and the evidence says so."""
    sales = business(hard=1.0)
    champion = metrics("r-2", backtest(sales, DAYS - H, weekday_mean))
    challenger = metrics("r-3", backtest(sales, DAYS, weekday_mean))
    challenger["gate"]["series"] = [f"s{i}" for i in range(3, 12)]
    challenger["gate"]["inactive"] = ["s0"]
    decision = judge(challenger, champion)
    assert not decision.passed
    assert decision.reason == (
        "the challenger would stop forecasting 2 active series the champion serves: s1, s2"
    )
    coverage = decision.evidence["coverage"] if decision.evidence else {}
    assert coverage["dropped"] == ["s1", "s2"] and coverage["retired"] == ["s0"]
    challenger["gate"]["series"] = [f"s{i}" for i in range(1, 12)]
    assert judge(challenger, champion).passed


def test_dropped_series_count_beyond_the_named_ones():
    """A reason names ten series and counts the rest; unknown activity counts all as active."""
    coverage = Coverage(frozenset(f"s{i:02}" for i in range(25)), frozenset({"s00"}))
    decision = decide(None, coverage)
    assert not decision.passed
    assert "24 active series" in decision.reason and "s10 and 14 more" in decision.reason


def test_legacy_runs_still_get_the_coverage_rule():
    """Two older runs (no gate evidence) use the pooled-MASE rule, after coverage from their
    series tables: the partial upload of the issue is gated."""
    old = {"protocol": {"horizon": H}, "models": {"salesmesh": {"mase": 0.8}}}
    coverage = Coverage(frozenset({"a/1", "a/2", "b/1", "b/2"}), frozenset({"a/1", "a/2"}))
    decision = judge(old, old, coverage=coverage)
    assert not decision.passed and "b/1, b/2" in decision.reason
    assert decision.evidence and decision.evidence["mode"] == "legacy"


def test_no_overlap_or_a_stale_one_falls_back_to_naive_relative():
    """A backtest from another start than the champion's forecast, or an overlap shorter than
    a week, is not used."""
    sales = business(hard=1.0)
    forecast = served(sales, DAYS - H, weekday_mean)
    champion = metrics("r-2", backtest(sales, DAYS - H, weekday_mean), forecast=forecast)
    stale = since(sales, DAYS - 2 * H, weekday_mean)
    challenger = metrics("r-3", backtest(sales, DAYS, weekday_mean), since=stale)
    decision = judge(challenger, champion)
    assert decision.evidence and decision.evidence["mode"] == "naive_relative"
    assert (
        "no backtest from the champion's first forecast date day-196" in decision.evidence["note"]
    )
    challenger["gate"]["since"] = since(sales, DAYS - H, weekday_mean, steps=5)
    decision = judge(challenger, champion)
    assert decision.evidence and decision.evidence["mode"] == "naive_relative"
    assert "overlap under 7 points a series" in decision.evidence["note"]
    challenger["gate"]["since"] = since(sales, DAYS - H, weekday_mean, steps=7)
    decision = judge(challenger, champion)
    assert decision.evidence and decision.evidence["mode"] == "overlap", decision.reason


def test_better_on_average_passes_even_when_worse_on_most_series():
    """The rule judges total scaled error: 8 % worse on 8 of 10 series but far better on the
    other two passes, and the evidence counts the series it is worse on."""
    table = overlap(business(n=10, hard=1.0), DAYS - H, weekday_mean, weekday_mean)
    factors = {f"s{i}": 1.08 for i in range(8)} | {"s8": 0.3, "s9": 0.3}
    found = compare(Overlap(pd.DataFrame(scaled(table, "challenger", factors))))
    assert found.difference < 0 and found.worse(0.05) == [f"s{i}" for i in range(8)]
    decision = decide(found, None)
    assert decision.passed, decision.reason
    assert decision.evidence and decision.evidence["comparison"]["series_worse"] == 8


def test_seeded_the_same_tables_give_the_same_answer_in_any_row_order():
    """The interval depends on the seed only: shuffled rows give it exactly; another seed moves
    it a little and leaves the decision."""
    table = pd.DataFrame(overlap(business(), DAYS - H, weekday_mean, random_walk))
    first = compare(Overlap(table))
    shuffled = compare(Overlap(table.sample(frac=1.0, random_state=7)))
    assert shuffled == first
    other = compare(Overlap(table), GateSettings(seed=11))
    assert other.interval != first.interval
    assert other.difference == first.difference
    assert abs(other.interval[0] - first.interval[0]) < 0.1
    assert decide(other, None).passed is decide(first, None).passed is False


@pytest.mark.parametrize(
    ("factors", "passed"),
    [
        ({"s0": 1.15}, True),
        ({"s0": 1.5}, False),
        ({"s0": 1.4, "s1": 0.9}, True),
        ({"s0": 1.4, "s1": 1.3}, False),
    ],
)
def test_one_or_two_series_are_gated_only_when_clearly_worse_on_each(
    factors: dict[str, float], passed: bool
):
    """With under three series there is no spread for an interval: the challenger is gated
    only when over 25 % worse on every series."""
    sales = business(n=len(factors), hard=1.0)
    table = overlap(sales, DAYS - H, weekday_mean, weekday_mean)
    decision = decide(compare(Overlap(pd.DataFrame(scaled(table, "challenger", factors)))), None)
    assert decision.passed is passed, decision.reason
    assert f"only {len(factors)} series, no interval" in decision.reason
    if not passed:
        assert "clearly worse, by over 25%" in decision.reason


def test_random_walk_on_a_single_series_is_still_gated():
    """One series is enough to keep out a model that forecasts its last value."""
    table = overlap(business(n=1, hard=1.0), DAYS - H, weekday_mean, random_walk)
    decision = decide(compare(Overlap(pd.DataFrame(table))), None)
    assert not decision.passed and "clearly worse" in decision.reason


def test_first_model_is_judged_against_seasonal_naive_alone():
    """With no champion a model credibly worse than seasonal naive on its own backtest is gated;
    the weekday-mean model passes and the reason says what it was measured against."""
    sales = business(hard=1.0)
    decision = judge(metrics("r-1", backtest(sales, DAYS, random_walk)), None)
    assert not decision.passed
    assert decision.reason.startswith("no champion yet; but on its own backtest")
    decision = judge(metrics("r-1", backtest(sales, DAYS, weekday_mean)), None)
    assert decision.passed and "lower than seasonal naive's" in decision.reason
    assert decision.challenger_mase is not None and decision.champion_mase is None


def test_backtests_of_another_horizon_are_not_compared():
    """Without overlap, backtests of different horizons are not compared; the note says why and
    the seasonal-naive rule decides."""
    sales = business(hard=1.0)
    champion = metrics("r-2", backtest(sales, DAYS - H, weekday_mean))
    champion["protocol"]["horizon"] = 14
    decision = judge(metrics("r-3", backtest(sales, DAYS, weekday_mean)), champion)
    assert decision.passed
    assert decision.evidence and decision.evidence["mode"] == "none"
    assert "backtests not comparable (horizon 28 vs 14)" in decision.reason


def summary_metrics(mase: float, naive: float = 1.2) -> dict[str, Any]:
    protocol = {"horizon": H, "freq": "D", "season_length": SEASON, "origins": 3}
    return {
        "protocol": protocol,
        "models": {"salesmesh": {"mase": mase}, "seasonal_naive": {"mase": naive}},
    }


@pytest.mark.parametrize(("mine", "theirs"), [(0.9, None), (0.944, 0.9), (0.946, 0.9), (1.4, 1.5)])
def test_versions_without_gate_evidence_get_todays_rule_unchanged(
    mine: float, theirs: float | None
):
    """Registry summaries (no gate block) are gated by policy.gate: same verdict, reason, MASE."""
    champion = None if theirs is None else summary_metrics(theirs)
    decision = judge(summary_metrics(mine), champion)
    before = policy.gate(summary_metrics(mine), champion, 0.05)
    assert (decision.passed, decision.reason) == (before.passed, before.reason)
    assert (decision.challenger_mase, decision.champion_mase) == (mine, theirs)
    assert decision.evidence and decision.evidence["mode"] == "legacy"


def test_unusable_evidence_falls_back_to_todays_rule_and_says_why():
    """A gate block missing a column is not trusted: the pooled-MASE rule decides."""
    sales = business(hard=1.0)
    champion = metrics("r-2", backtest(sales, DAYS - H, weekday_mean))
    challenger = metrics("r-3", backtest(sales, DAYS, weekday_mean))
    del challenger["gate"]["backtest"]["naive"]
    decision = judge(challenger, champion)
    assert decision.evidence and decision.evidence["mode"] == "legacy"
    assert decision.evidence["note"] == (
        "evidence unusable: the 'backtest' table lacks column(s) naive"
    )


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("challenger", -1.0, "negative values in 'challenger'"),
        ("scale", 0.0, "a missing or zero 'scale'"),
        ("series", None, "lacks column(s) series"),
    ],
)
def test_impossible_tables_are_refused_naming_the_column(column: str, value: Any, message: str):
    """Negative errors, a zero scale or a missing column raise GateEvidenceError saying which."""
    table = pd.DataFrame(overlap(business(n=3), DAYS - H, weekday_mean, weekday_mean))
    if value is None:
        table = table.drop(columns=column)
    else:
        table.loc[0, column] = value
    with pytest.raises(GateEvidenceError, match=re.escape(message)):
        compare(Overlap(table))


def test_interval_narrows_with_more_series():
    """The same per-series noise on 60 series gives a narrower interval than on 6, each around
    its estimate."""
    widths = []
    for n in (6, 60):
        table = overlap(business(n=n, hard=1.0), DAYS - H, weekday_mean, weekday_mean)
        rng = np.random.default_rng(n)
        noise = {f"s{i}": 1.0 + 0.1 * rng.normal() for i in range(n)}
        found = compare(Overlap(pd.DataFrame(scaled(table, "challenger", noise))))
        assert found.interval[0] <= found.difference <= found.interval[1]
        widths.append(found.interval[1] - found.interval[0])
    assert widths[1] < widths[0] / 2


def test_evidence_is_strict_json_and_reads_in_one_line():
    """A champion without error makes the difference infinite: recorded as null, still gated."""
    table = overlap(business(n=4, hard=1.0), DAYS - H, weekday_mean, weekday_mean)
    table["champion"] = [0.0] * len(table["champion"])
    found = compare(Overlap(pd.DataFrame(table)))
    decision = decide(found, None)
    assert not decision.passed
    text = json.dumps(decision.evidence, allow_nan=False)
    assert json.loads(text)["comparison"]["relative_difference"] is None
    assert brief(decision.evidence) == "overlap inf [inf, inf] on 4 series"


def test_worse_than_the_tolerance_but_not_credibly_passes():
    """An estimate of +12 % from five series that disagree (-15 % to +45 %) has an interval
    reaching under 5 %: promoted, and the reason says it was not credible."""
    table = overlap(business(n=5, hard=1.0), DAYS - H, weekday_mean, weekday_mean)
    factors = dict(zip(["s0", "s1", "s2", "s3", "s4"], [1.45, 0.85, 1.3, 0.95, 1.05], strict=True))
    found = compare(Overlap(pd.DataFrame(scaled(table, "challenger", factors))))
    assert found.difference > 0.05 and found.interval[0] < 0.05
    decision = decide(found, None)
    assert decision.passed
    assert decision.reason.endswith(
        "worse, but not credibly beyond the tolerance on this much data"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"confidence": 1.0},
        {"resamples": 0},
        {"tolerance": -0.1},
        {"interval_band": (0.9, 0.6)},
        {"interval_band": (0.5, 1.2)},
    ],
)
def test_impossible_settings_are_refused(bad: dict[str, Any]):
    """A confidence of 100 %, no resamples or a negative tolerance is a ConfigError."""
    with pytest.raises(ConfigError, match="gate"):
        GateSettings(**bad)


def _with_intervals(
    found: dict[str, Any], held: float | None, spl: float = 0.3, points: int | None = 200
) -> dict[str, Any]:
    """``found`` (a run's metrics) with the model's quantile figures as the trainer writes."""
    out = {**found, "protocol": {**found["protocol"], "points": points}}
    ours = {**out["models"]["salesmesh"]}
    if held is not None:
        ours.update(spl=spl, coverage_50=held * 0.6, coverage_80=held)
    out["models"] = {**out["models"], "salesmesh": ours}
    return out


@pytest.mark.parametrize(
    ("held", "spl", "points", "passed", "words"),
    [
        (0.81, 0.3, 200, True, None),
        (0.45, 0.3, 200, False, "too narrow, its 80 % interval held only 45.0%"),
        (0.995, 0.3, 200, False, "too wide, its 80 % interval held 99.5%"),
        (1.0, 0.0, 200, True, None),  # exact forecasts: the interval collapses onto them
        (0.45, 0.3, 12, True, None),  # too few points to judge
        (None, 0.3, 200, True, None),  # an older run, or one origin: nothing to judge
    ],
)
def test_a_challenger_whose_intervals_cannot_be_trusted_is_gated(
    held: float | None, spl: float, points: int, passed: bool, words: str | None
):
    """The 80 % interval must hold 60-98 % of the challenger's backtest actuals; the reason
    says which way it failed, and the evidence keeps the figures either way."""
    sales = business(hard=1.0)
    found = _with_intervals(metrics("r-1", backtest(sales, DAYS, weekday_mean)), held, spl, points)
    decision = judge(found, None)
    assert decision.passed is passed, decision.reason
    assert decision.evidence is not None
    assert decision.evidence["intervals"]["coverage_80"] == held
    if words is not None:
        assert words in decision.reason and "(sane: 60%-98%, on 200 points)" in decision.reason
        assert decision.reason.startswith("no champion yet; ")  # the other rules' verdict first
