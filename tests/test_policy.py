"""The promotion policy on plain data: gate, canary split, canary verdict, retirement."""

from __future__ import annotations

from typing import Any

import pytest

from salesmesh.ports import DeployedModel, Health
from salesmesh.rollout.policy import canary_ok, canary_split, gate, retire, summary

PROTOCOL = {"horizon": 28, "freq": "D", "season_length": 7, "origins": 3}


def metrics(mase: float, naive: float = 1.2, **protocol: Any) -> dict[str, Any]:
    return {
        "protocol": {**PROTOCOL, **protocol},
        "models": {"salesmesh": {"mase": mase}, "seasonal_naive": {"mase": naive}},
    }


def test_summary_drops_the_per_step_breakdown_and_counts_origins():
    """A version carries protocol and overall figures; origins become a count."""
    raw = {
        "protocol": {**PROTOCOL, "origins": ["2025-10-08", "2025-11-05"]},
        "models": {"salesmesh": {"mase": 0.9, "by_horizon": [1, 2]}},
        "relative_mase": {"vs_ets": 0.97},
    }
    assert summary(raw) == {
        "protocol": {**PROTOCOL, "origins": 2},
        "models": {"salesmesh": {"mase": 0.9}},
    }


def test_first_version_passes_when_it_beats_its_baseline():
    """With no champion, a model better than seasonal naive is promoted."""
    decision = gate(metrics(0.9), None, 0.05)
    assert decision.passed
    assert "no champion" in decision.reason


def test_model_worse_than_seasonal_naive_is_gated_even_first():
    """Losing to the seasonal-naive baseline beyond tolerance blocks promotion."""
    decision = gate(metrics(1.4, naive=1.2), None, 0.05)
    assert not decision.passed
    assert "seasonal-naive" in decision.reason and "1.4000" in decision.reason
    assert not gate(metrics(1.4, naive=1.2), metrics(1.5), 0.05).passed


@pytest.mark.parametrize(
    ("challenger", "passed"), [(0.80, True), (0.90, True), (0.944, True), (0.946, False)]
)
def test_champion_comparison_uses_the_tolerance(challenger: float, passed: bool):
    """Up to 5 % worse than the champion's 0.90 passes; beyond it is gated."""
    decision = gate(metrics(challenger), metrics(0.90), 0.05)
    assert decision.passed is passed
    assert (decision.challenger_mase, decision.champion_mase) == (challenger, 0.90)


def test_gated_reason_names_both_figures_and_the_gap():
    """The logged reason says how much worse and what the tolerance was."""
    decision = gate(metrics(1.0), metrics(0.8), 0.05)
    assert not decision.passed
    assert "1.0000" in decision.reason and "0.8000" in decision.reason
    assert "25.0%" in decision.reason and "5%" in decision.reason


def test_different_protocols_fall_back_to_the_baseline_rule():
    """A champion backtested with another horizon is not compared; the reason says why."""
    decision = gate(metrics(1.0), metrics(0.5, horizon=14), 0.05)
    assert decision.passed
    assert "horizon 28 vs 14" in decision.reason
    assert not gate(metrics(1.4, naive=1.2), metrics(0.5, horizon=14), 0.05).passed


def test_champion_rule_is_reported_before_the_baseline_rule():
    """A challenger failing both rules is told it lost to the champion."""
    decision = gate(metrics(1.3, naive=1.2), metrics(0.9), 0.05)
    assert not decision.passed
    assert "champion's 0.9000" in decision.reason


@pytest.mark.parametrize("bad", [{}, {"models": {}}, metrics(float("nan")), metrics(float("inf"))])
def test_challenger_without_a_finite_mase_is_gated(bad: dict[str, Any]):
    """Missing or non-finite metrics never pass."""
    assert not gate(bad, metrics(0.9), 0.05).passed


def test_canary_split_scales_the_current_models():
    """The canary takes its share; the others keep theirs, scaled to the rest."""
    assert canary_split({"a": 100, "b": 0, "new": 0}, "new", 10) == {"a": 90, "b": 0, "new": 10}
    assert canary_split({"a": 50, "b": 50}, "new", 10) == {"a": 45, "b": 45, "new": 10}


def test_canary_verdict():
    """A failing probe, or live errors over 1 %, stop the rollout; a quiet canary passes."""
    assert canary_ok(Health(True, requests=0))[0]
    assert canary_ok(Health(True, requests=1000, errors=10))[0]
    ok, reason = canary_ok(Health(True, requests=100, errors=2))
    assert not ok and "2 of 100" in reason
    ok, reason = canary_ok(Health(False, "health route answered 500"))
    assert not ok and reason == "health route answered 500"


def test_canary_over_the_latency_line_is_not_promoted():
    """A canary whose live p99 is over 500 ms fails; at the line, or unmeasured, it passes."""
    ok, reason = canary_ok(Health(True, requests=50, p99_ms=812.4))
    assert not ok and reason == "live p99 latency 812 ms is over 500 ms"
    assert canary_ok(Health(True, requests=50, p99_ms=500.0))[0]
    assert canary_ok(Health(True, requests=50, p99_ms=None))[0]


def deployed(*ids: str) -> list[DeployedModel]:
    return [DeployedModel(id=i, version_id=i, created="2026-11-28T00:00:00.000Z") for i in ids]


def test_retire_keeps_champion_standby_then_newest():
    """With keep=2 only the champion and its standby stay; others at 0 % go, oldest first."""
    models = deployed("1", "2", "3", "4")
    split = {"1": 0, "2": 0, "3": 0, "4": 100}
    assert retire(models, split, 2, ["4", "2"]) == ["1", "3"]
    assert retire(models, split, 3, ["4", "2"]) == ["1"]
    assert retire(models, split, 1, ["4", "2"]) == ["1", "2", "3"]


def test_retire_never_takes_a_model_with_traffic():
    """A model still taking traffic is kept whatever the count."""
    models = deployed("1", "2", "3")
    assert retire(models, {"1": 10, "2": 0, "3": 90}, 1, ["3"]) == ["2"]
