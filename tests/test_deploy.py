"""deploy_model's logic on the real local backends: registry in an emulated bucket, endpoint of
real prediction-server processes. Each deployment starts a server (seconds), so every test
deploys only what its claim needs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from run_folders import upload_folder

from salesmesh.artifact import MANIFEST, write_manifest
from salesmesh.backends.local_endpoint import LocalEndpoint
from salesmesh.backends.local_registry import LocalModelRegistry
from salesmesh.events import StorageObject
from salesmesh.locks import file_lock
from salesmesh.logs import CapturingLogger, capture
from salesmesh.ports import CHAMPION, PREVIOUS, Health
from salesmesh.rollout import deploy
from salesmesh.settings import Settings


class World:
    """A model bucket, a registry and an endpoint, and a way to publish runs into them."""

    def __init__(self, bucket: Any, state: Any, state_dir: Path, emulator: str) -> None:
        self.bucket, self.state_dir = bucket, state_dir
        self.settings = Settings(
            state_dir=state_dir, state_bucket=state.name, canary_seconds=0, keep_deployed=2
        )
        self.registry = LocalModelRegistry(state.name, lock_dir=state_dir / "locks")
        env = {"STORAGE_EMULATOR_HOST": emulator, "GOOGLE_CLOUD_PROJECT": "salesmesh-test"}
        self.endpoint = LocalEndpoint(state_dir, env={**os.environ, **env})
        self.log: CapturingLogger = capture("deploy_model")

    def publish(self, folder: Path, run_id: str) -> StorageObject:
        upload_folder(self.bucket.client, folder, f"gs://{self.bucket.name}/runs/{run_id}")
        blob = self.bucket.get_blob(f"runs/{run_id}/{MANIFEST}")
        return StorageObject(self.bucket.name, blob.name, str(blob.generation))

    def deliver(self, obj: StorageObject) -> deploy.Deployment:
        lock = lambda: file_lock(self.state_dir / "locks" / "deploy.lock")  # noqa: E731
        return deploy.handle_manifest(
            obj, self.settings, self.registry, self.endpoint, lock, self.log, sleep=lambda _: None
        )

    def split_by_version(self) -> dict[str, int]:
        by_id = {d.id: d.version_id for d in self.endpoint.deployed()}
        return {by_id[k]: v for k, v in self.endpoint.traffic().items()}


@pytest.fixture
def world(bucket: Any, state_dir: Path, emulator_host: str) -> Iterator[World]:
    state = bucket.client.create_bucket(bucket.name.replace("b-", "s-", 1))
    made = World(bucket, state, state_dir, emulator_host)
    try:
        yield made
    finally:
        made.endpoint.stop_servers()


def variant(artifact: Path, target: Path, mase: float) -> Path:
    """A copy of a run whose backtest says the model scored ``mase``, manifest rewritten."""
    shutil.copytree(artifact, target)
    metrics = json.loads((target / "metrics.json").read_text())
    metrics["models"]["salesmesh"]["mase"] = mase
    (target / "metrics.json").write_text(json.dumps(metrics))
    extra = json.loads((target / MANIFEST).read_text())
    (target / MANIFEST).unlink()
    write_manifest(target, {k: extra[k] for k in ("data", "model", "metrics")})
    return target


def test_first_run_takes_all_traffic_and_a_redelivery_changes_nothing(
    world: World, model_artifact: Path
) -> None:
    """The first run becomes champion at 100 %; delivering its manifest again is a no-op."""
    manifest = world.publish(model_artifact, "r-first")
    outcome = world.deliver(manifest)
    assert outcome.action == "deployed", outcome.reason
    assert outcome.version is not None
    champion = world.registry.alias(CHAMPION)
    assert champion is not None and champion.version_id == outcome.version.version_id
    assert champion.labels["salesmesh-run"] == "r-first"
    assert champion.labels["salesmesh-deploy"] == "deployed"
    assert champion.metrics["protocol"]["horizon"] == 28
    assert world.endpoint.traffic() == {outcome.deployed_model_id: 100}

    again = world.deliver(manifest)
    assert (again.action, again.reason) == ("duplicate", "already deployed")
    assert len(world.registry.versions()) == 1
    assert len(world.endpoint.deployed()) == 1


def test_worse_run_is_registered_but_gated(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """A challenger worse than the champion beyond tolerance is registered, not deployed."""
    good = variant(model_artifact, tmp_path / "good", 0.50)
    assert world.deliver(world.publish(good, "r-good")).action == "deployed"
    outcome = world.deliver(world.publish(model_artifact, "r-worse"))
    assert outcome.action == "gated"
    assert "worse than the champion's 0.5000" in outcome.reason
    assert outcome.version is not None
    assert outcome.version.labels["salesmesh-run"] == "r-worse"
    gated = world.registry.get(outcome.version.version_id)
    assert gated is not None and gated.labels["salesmesh-deploy"] == "gated"
    assert [d.version_id for d in world.endpoint.deployed()] == ["1"]
    assert any("gated, not deployed" in m for m in world.log.messages("WARNING"))


def test_better_run_canaries_then_promotes_and_old_ones_retire(
    world: World, model_artifact: Path, tmp_path: Path
) -> None:
    """Canary share first, then 100 %; the old champion stays at 0 %, older ones go."""
    world.settings = dataclasses.replace(world.settings, canary_percent=25)
    assert world.deliver(world.publish(model_artifact, "r-one")).action == "deployed"
    seen: list[dict[str, int]] = []
    real = world.endpoint.set_traffic
    with mock.patch.object(world.endpoint, "set_traffic", autospec=True) as spy:
        spy.side_effect = lambda split: (seen.append(dict(split)), real(split))[1]
        second = world.deliver(
            world.publish(variant(model_artifact, tmp_path / "b", 0.80), "r-two")
        )
    assert second.action == "deployed", second.reason
    first_id = world.endpoint.deployed()[0].id
    assert seen == [{first_id: 75, second.deployed_model_id: 25}, {second.deployed_model_id: 100}]
    assert world.split_by_version() == {"1": 0, "2": 100}
    assert [(v.version_id, v.aliases) for v in world.registry.versions()] == [
        ("1", (PREVIOUS,)),
        ("2", (CHAMPION,)),
    ]

    third = world.deliver(world.publish(variant(model_artifact, tmp_path / "c", 0.79), "r-three"))
    assert third.action == "deployed"
    assert world.split_by_version() == {"2": 0, "3": 100}  # version 1 retired: keep 2


def test_failed_health_check_leaves_the_split_untouched(
    world: World, model_artifact: Path, broken_artifact: Path, tmp_path: Path
) -> None:
    """A run whose server never becomes healthy is labelled failed; traffic stays put."""
    first = world.deliver(world.publish(model_artifact, "r-one"))
    broken = variant(broken_artifact, tmp_path / "broken", 0.10)  # would win the gate
    outcome = world.deliver(world.publish(broken, "r-broken"))
    assert outcome.action == "failed"
    assert "deployment failed" in outcome.reason
    assert world.endpoint.traffic() == {first.deployed_model_id: 100}
    version = world.registry.find({"salesmesh-run": "r-broken"})[0]
    assert version.labels["salesmesh-deploy"] == "failed" and version.aliases == ()
    assert world.deliver(world.publish(broken, "r-broken")).action == "duplicate"


@pytest.mark.parametrize(
    ("live", "why"),
    [
        (Health(True, requests=200, errors=30), "30 of 200 live requests failed"),
        (Health(True, requests=200, p99_ms=900.0), "live p99 latency 900 ms is over 500 ms"),
    ],
)
def test_canary_failing_live_traffic_is_rolled_back(
    world: World, model_artifact: Path, tmp_path: Path, live: Health, why: str
) -> None:
    """If the canary's live requests fail or are slow, the split returns to what it was."""
    first = world.deliver(world.publish(model_artifact, "r-one"))
    checks = iter([Health(True), live])
    with mock.patch.object(world.endpoint, "health", autospec=True) as health:
        health.side_effect = lambda *_: next(checks)
        outcome = world.deliver(world.publish(variant(model_artifact, tmp_path / "b", 0.7), "r-2"))
    assert outcome.action == "failed"
    assert why in outcome.reason
    assert world.endpoint.traffic() == {first.deployed_model_id: 100}
    assert [d.id for d in world.endpoint.deployed()] == [first.deployed_model_id]


def test_tampered_artifact_is_refused_before_registration(
    world: World, model_artifact: Path
) -> None:
    """A file that does not match its manifest: nothing registered, ERROR logged."""
    manifest = world.publish(model_artifact, "r-tampered")
    world.bucket.blob("runs/r-tampered/series.csv").upload_from_string("series_id\nX\n")
    outcome = world.deliver(manifest)
    assert outcome.action == "rejected"
    assert "series.csv" in outcome.reason and "sha256" in outcome.reason
    assert world.registry.versions() == []
    assert any("refusing to deploy run r-tampered" in m for m in world.log.messages("ERROR"))


@pytest.mark.parametrize(
    "name",
    ["runs/r-1/model.lgb.txt", "uploads/x.csv", "runs/Bad Id/manifest.json", "manifest.json"],
)
def test_other_objects_are_ignored(world: World, name: str) -> None:
    """Only a run's manifest starts a deployment; everything else is ignored, cheaply."""
    outcome = world.deliver(StorageObject(world.bucket.name, name, "1"))
    assert outcome.action == "ignored"
    assert world.registry.versions() == []


def test_vertex_layout_is_recognised() -> None:
    """Vertex AI nests the artifact in model/: the run id is still the folder under runs/."""
    assert deploy.run_of("runs/r-1/model/manifest.json") == ("r-1", "runs/r-1/model/")
    assert deploy.run_of("runs/r-1/manifest.json") == ("r-1", "runs/r-1/")


def test_concurrent_deliveries_deploy_once(world: World, model_artifact: Path) -> None:
    """Five simultaneous deliveries of one manifest: one deployment, four duplicates."""
    manifest = world.publish(model_artifact, "r-once")
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(world.deliver(manifest).action))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["deployed"] + ["duplicate"] * 4
    assert len(world.registry.versions()) == 1 and len(world.endpoint.deployed()) == 1


def test_a_deployment_still_under_way_is_not_started_twice(
    world: World, model_artifact: Path
) -> None:
    """A redelivery finding a recent 'deploying' version raises (retry later); a stale one is
    redone."""
    import time

    manifest = world.publish(model_artifact, "r-slow")
    version = world.registry.register(
        f"gs://{world.bucket.name}/runs/r-slow",
        labels={"salesmesh-run": "r-slow", "salesmesh-deploy": "pending"},
        metrics={},
    )
    recent = str(int(time.time()) - 60)
    world.registry.update_labels(
        version.version_id,
        {"salesmesh-deploy": "deploying", "salesmesh-deploy-started": recent},
    )
    with pytest.raises(deploy.DeployInProgressError, match="deploying for 6"):
        world.deliver(manifest)
    assert world.endpoint.deployed() == []
    stale = str(int(time.time() - deploy.DEPLOY_GRACE_SECONDS - 60))
    world.registry.update_labels(version.version_id, {"salesmesh-deploy-started": stale})
    outcome = world.deliver(manifest)
    assert outcome.action == "deployed" and outcome.version is not None
    assert outcome.version.version_id == version.version_id
    assert len(world.registry.versions()) == 1
