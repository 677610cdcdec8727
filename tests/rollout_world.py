"""The rollout's world on the real local backends, for tests that drive deploy_model's steps:
registry and ledger in an emulated bucket, step tasks in the local queue, an endpoint of real
prediction-server processes. Steps are delivered by :meth:`World.drain`, in due order, as the
mesh's delivery loop would."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from run_folders import upload_folder

from salesmesh.artifact import MANIFEST
from salesmesh.backends.local_endpoint import LocalEndpoint
from salesmesh.backends.local_metrics import LocalMetrics
from salesmesh.backends.local_registry import LocalModelRegistry
from salesmesh.backends.local_tasks import LocalTaskQueue
from salesmesh.events import StorageObject
from salesmesh.locks import file_lock
from salesmesh.logs import CapturingLogger, capture
from salesmesh.ports import ModelMetrics
from salesmesh.rollout import deploy, steps
from salesmesh.rollout.ledger import LedgerStore
from salesmesh.settings import Settings


class World:
    """A model bucket, the state bucket's registry, ledger and task queue, an endpoint, and a
    way to publish runs into them and deliver the rollout's step tasks."""

    def __init__(self, bucket: Any, state: Any, state_dir: Path, emulator: str) -> None:
        self.bucket, self.state, self.state_dir = bucket, state, state_dir
        self.settings = Settings(
            state_dir=state_dir, state_bucket=state.name, canary_seconds=0, keep_deployed=2
        )
        self.registry = LocalModelRegistry(state.name, lock_dir=state_dir / "locks")
        env = {"STORAGE_EMULATOR_HOST": emulator, "GOOGLE_CLOUD_PROJECT": "salesmesh-test"}
        self.endpoint = LocalEndpoint(state_dir, env={**os.environ, **env})
        self.log: CapturingLogger = capture("deploy_model")
        guard = lambda: file_lock(state_dir / "locks" / "ledger.lock")  # noqa: E731
        self.ledger = LedgerStore(lambda: bucket.client, state.name, "salesmesh", guard=guard)
        self.tasks = LocalTaskQueue(state.name, lock_dir=state_dir / "locks", client=bucket.client)
        self.metrics = LocalMetrics(state_dir, "salesmesh")
        self.delivered: list[str] = []

    def rollouts(self) -> steps.Rollouts:
        return steps.Rollouts(
            settings=self.settings,
            ledger=self.ledger,
            registry=self.registry,
            endpoint=self.endpoint,
            metrics=self.metrics,
            tasks=self.tasks,
            log=self.log,
        )

    def publish(self, folder: Path, run_id: str) -> StorageObject:
        upload_folder(self.bucket.client, folder, f"gs://{self.bucket.name}/runs/{run_id}")
        blob = self.bucket.get_blob(f"runs/{run_id}/{MANIFEST}")
        return StorageObject(self.bucket.name, blob.name, str(blob.generation))

    def deliver(self, obj: StorageObject) -> deploy.Deployment:
        return deploy.handle_manifest(obj, self.rollouts())

    def pending(self) -> list[dict[str, Any]]:
        """The step tasks queued in the state bucket, soonest first."""
        blobs = self.state.client.list_blobs(self.state.name, prefix="tasks/deploy_model/")
        tasks = [json.loads(blob.download_as_bytes()) | {"blob": blob.name} for blob in blobs]
        return sorted(tasks, key=lambda task: task["due"])

    def drain(self, limit: int = 200) -> list[str]:
        """Deliver step tasks, each when due, until none is left; what each step did."""
        from datetime import datetime

        outcomes: list[str] = []
        for _ in range(limit):
            queued = self.pending()
            if not queued:
                return outcomes
            task = queued[0]
            due = datetime.fromisoformat(task["due"].replace("Z", "+00:00")).timestamp()
            time.sleep(max(0.0, due - time.time()))
            self.state.blob(task["blob"]).delete()
            outcomes.append(deploy.handle_step(task["data"], self.rollouts()))
        raise AssertionError(f"the rollout did not settle in {limit} steps: {outcomes[-10:]}")

    def ship(self, folder: Path, run_id: str) -> dict[str, Any]:
        """Publish, deliver, drain: the run's version as the ledger has it in the end."""
        self.deliver(self.publish(folder, run_id))
        self.drain()
        return self.version_of(run_id)

    def version_of(self, run_id: str) -> dict[str, Any]:
        doc = self.ledger.read().document
        found: dict[str, Any] = doc["versions"][doc["runs"][run_id]]
        return found

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


def live(requests: int, errors: int = 0, p99_ms: float | None = 20.0) -> Any:
    """A stand-in for the canary's live metrics (the router is not running in these tests)."""
    return lambda model, seconds: ModelMetrics(model, seconds, requests, errors, p99_ms)
