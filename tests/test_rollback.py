"""Rollbacks as ledger transitions, through alert_handler's code on the real local backends:
incidents about the champion, a canary, other endpoints, duplicates, a cool-down, no previous
version, malformed messages (see tests/rollout_world.py for the world)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from cloudevents.http import CloudEvent
from rollout_world import World, live
from run_folders import variant

from salesmesh import cli, status
from salesmesh.alerts import handler, policies
from salesmesh.alerts.incident import Incident, State, to_payload
from salesmesh.ports import CHAMPION, PREVIOUS
from salesmesh.rollout import deploy, history, rollback

LATENCY = policies.load()[0]


def incident(model: str | None, state: State = State.OPEN, **overrides: Any) -> Incident:
    """An incident of the latency policy about ``model`` on the world's endpoint."""
    fields: dict[str, Any] = {
        "incident_id": f"0.{model}.latency",
        "state": state,
        "started_at": 1_790_000_000,
        "ended_at": None if state is State.OPEN else 1_790_000_300,
        "policy_name": LATENCY.display_name,
        "condition_name": LATENCY.display_name,
        "summary": f"p99 of {model} is above 500 ms",
        "threshold_value": 500.0,
        "observed_value": 812.0,
        "endpoint_id": "salesmesh",
        "deployed_model_id": model,
    }
    return Incident(**{**fields, **overrides})


def event(data: bytes | str | None = None, raw: Any = None) -> CloudEvent:
    """The messagePublished event Eventarc delivers for one Pub/Sub message."""
    body = raw
    if raw is None:
        payload = data.encode() if isinstance(data, str) else data or b""
        body = {
            "message": {
                "data": base64.b64encode(payload).decode(),
                "attributes": {},
                "messageId": "42",
                "publishTime": datetime.now(UTC).isoformat(),
            },
            "subscription": "projects/local/subscriptions/salesmesh-alerts-alert-handler",
        }
    attributes = {
        "id": "42",
        "source": "//pubsub.googleapis.com/projects/local/topics/salesmesh-alerts",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
    }
    return CloudEvent(attributes, body)


def deliver(world: World, found: Incident) -> str:
    """alert_handler's handling of ``found``, published as Cloud Monitoring would."""
    return handler.handle_event(event(to_payload(found, LATENCY)), world.rollouts())


def two_versions(world: World, model_artifact: Path, tmp_path: Path) -> tuple[str, str]:
    """Version 1 then a better version 2, promoted through a canary: (model 1, model 2)."""
    world.ship(model_artifact, "r-one")
    with mock.patch.object(world.metrics, "window", autospec=True, side_effect=live(50)):
        world.ship(variant(model_artifact, tmp_path / "b", 0.8), "r-two")
    first, second = (d.id for d in world.endpoint.deployed())
    assert world.endpoint.traffic() == {first: 0, second: 100}
    return first, second


def test_an_incident_about_the_champion_rolls_back_once(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """The previous version takes 100 %, aliases move, the bad version is rolled_back and
    undeployed, the ledger says who and why; the same incident 20 times changes nothing more,
    its close is recorded without moving traffic, and its open delivered after its close is
    stale."""
    first, second = two_versions(world, model_artifact, tmp_path)
    found = incident(second)
    outcomes = [deliver(world, found) for _ in range(20)]
    assert outcomes == ["rolled_back"] + ["duplicate"] * 19
    assert world.endpoint.traffic() == {first: 100}  # version 2 undeployed
    assert world.version_of("r-two")["state"] == "rolled_back"
    assert world.version_of("r-one")["state"] == "deployed"
    champion = world.registry.alias(CHAMPION)
    assert champion is not None and champion.version_id == "1"
    assert world.registry.alias(PREVIOUS) is None  # nothing left to return to
    assert world.registry.get("2").labels["salesmesh-deploy"] == "rolled_back"  # type: ignore[union-attr]
    doc = world.ledger.read().document
    assert len(doc["rollbacks"]) == 1
    (made,) = doc["rollbacks"]
    assert (made["who"], made["incident"], made["from_version"], made["to_version"]) == (
        "alert_handler",
        found.incident_id,
        "2",
        "1",
    )
    last = doc["history"][-1]
    assert (last["to"], last["who"], last["incident"]) == (
        {"1": 100, "2": 0},
        "alert_handler",
        found.incident_id,
    )
    assert doc["incidents"][found.incident_id]["action"] == "rolled_back"
    warnings = world.log.messages("WARNING")
    assert any(m.startswith(f"incident {found.incident_id} open") for m in warnings)

    closed = dataclasses.replace(found, state=State.CLOSED, ended_at=1_790_000_300)
    assert deliver(world, closed) == "unchanged"
    assert deliver(world, closed) == "duplicate"
    assert deliver(world, found) == "duplicate"  # its open again, after the close: stale
    recorded = world.ledger.read().document["incidents"][found.incident_id]
    assert (recorded["state"], recorded["action"]) == ("closed", "rolled_back")
    assert world.endpoint.traffic() == {first: 100}
    assert any("incident" in r and r["severity"] == "INFO" for r in world.log.records)
    doc = world.ledger.read().document
    told = history.render(history.gather(doc))
    assert "incident closed (version 2) -> rolled_back  p99 of" in told
    assert "traffic {v1: 0%, v2: 100%} -> {v1: 100%, v2: 0%} by alert_handler" in told
    shown = status.render(
        {
            "runs": [],
            "quarantine": [],
            "dead_letters": [],
            "notes": [],
            "incidents": status.incidents(doc),
        }
    )
    assert f"{found.incident_id}  closed  version 2  rolled_back: rolled back from" in shown


def test_cool_down_then_no_previous_version(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """Right after a rollback a new incident does not roll back again (cool-down); without the
    cool-down there is no previous version left, which is an ERROR and no change."""
    first, second = two_versions(world, model_artifact, tmp_path)
    assert deliver(world, incident(second)) == "rolled_back"
    world.settings = dataclasses.replace(world.settings, rollback_cooldown=600)
    assert deliver(world, incident(first, incident_id="again")) == "unchanged"
    assert "cool-down" in world.log.messages("INFO")[-1]
    world.settings = dataclasses.replace(world.settings, rollback_cooldown=0)
    assert deliver(world, incident(first, incident_id="third")) == "refused"
    assert "no previous version to roll back to" in world.log.messages("ERROR")[-1]
    assert world.endpoint.traffic() == {first: 100}


def test_an_incident_about_the_canary_aborts_the_rollout(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """During a canary, an incident about the newcomer aborts its rollout: the old champion
    is back at 100 %, the newcomer rolled_back and undeployed, and the rollout's later steps
    change nothing."""
    world.ship(model_artifact, "r-one")
    (first,) = (d.id for d in world.endpoint.deployed())
    world.settings = dataclasses.replace(world.settings, canary_seconds=30)
    world.deliver(world.publish(variant(model_artifact, tmp_path / "b", 0.8), "r-two"))
    for _ in range(200):
        rollout = world.ledger.read().document["rollout"]
        if rollout["state"] == "canary":
            break
        task = world.pending()[0]
        world.state.blob(task["blob"]).delete()
        deploy.handle_step(task["data"], world.rollouts())
    canary = rollout["deployed_model_id"]
    assert world.endpoint.traffic() == {first: 90, canary: 10}
    assert deliver(world, incident(canary)) == "aborted"
    assert world.endpoint.traffic() == {first: 100}
    doc = world.ledger.read().document
    assert doc["rollout"] is None
    assert doc["rollouts"][-1]["state"] == "aborted"
    assert world.version_of("r-two")["state"] == "rolled_back"
    champion = world.registry.alias(CHAMPION)
    assert champion is not None and champion.version_id == "1"
    world.settings = dataclasses.replace(world.settings, canary_seconds=0)
    world.drain()  # the canary's own step, due later: stale now
    assert world.endpoint.traffic() == {first: 100}
    assert world.version_of("r-two")["state"] == "rolled_back"


@pytest.mark.parametrize(
    ("found", "why"),
    [
        (incident("m-x", endpoint_id="other"), "about endpoint 'other'"),
        (incident(None), "names no deployed model"),
        (incident("m-gone"), "no longer on the endpoint"),
    ],
)
def test_incidents_that_concern_no_serving_model_change_nothing(
    world: World, model_artifact: Path, found: Incident, why: str
) -> None:
    """Another endpoint, no model named, a model no longer deployed: logged, no change."""
    world.ship(model_artifact, "r-one")
    before = world.endpoint.traffic()
    assert deliver(world, found) == "unchanged"
    assert why in world.log.messages("INFO")[-1]
    assert world.endpoint.traffic() == before


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (event(raw={"nothing": 1}), 'needs a "message" object'),
        (event(raw={"message": {"data": "%%%"}}), "not base64"),
        (event(b"{not json"), "not JSON"),
        (event(json.dumps({"version": "1.1", "incident": {}})), 'must be "1.2"'),
    ],
)
def test_malformed_messages_are_logged_and_acknowledged(
    world: World, message: CloudEvent, why: str
) -> None:
    """A malformed message is an ERROR with the reason, and returns (no redelivery)."""
    assert handler.handle_event(message, world.rollouts()) == "malformed"
    (error,) = world.log.messages("ERROR")
    assert why in error


def test_a_test_notification_is_logged_only(world: World) -> None:
    """The console's test notification is logged at WARNING and changes nothing."""
    sample = (Path(__file__).parent / "alerts" / "incident_test.json").read_text()
    assert handler.handle_event(event(sample), world.rollouts()) == "unchanged"
    assert "test notification" in world.log.messages("INFO")[-1]
    assert world.ledger.read().generation == 0  # nothing written


def test_salesmesh_rollback_by_hand(
    world: World,
    model_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`salesmesh rollback`: --to an undeployed version is refused (exit 1, why on stderr);
    without --to the previous version takes all traffic back under the person's name; then
    nothing is left to return to (exit 1)."""
    first, _ = two_versions(world, model_artifact, tmp_path)
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(world.state_dir))
    monkeypatch.setenv("SALESMESH_STATE_BUCKET", world.state.name)
    assert cli.main(["rollback", "--to", "7"]) == 1
    assert "version 7 is not deployed on the endpoint" in capsys.readouterr().err
    assert cli.main(["rollback", "--reason", "drill", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["action"], printed["from_version"], printed["to_version"]) == (
        "rolled_back",
        "2",
        "1",
    )
    assert world.endpoint.traffic() == {first: 100}
    last = world.ledger.read().document["history"][-1]
    assert last["who"].startswith("salesmesh rollback (") and last["why"].endswith("drill")
    assert cli.main(["rollback"]) == 1
    assert "no previous version" in capsys.readouterr().err
    logged = (world.state_dir / "logs" / "mesh.jsonl").read_text()
    assert "rolled back from version 2 to 1: drill" in logged


def test_a_rollout_aborted_while_deploying_leaves_no_model_behind(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """A rollback while the newcomer is still deploying aborts its rollout; the model that
    arrives afterwards is undeployed by a later step, not left at 0 % for good."""
    world.ship(model_artifact, "r-one")
    (first,) = (d.id for d in world.endpoint.deployed())
    world.deliver(world.publish(variant(model_artifact, tmp_path / "b", 0.8), "r-two"))
    assert world.ledger.read().document["rollout"]["state"] == "deploying"
    done = rollback.rollback(world.rollouts(), rollback.Request("tester", "drill"))
    assert done.action == "aborted"
    assert world.ledger.read().document["sweep"][0]["version_id"] == "2"
    outcomes = world.drain()
    assert "sweeping" in outcomes
    assert any("its rollout was aborted before it arrived" in m for m in world.log.messages())
    assert [d.id for d in world.endpoint.deployed()] == [first]
    assert world.endpoint.traffic() == {first: 100}
    doc = world.ledger.read().document
    assert doc["sweep"] == [] and doc["versions"]["2"]["state"] == "rolled_back"


def test_a_live_accuracy_incident_is_logged_and_rolls_nothing_back(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """What salesmesh.accuracy publishes for a degraded champion: alert_handler parses it,
    logs it whole and leaves the traffic where it is, saying what to do instead."""
    from salesmesh.accuracy import Live
    from salesmesh.accuracy.live import incident

    two_versions(world, model_artifact, tmp_path)
    split = world.endpoint.traffic()
    live = Live(420, 15, "2024-10-29", "2024-11-25", 1.224, 41.0, -3.0, 0.882)
    payload = json.dumps(incident(world.settings, "2", live))
    assert handler.handle_event(event(payload), world.rollouts()) == "unchanged"
    assert world.endpoint.traffic() == split
    warning = world.log.messages("WARNING")[-1]
    assert "Live MASE of version 2 is 1.224 over 420 points" in warning
    assert "nothing rolled back" in world.log.messages("INFO")[-1]
