"""A rollout on the Google Cloud backends: a 15-minute Vertex AI deployment on a fake clock,
carried by short steps only, judged on Cloud Monitoring's live figures, and converging after a
crash at any of its acting calls (see ``gcp_rollout``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gcp_rollout import GcpRollouts, gcp_rollouts, second_rollout


@pytest.fixture
def cloud(model_artifact: Path) -> Iterator[GcpRollouts]:
    with gcp_rollouts(model_artifact, deploy_seconds=900.0) as made:
        yield made


def _promoted(cloud: GcpRollouts, version: str, previous: str | None) -> None:
    """``version`` serves alone at 100 %, once; ``previous`` waits at 0 %; the ledger agrees."""
    doc = cloud.ledger()
    assert doc["rollout"] is None and doc["queue"] == []
    assert doc["versions"][version]["state"] == "deployed", doc["versions"]
    expected = {version: 100} if previous is None else {previous: 0, version: 100}
    assert cloud.split_by_version() == expected
    assert doc["history"][-1]["to"] == expected
    registry = cloud.parts["registry"]
    champion = registry.alias("champion")
    assert champion is not None and champion.version_id == version
    if previous is not None:
        standby = registry.alias("previous")
        assert standby is not None and standby.version_id == previous


def test_a_fifteen_minute_deployment_is_carried_by_short_steps(cloud: GcpRollouts) -> None:
    """Deploying takes 900 s of Vertex AI time: the steps poll it every 30 s, then the canary is
    judged on Cloud Monitoring's live traffic and promoted."""
    cloud.ship("r-1", 0.8)
    cloud.run()
    _promoted(cloud, "1", None)
    first = cloud.ledger()["rollouts"][0]
    assert first["polls"] >= 900 / 30 - 1, first["polls"]  # one step per look, none waiting

    cloud.ship("r-2", 0.7)
    cloud.run()
    _promoted(cloud, "2", "1")
    second = cloud.ledger()["rollouts"][1]
    states = [t["state"] for t in second["transitions"]]
    assert states == ["registered", "deploying", "canary", "promoting", "done"], states
    promoting = second["transitions"][3]["reason"]
    assert promoting.startswith("healthy after") and "live request" in promoting, promoting
    assert cloud.crashes == 0


# Crashes are injected into rollouts whose deployment takes two polls: the crash paths do not
# depend on how many polls a deployment takes, and bench/rollout.py crashes a 15-minute one.
CRASH_DEPLOY_SECONDS = 60.0


def test_a_crash_at_any_acting_call_still_promotes_once(model_artifact: Path) -> None:
    """Kill the function before, and after, each call that changes something in a second
    rollout: every time the new version ends promoted once, with the old one at 0 %."""
    with second_rollout(model_artifact, CRASH_DEPLOY_SECONDS) as clean:
        calls = clean.second_calls
    assert calls >= 10, calls
    for k in range(1, calls + 1):
        for after in (False, True):
            with second_rollout(model_artifact, CRASH_DEPLOY_SECONDS, k, after) as cloud:
                where = f"crash {'after' if after else 'before'} acting call {k} of {calls}"
                assert cloud.crashes == 1, where
                try:
                    _promoted(cloud, "2", "1")
                except AssertionError as exc:
                    raise AssertionError(f"{where}: {exc}") from exc
                models = cloud.parts["endpoint"].deployed()
                assert sorted(d.version_id for d in models) == ["1", "2"], where


def test_an_incident_rolls_back_on_vertex_ai(model_artifact: Path) -> None:
    """On the Google Cloud backends, alert_handler's path puts version 1 back at 100 % on the
    Vertex AI endpoint (version 2 undeployed), moves the aliases, and ignores a redelivery."""
    from salesmesh.alerts import handler, policies
    from salesmesh.alerts.incident import Incident, State

    with second_rollout(model_artifact, CRASH_DEPLOY_SECONDS) as cloud:
        bad = {d.version_id: d.id for d in cloud.parts["endpoint"].deployed()}["2"]
        latency = policies.load()[0]
        found = Incident(
            incident_id="0.abc",
            state=State.OPEN,
            started_at=int(cloud.now()),
            policy_name=latency.display_name,
            condition_name=latency.display_name,
            summary="p99 above 500 ms",
            endpoint_id=cloud.settings.endpoint_id,
            deployed_model_id=bad,
        )
        first = handler.handle_incident(found, cloud.world())
        again = handler.handle_incident(found, cloud.world())
        assert (first.action, again.action) == ("rolled_back", "duplicate")
        assert cloud.split_by_version() == {"1": 100}
        champion = cloud.parts["registry"].alias("champion")
        assert champion is not None and champion.version_id == "1"
        doc = cloud.ledger()
        assert doc["versions"]["2"]["state"] == "rolled_back"
        assert doc["history"][-1]["who"] == "alert_handler"
        cloud.run()  # whatever step was still queued finds the ledger moved on
        assert cloud.split_by_version() == {"1": 100}
