"""Trigger wiring: the packaged file, its validation, retry backoff and event routing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from salesmesh import wiring


def _document(**changes: Any) -> str:
    trigger = {
        "function": "train_trigger",
        "entry_point": "train_trigger",
        "event_type": wiring.STORAGE_FINALIZED,
        "bucket": "data",
        "retry": {"max_attempts": 3, "initial_backoff_seconds": 0.5, "max_backoff_seconds": 4},
    }
    trigger.update(changes)
    return json.dumps({"version": 1, "triggers": [trigger]})


def test_packaged_wiring_names_the_three_functions():
    """The shipped triggers.json wires each function to its documented source."""
    triggers = {t.function: t for t in wiring.load()}
    assert sorted(triggers) == ["alert_handler", "deploy_model", "train_trigger"]
    assert (triggers["train_trigger"].event_type, triggers["train_trigger"].source_role) == (
        wiring.STORAGE_FINALIZED,
        "data",
    )
    assert triggers["deploy_model"].source_role == "model"
    assert (triggers["alert_handler"].event_type, triggers["alert_handler"].source_role) == (
        wiring.PUBSUB_PUBLISHED,
        "alerts",
    )


def test_backoff_doubles_up_to_the_ceiling():
    """Attempt n waits initial x 2^(n-1) seconds, never more than the maximum."""
    retry = wiring.load(_document())[0].retry
    assert [retry.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_events_route_only_to_their_subscribers():
    """A finalize in the model bucket goes to deploy_model alone."""
    triggers = wiring.load()
    routed = wiring.subscribers(triggers, wiring.STORAGE_FINALIZED, "model")
    assert [t.function for t in routed] == ["deploy_model"]
    assert wiring.subscribers(triggers, wiring.STORAGE_FINALIZED, "state") == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        (json.dumps({"version": 2, "triggers": []}), '"version": 1'),
        (json.dumps({"version": 1, "triggers": []}), "non-empty"),
        (_document(event_type="google.cloud.storage.object.v1.deleted"), "event_type"),
        (_document(bucket="models"), "bucket 'models'"),
        (_document(function=""), "'function' must be a non-empty string"),
        (
            _document(
                retry={"max_attempts": 0, "initial_backoff_seconds": 1, "max_backoff_seconds": 2}
            ),
            "max_attempts",
        ),
        (
            _document(
                retry={"max_attempts": 2, "initial_backoff_seconds": 3, "max_backoff_seconds": 2}
            ),
            "below",
        ),
        (_document(retry="fast"), '"retry" must be an object'),
    ],
)
def test_malformed_wiring_is_refused_with_the_field_named(text, fragment):
    """Each malformed file raises WiringError saying which field is wrong."""
    with pytest.raises(wiring.WiringError, match=fragment.replace("(", r"\(")):
        wiring.load(text)


def test_a_function_wired_twice_is_refused():
    """Two triggers for one function are ambiguous and refused."""
    document = json.loads(_document())
    document["triggers"] *= 2
    with pytest.raises(wiring.WiringError, match="wired twice"):
        wiring.load(json.dumps(document))
