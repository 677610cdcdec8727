"""Cloud Monitoring's incident notification, schema 1.2: parsing, building, refusing.

Fixtures beside this module:

- ``incident_test.json``: the test notification Google documents for webhook and Pub/Sub
  channels (cloud.google.com/monitoring/support/notification-options, "Schema for webhooks"),
  copied as the target/goalert project quotes it in its GKE alert integration; it is what the
  console's "send test notification" publishes.
- ``incident_1_2.json``: a 1.2 notification for Vertex AI's latency metric, written by hand in
  the shape real Cloud Monitoring Pub/Sub notifications have (sorted keys, ``ended_at`` null
  while open, ``documentation`` an object, strings for ``observed_value``/``threshold_value``,
  ``severity``), with invented project and ids. Google's own 1.2 example page could not be
  read from this machine; the field names match the documented list in the issue and DESIGN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from salesmesh.alerts import incident
from salesmesh.alerts.incident import BadIncidentError, Incident, State
from salesmesh.alerts.policies import load
from salesmesh.errors import BadEventError

HERE = Path(__file__).parent


def _fixture(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((HERE / name).read_text())
    return document


def _opened() -> Incident:
    return Incident(
        incident_id="ep-1.prediction-latency-p99.1000000002.1764590400123",
        state=State.OPEN,
        started_at=1764590400,
        policy_name="salesmesh: prediction p99 latency above 500 ms",
        condition_name="salesmesh: prediction p99 latency above 500 ms",
        summary="Prediction latencies for endpoint ep-1 ... is above the threshold",
        threshold_value=500.0,
        observed_value=812.447,
        endpoint_id="ep-1",
        deployed_model_id="1000000002",
    )


def test_a_documented_style_1_2_notification_parses_to_endpoint_and_model():
    """The 1.2 fixture gives the incident id, state, times, figures, endpoint and model."""
    parsed = incident.parse(json.dumps(_fixture("incident_1_2.json")).encode())
    assert parsed == Incident(
        incident_id="0.nrx3k2m9pq1a",
        state=State.OPEN,
        started_at=1764590400,
        ended_at=None,
        policy_name="salesmesh: prediction p99 latency above 500 ms",
        condition_name="Vertex AI Endpoint - Prediction latencies",
        summary=_fixture("incident_1_2.json")["incident"]["summary"],
        threshold_value=500.0,
        observed_value=812.447,
        endpoint_id="4567890123456789012",
        deployed_model_id="1234567890123456789",
        version="1.2",
    )
    assert not parsed.is_test
    assert parsed.raw["incident"]["severity"] == "No severity"


def test_googles_test_notification_parses_as_a_test():
    """The documented "version": "test" payload parses: OPEN is open, ended_at 0 is not ended."""
    parsed = incident.parse(_fixture("incident_test.json"))
    assert parsed.is_test
    assert (parsed.incident_id, parsed.state, parsed.ended_at) == ("12345", State.OPEN, None)
    assert (parsed.threshold_value, parsed.observed_value) == (0.5, 1.0)
    assert (parsed.endpoint_id, parsed.deployed_model_id) == (None, None)


def test_a_closed_incident_with_prose_for_its_value_parses():
    """Closed with ended_at set; an observed_value that is prose is None, not an error."""
    document = _fixture("incident_1_2.json")
    document["incident"].update(
        state="closed",
        ended_at=1764590700,
        observed_value="Incident cancelled because the alert policy condition was deleted.",
    )
    parsed = incident.parse(json.dumps(document))
    assert (parsed.state, parsed.ended_at, parsed.observed_value) == (
        State.CLOSED,
        1764590700,
        None,
    )


@pytest.mark.parametrize("state", [State.OPEN, State.CLOSED])
def test_to_payload_round_trips_through_parse(state: State):
    """parse(to_payload(i)) == i for an open and a closed incident, and the JSON is 1.2."""
    policy = next(p for p in load() if p.name == "prediction-latency-p99")
    made = _opened()
    if state is State.CLOSED:
        made = Incident(**{**made.__dict__, "state": State.CLOSED, "ended_at": 1764590700})
    payload = incident.to_payload(made, policy, project_id="demo-project", location="europe-west1")
    assert incident.parse(payload) == made
    body = json.loads(payload)
    assert body["version"] == "1.2"
    assert body["incident"]["resource"] == {
        "type": "aiplatform.googleapis.com/Endpoint",
        "labels": {
            "endpoint_id": "ep-1",
            "location": "europe-west1",
            "resource_container": "demo-project",
        },
    }
    assert body["incident"]["metric"]["labels"] == {"deployed_model_id": "1000000002"}
    assert body["incident"]["condition"]["conditionThreshold"]["thresholdValue"] == 500.0
    assert (body["incident"]["observed_value"], body["incident"]["threshold_value"]) == (
        "812.447",
        "500",
    )


def test_to_payload_writes_every_field_of_the_documented_schema():
    """Every key of the documented 1.2 incident is present in what the monitor publishes."""
    policy = next(p for p in load() if p.name == "prediction-latency-p99")
    published = json.loads(incident.to_payload(_opened(), policy))["incident"]
    documented = set(_fixture("incident_test.json")["incident"]) - {"scoping_project_number"}
    assert documented <= set(published)


def _without(path: str) -> dict[str, Any]:
    document = _fixture("incident_1_2.json")
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    del target[last]
    return document


def _with(path: str, value: Any) -> dict[str, Any]:
    document = _fixture("incident_1_2.json")
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    target[last] = value
    return document


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        (b"{not json", "not_json", "not JSON"),
        (b"\xff\xfe", "not_json", "not JSON"),
        ("[1, 2]", "not_object", "must be an object, got list"),
        (_with("version", "1.1"), "wrong_version", "got '1.1'"),
        (_without("version"), "wrong_version", "got None"),
        (_without("incident"), "missing_field", "has no incident"),
        (_with("incident", "open"), "ill_typed_field", "incident must be an object"),
        (_without("incident.incident_id"), "missing_field", "incident.incident_id"),
        (_with("incident.incident_id", ""), "bad_value", "incident.incident_id must not be empty"),
        (
            _with("incident.incident_id", 7),
            "ill_typed_field",
            "incident.incident_id must be a string",
        ),
        (_with("incident.state", "acknowledged"), "bad_value", "'acknowledged'"),
        (_without("incident.state"), "missing_field", "incident.state"),
        (_without("incident.started_at"), "missing_field", "incident.started_at"),
        (_with("incident.started_at", "2026-12-01"), "ill_typed_field", "incident.started_at"),
        (_with("incident.ended_at", True), "ill_typed_field", "incident.ended_at"),
        (_without("incident.policy_name"), "missing_field", "incident.policy_name"),
        (_without("incident.condition_name"), "missing_field", "incident.condition_name"),
        (_without("incident.summary"), "missing_field", "incident.summary"),
        (_with("incident.observed_value", 812.4), "ill_typed_field", "incident.observed_value"),
        (_with("incident.threshold_value", 500), "ill_typed_field", "incident.threshold_value"),
        (_without("incident.resource"), "missing_field", "incident.resource"),
        (_without("incident.resource.type"), "missing_field", "incident.resource.type"),
        (_with("incident.resource.labels", ["x"]), "ill_typed_field", "incident.resource.labels"),
        (_without("incident.metric"), "missing_field", "incident.metric"),
        (
            _with("incident.metric.labels", {"deployed_model_id": 1}),
            "ill_typed_field",
            "incident.metric.labels",
        ),
    ],
)
def test_every_malformed_kind_is_refused_with_its_reason(payload: Any, reason: str, message: str):
    """Each malformed notification is a BadIncidentError (a BadEventError) with reason and field."""
    with pytest.raises(BadIncidentError) as caught:
        incident.parse(payload)
    assert caught.value.reason == reason
    assert message in str(caught.value)
    assert isinstance(caught.value, BadEventError)
