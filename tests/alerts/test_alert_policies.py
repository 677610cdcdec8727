"""Alert policies: the packaged file, its validation, and scaling for demos and tests."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from salesmesh.alerts import policies
from salesmesh.alerts.policies import Kind, PolicyError

LATENCY, ERRORS = "prediction-latency-p99", "prediction-error-rate"


def _packaged() -> dict[str, Any]:
    text = resources.files("salesmesh.alerts").joinpath("policies.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def _mutated(name: str, **changes: Any) -> str:
    """The packaged file with ``changes`` applied to policy ``name`` (None deletes a key)."""
    document = _packaged()
    entry = next(p for p in document["policies"] if p["name"] == name)
    for key, value in changes.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    return json.dumps(document)


def test_packaged_policies_are_the_documented_latency_and_error_rate_policies():
    """The shipped file holds p99 latency > 500 ms for 60 s over 60 s, and a 5xx-rate policy."""
    loaded = {p.name: p for p in policies.load()}
    assert sorted(loaded) == sorted([LATENCY, ERRORS])
    latency = loaded[LATENCY]
    assert latency.kind is Kind.LATENCY_P99
    assert latency.metric_type == "aiplatform.googleapis.com/prediction/online/prediction_latencies"
    assert (latency.aligner, latency.alignment_period_seconds) == ("ALIGN_PERCENTILE_99", 60.0)
    assert (latency.threshold_value, latency.duration_seconds) == (500.0, 60.0)
    rate = loaded[ERRORS]
    assert rate.kind is Kind.ERROR_RATE
    assert rate.denominator_filter is not None and "prediction_count" in rate.denominator_filter
    assert 0 < rate.threshold_value < 1


def test_condition_renders_cloud_monitorings_threshold_condition():
    """A policy's condition is the API's camelCase shape with durations as '60s'."""
    latency = next(p for p in policies.load() if p.name == LATENCY)
    condition = latency.condition("demo-project")["conditionThreshold"]
    assert condition["aggregations"][0]["alignmentPeriod"] == "60s"
    assert condition["aggregations"][0]["perSeriesAligner"] == "ALIGN_PERCENTILE_99"
    assert (condition["duration"], condition["thresholdValue"]) == ("60s", 500.0)
    assert "denominatorFilter" not in condition


def test_scale_divides_windows_and_durations_but_not_thresholds():
    """load(scale=30) runs the one-minute latency policy in 2 s windows, same 500 ms threshold."""
    fast = {p.name: p for p in policies.load(scale=30)}[LATENCY]
    assert (fast.window_seconds, fast.duration_seconds) == (2.0, 2.0)
    assert (fast.threshold_value, fast.scale) == (500.0, 30.0)
    assert fast.condition("p")["conditionThreshold"]["duration"] == "2s"


@pytest.mark.parametrize("scale", [0, -2, "fast"])
def test_a_scale_that_is_not_positive_is_refused(scale: Any):
    """A zero, negative or non-numeric scale is a PolicyError naming the scale."""
    with pytest.raises(PolicyError, match="scale must be a positive number"):
        policies.load(scale=scale)


@pytest.mark.parametrize(
    ("name", "changes", "message"),
    [
        (LATENCY, {"threshold_value": "500"}, "'threshold_value' must be a number"),
        (LATENCY, {"duration_seconds": None}, "'duration_seconds' must be a number"),
        (
            LATENCY,
            {"alignment_period_seconds": 30},
            "'alignment_period_seconds' must be a number >= 60",
        ),
        (LATENCY, {"aligner": "ALIGN_MEAN"}, "'aligner' 'ALIGN_MEAN' is not one of"),
        (LATENCY, {"kind": "cpu"}, "'kind' 'cpu' is not one of"),
        (LATENCY, {"comparison": "COMPARISON_LT"}, "'comparison' 'COMPARISON_LT'"),
        (LATENCY, {"filter": 'metric.type = "x"'}, "'filter' must contain"),
        (LATENCY, {"denominator_filter": "x"}, "belongs to error_rate policies only"),
        (LATENCY, {"min_requests": 0}, "'min_requests' must be an integer >= 1"),
        (LATENCY, {"display_name": ""}, "'display_name' must be a non-empty string"),
        (ERRORS, {"denominator_filter": None}, "'denominator_filter' must be a non-empty"),
        (ERRORS, {"threshold_value": 5}, "fraction below 1"),
        (ERRORS, {"group_by": "metric.label.deployed_model_id"}, "'group_by' must be a list"),
    ],
)
def test_a_mutated_policy_fails_naming_the_policy_and_field(
    name: str, changes: dict[str, Any], message: str
):
    """Each malformed field is a PolicyError that names its policy and the field."""
    with pytest.raises(PolicyError, match=f"policy '{name}'") as caught:
        policies.load(_mutated(name, **changes))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"version": 2, "policies": []}), '"version": 1'),
        (json.dumps({"version": 1, "policies": []}), 'non-empty "policies"'),
        (json.dumps({"version": 1, "policies": ["x"]}), "policy #1 is not an object"),
        (json.dumps({"version": 1, "policies": [{"name": "Bad Name"}]}), "must match"),
    ],
)
def test_a_malformed_file_is_refused_with_the_reason(text: str, message: str):
    """Not JSON, a wrong version, no policies or an unnamed entry: a PolicyError saying so."""
    with pytest.raises(PolicyError, match=message):
        policies.load(text)


def test_a_policy_named_twice_is_refused():
    """Two policies of one name would share incident ids: refused, naming the name."""
    document = _packaged()
    document["policies"].append(dict(document["policies"][0]))
    with pytest.raises(PolicyError, match=f"policies named twice: \\['{LATENCY}'\\]"):
        policies.load(json.dumps(document))
