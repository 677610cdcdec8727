"""A rollout on the Google Cloud backends, on a clock the test holds (a module, for the tests
and ``bench/rollout.py``).

Everything above the SDKs' generated clients is real: the Vertex AI registry and endpoint
backends, Cloud Monitoring metrics, the Cloud Tasks queue, the ledger's Google Cloud path
(``if_generation_match`` alone) and the step engine. Below them: Vertex AI (``fake_vertex``, whose
deployments take ``deploy_seconds`` on its clock), Cloud Monitoring (``fake_monitoring``), Cloud
Tasks (``fake_tasks``) and Cloud Storage's precondition rules (``fake_gcs``).

:class:`GcpRollouts` delivers the queued step tasks as Cloud Tasks would: each when its schedule
time comes on the fake clock, and again after a back-off when its step died. ``crash`` makes the
n-th call that changes something (a ledger write, a deployment, a traffic change, an alias,
a label, a task) die before or after it took effect, as a killed function instance would.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from fake_gcs import cloud_storage_rules
from fake_monitoring import FakeMonitoring, monitoring
from fake_tasks import FakeCloudTasks
from fake_vertex import LOCATION, PROJECT, FakeVertex, serving
from google.auth.credentials import AnonymousCredentials
from google.cloud.tasks_v2 import CloudTasksClient

from salesmesh.artifact import read_files
from salesmesh.backends.gcp_endpoint import VertexEndpoint
from salesmesh.backends.gcp_metrics import CloudMonitoringMetrics
from salesmesh.backends.gcp_registry import VertexModelRegistry
from salesmesh.backends.gcp_tasks import CloudTasksQueue
from salesmesh.logs import CapturingLogger, capture
from salesmesh.rollout import deploy, record, steps
from salesmesh.rollout.ledger import LedgerStore
from salesmesh.settings import Settings

QUEUE = f"projects/{PROJECT}/locations/{LOCATION}/queues/salesmesh-rollout"
URL = "https://deploy-model-abc123-ez.a.run.app"
INVOKER = "salesmesh-tasks@demo-project.iam.gserviceaccount.com"
IMAGE = "europe-docker.pkg.dev/demo-project/salesmesh/serve:1"
EPOCH = 1_796_000_000.0  # the fake clock's zero, as wall time
RETRY_SECONDS = 10.0  # Cloud Tasks' first retry back-off for a step that died
ACTING = {
    "ledger": ("write",),
    "endpoint": ("start_deploy", "set_traffic", "undeploy"),
    "registry": ("set_alias", "update_labels"),
    "tasks": ("schedule",),
}


class Crash(BaseException):
    """The function instance died here: nothing in salesmesh may catch it."""


@dataclass
class Delivery:
    """One step task as Cloud Tasks holds it: due on the fake clock, and how often it died."""

    name: str
    due: float
    data: dict[str, Any]
    attempts: int = 0


@dataclass
class GcpRollouts:
    """The world of one endpoint on Google Cloud, and a Cloud Tasks that delivers its steps."""

    artifact: Path
    deploy_seconds: float = 900.0
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    step_seconds: list[float] = field(default_factory=list)  # wall time of each delivery
    crashes: int = 0
    calls: int = 0  # acting calls so far
    crash_at: int | None = None  # the acting call that dies
    crash_after: bool = False  # die after the call took effect (else before)
    live_traffic: int = 100  # requests a canary serves per minute (Cloud Monitoring sees them)
    second_calls: int = 0  # acting calls of the second rollout (see second_rollout)

    def __post_init__(self) -> None:
        self.vertex = self.stack.enter_context(
            serving(FakeVertex(deploy_seconds=self.deploy_seconds))
        )
        self.vertex.create_endpoint("salesmesh")
        self.monitoring = self.stack.enter_context(monitoring(FakeMonitoring()))
        self.cloud_tasks = FakeCloudTasks(queues=(QUEUE,))
        create_task = self.stack.enter_context(
            mock.patch.object(CloudTasksClient, "create_task", autospec=True)
        )
        create_task.side_effect = self.cloud_tasks.create_task
        self.stack.enter_context(cloud_storage_rules())
        self.settings = Settings(
            backend="gcp",
            project=PROJECT,
            region=LOCATION,
            serving_image=IMAGE,
            deploy_url=URL,
            tasks_service_account=INVOKER,
        )
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        from google.cloud import storage

        client = storage.Client(project=PROJECT, credentials=credentials)
        self.log: CapturingLogger = capture("deploy_model")
        self.parts: dict[str, Any] = {
            "ledger": LedgerStore(lambda: client, "salesmesh-state", "salesmesh"),
            "registry": VertexModelRegistry(
                PROJECT, LOCATION, "salesmesh-demand", IMAGE, credentials=credentials
            ),
            "endpoint": VertexEndpoint(
                PROJECT, LOCATION, "salesmesh", "salesmesh-demand", credentials=credentials
            ),
            "tasks": CloudTasksQueue(
                PROJECT,
                LOCATION,
                "salesmesh-rollout",
                URL,
                INVOKER,
                client=CloudTasksClient(credentials=credentials),
            ),
        }
        from google.cloud.monitoring_v3 import MetricServiceClient

        self.metrics = CloudMonitoringMetrics(
            PROJECT, LOCATION, "salesmesh", client=MetricServiceClient(credentials=credentials)
        )
        # the delay each step asked for, by task name: the client's schedule_time and the
        # fake's create_time are stamped on the wall clock, whose gap grows under load
        self.delays: dict[str, float] = {}
        tasks = self.parts["tasks"]
        schedule = tasks.schedule

        def recorded(task: Any) -> bool:
            self.delays[f"{tasks.path}/tasks/{task.name}"] = task.delay_seconds
            return bool(schedule(task))

        tasks.schedule = recorded
        for part, names in ACTING.items():
            for name in names:
                real = getattr(self.parts[part], name)
                setattr(self.parts[part], name, self._fallible(real))
        self.delivered: set[str] = set()
        self.queue: list[Delivery] = []

    def close(self) -> None:
        self.stack.close()

    def now(self) -> float:
        return EPOCH + self.vertex.clock.now

    def world(self) -> steps.Rollouts:
        return steps.Rollouts(
            settings=self.settings,
            ledger=self.parts["ledger"],
            registry=self.parts["registry"],
            endpoint=self.parts["endpoint"],
            metrics=self.metrics,
            tasks=self.parts["tasks"],
            log=self.log,
            clock=self.now,
            # the runs' files are read from the folders the fake Vertex AI serves them from,
            # checked against their manifests like any run in Cloud Storage
            read_run=lambda uri, names: read_files(str(self.vertex.artifacts[uri]), names),
        )

    def _fallible(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            dies = self.calls == self.crash_at
            if dies and not self.crash_after:
                raise Crash(f"killed before {real.__name__}")
            result = real(*args, **kwargs)
            if dies:
                raise Crash(f"killed after {real.__name__}")
            return result

        return call

    def ship(self, run_id: str, mase: float) -> None:
        """A finished run registered and queued, and deploy_model kicked as a manifest would."""
        uri = f"gs://salesmesh-models/runs/{run_id}/model"
        self.vertex.artifacts[uri] = self.artifact
        registry = self.parts["registry"]
        metrics = {"protocol": {"horizon": 28}, "models": {"salesmesh": {"mase": mase}}}
        version = registry.register(uri, labels={"salesmesh-run": run_id}, metrics=metrics)
        entry = {
            "version_id": version.version_id,
            "run_id": run_id,
            "correlation_id": f"c-{run_id}",
            "artifact_uri": uri,
            "probe": {"store_id": "S01", "product_id": "P001", "horizon": 7},
        }
        self.parts["ledger"].update(lambda doc: record.queue_version(doc, entry, self.now()))
        self.queue.append(Delivery(f"kick-{run_id}", self.vertex.clock.now, {"kick": True}))

    def run(self, limit: int = 500) -> None:
        """Deliver every step, in due order on the fake clock, until nothing is queued."""
        for _ in range(limit):
            self._collect()
            if not self.queue:
                return
            self.queue.sort(key=lambda d: d.due)
            delivery = self.queue.pop(0)
            self.vertex.clock.advance(max(0.0, delivery.due - self.vertex.clock.now))
            self._serve_canary_traffic()
            started = time.perf_counter()
            try:
                if "kick" in delivery.data:
                    steps.advance(self.world())
                else:
                    deploy.handle_step(delivery.data, self.world())
            except Crash:
                self.crashes += 1
                delivery.attempts += 1
                delivery.due = self.vertex.clock.now + RETRY_SECONDS * delivery.attempts
                self.queue.append(delivery)  # Cloud Tasks (or Eventarc) delivers it again
            finally:
                self.step_seconds.append(time.perf_counter() - started)
        raise AssertionError(f"the rollout did not settle in {limit} deliveries")

    def _collect(self) -> None:
        """Tasks created since the last look, due on the fake clock as Cloud Tasks would."""
        for name, task in self.cloud_tasks.tasks.items():
            if name in self.delivered:
                continue
            self.delivered.add(name)
            delay = self.delays[name]
            data = json.loads(task.http_request.body)
            self.queue.append(Delivery(name, self.vertex.clock.now + max(0.0, delay), data))

    def _serve_canary_traffic(self) -> None:
        """A minute of healthy live traffic for a canary, as Vertex AI would report it."""
        doc = self.parts["ledger"].read().document
        rollout = doc.get("rollout") or {}
        if rollout.get("state") == "canary" and self.live_traffic:
            self.monitoring.write_minute(
                "salesmesh", rollout["deployed_model_id"], [25.0] * self.live_traffic
            )

    def ledger(self) -> dict[str, Any]:
        document: dict[str, Any] = self.parts["ledger"].read().document
        return document

    def split_by_version(self) -> dict[str, int]:
        endpoint = self.parts["endpoint"]
        by_id = {d.id: d.version_id for d in endpoint.deployed()}
        return {by_id[k]: v for k, v in endpoint.traffic().items()}


@contextlib.contextmanager
def second_rollout(
    artifact: Path, deploy_seconds: float, crash_at: int | None = None, after: bool = False
) -> Iterator[GcpRollouts]:
    """Version 1 rolled out cleanly, then version 2 with the function killed at its
    ``crash_at``-th acting call (None: never), before or ``after`` the call took effect."""
    with gcp_rollouts(artifact, deploy_seconds=deploy_seconds) as cloud:
        cloud.ship("r-1", 0.8)
        cloud.run()
        cloud.ship("r-2", 0.7)
        cloud.second_calls = cloud.calls
        if crash_at is not None:
            cloud.crash_at, cloud.crash_after = cloud.calls + crash_at, after
        cloud.run()
        cloud.second_calls = cloud.calls - cloud.second_calls
        yield cloud


@contextlib.contextmanager
def gcp_rollouts(artifact: Path, **options: Any) -> Iterator[GcpRollouts]:
    """A fresh Google Cloud world; every patch is undone afterwards."""
    made = GcpRollouts(artifact, **options)
    try:
        yield made
    finally:
        made.close()
