"""The local mesh: emulators, function servers, event delivery and monitoring, started together.

``with Mesh(settings, root) as mesh:`` starts, on 127.0.0.1 only and in this order, the
in-process Cloud Storage emulator (objects under ``<state_dir>/gcs``, so they survive restarts)
with the data, model and state buckets; the Pub/Sub emulator with the alerts topic, its
subscriptions and dead-letter topic, or the in-process fallback (:mod:`salesmesh.local.
mesh_pubsub`; the JVM starts while the next step runs); the endpoint's router and the
prediction servers of the models deployed when the mesh last stopped (the endpoint's record
survives restarts too); one functions-framework server per wired function that exists as
``<root>/functions/<name>/main.py``; the storage delivery loop, which also delivers the delayed
tasks queued in the state bucket (first those left from the last run); the Pub/Sub delivery
(:mod:`salesmesh.local.pubsub_delivery`); and the local monitor, which publishes incidents to
the alerts topic (:mod:`salesmesh.local.monitoring`). ``stop()`` undoes it in reverse, and
stops training jobs and prediction servers that functions started, and the emulator's java:
Ctrl-C leaves no process behind.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from salesmesh import wiring
from salesmesh.errors import DeployError
from salesmesh.local.delivery import Delivery
from salesmesh.local.emulator import StorageEmulator
from salesmesh.local.functions import FunctionServer, function_env
from salesmesh.local.mesh_pubsub import MeshPubSub
from salesmesh.local.monitoring import MonitorLoop
from salesmesh.local.processes import free_port
from salesmesh.local.pubsub_delivery import PubSubDelivery
from salesmesh.local.router import RouterProcess
from salesmesh.settings import Settings
from salesmesh.wiring import BUCKET_ROLES, Trigger

log = logging.getLogger(__name__)


class Mesh:
    """Everything ``salesmesh up`` runs, as one context manager."""

    def __init__(
        self,
        settings: Settings,
        root: Path,
        *,
        triggers: list[Trigger] | None = None,
        storage_port: int = 0,
        delivery_timeout: float = 60.0,
        pubsub_emulator: bool | None = None,
    ) -> None:
        """``root`` holds ``functions/``; ``triggers`` defaults to the packaged wiring.

        ``pubsub_emulator`` None runs the official Pub/Sub emulator when the machine has it,
        False the in-process fallback whatever it has.
        """
        self.settings = settings
        self.root = Path(root)
        self.triggers = wiring.load() if triggers is None else triggers
        self.state_dir = Path(settings.state_dir).resolve()
        self.emulator = StorageEmulator(self.state_dir / "gcs", port=storage_port)
        self.servers: dict[str, FunctionServer] = {}
        self.skipped: dict[str, str] = {}  # function -> why it is not served
        self.delivery: Delivery | None = None
        self.pubsub = MeshPubSub(
            settings,
            self.triggers,
            self.state_dir / "logs",
            timeout=delivery_timeout,
            emulator=pubsub_emulator,
        )
        self.pubsub_delivery: PubSubDelivery | None = None
        self.monitor: MonitorLoop | None = None
        self._pubsub_starting: threading.Thread | None = None
        self._pubsub_failed: list[BaseException] = []
        self.router: RouterProcess | None = None
        self.restored: list[str] = []  # deployed models whose servers start() brought back
        self.restore_failures = ""  # why some deployed models are not serving, if any
        self._delivery_timeout = delivery_timeout

    def start(self) -> Mesh:
        """Start emulator, buckets, function servers and delivery; on failure stop what ran."""
        try:
            self.emulator.start()
            self.emulator.ensure_buckets(self.settings.bucket(r) for r in BUCKET_ROLES)
            self._start_pubsub()
            self._start_endpoint()
            self._await_pubsub()
            self._start_functions()
            urls = {name: server.url for name, server in self.servers.items()}
            self.delivery = Delivery(
                self.settings,
                self.triggers,
                urls,
                self.emulator.events,
                timeout=self._delivery_timeout,
                storage=self.storage_client(),  # delayed tasks live in the state bucket
            )
            self.delivery.start()
            self.pubsub_delivery = PubSubDelivery(
                self.pubsub.routes,
                urls,
                self.delivery.attempts,  # one record of every POST, whichever the trigger
                self.pubsub.dead_letters,
                self.delivery.dead_letters_path,
                timeout=self._delivery_timeout,
                pull_timeout=self.pubsub.pull_timeout,
                interrupt=self.pubsub.interrupt,
            )
            self.pubsub_delivery.start()
            self.monitor = MonitorLoop(self.settings, self.pubsub.topic("alerts"))
            self.monitor.start()
            self._resume_rollout()
        except BaseException:
            self.stop()
            raise
        return self

    def _resume_rollout(self) -> None:
        """Queue one step for a rollout the mesh's last run left in progress.

        A step that died with the mesh (or with its function) before it scheduled the next one
        leaves a rollout that nothing drives; a step for the ledger's current sequence takes it
        on from where the ledger says it is. A rollout that has its next step queued already
        loses nothing: a step that finds the ledger moved on does nothing.
        """
        from salesmesh import runtime
        from salesmesh.backends.local_tasks import LocalTaskQueue
        from salesmesh.ports import Task
        from salesmesh.rollout.steps import FUNCTION, STEP_EVENT

        if FUNCTION not in self.servers:
            return
        doc = runtime.ledger(self.settings, client=self.storage_client).read().document
        if doc["rollout"] is None and not doc["queue"]:
            return
        seq = int(doc["seq"])
        data = {"endpoint": doc["endpoint"], "seq": seq}
        queue = LocalTaskQueue(
            self.settings.state_bucket,
            lock_dir=self.state_dir / "locks",
            client=self.storage_client(),
        )
        queue.schedule(Task(f"resume-{doc['id']}-{seq}", FUNCTION, STEP_EVENT, data))
        log.info("resuming the rollout left in progress (ledger sequence %d)", seq)

    def _start_pubsub(self) -> None:
        """Start Pub/Sub in a thread: the emulator's JVM takes seconds, the router meanwhile."""
        failed: list[BaseException] = []

        def start() -> None:
            try:
                self.pubsub.start()
            except BaseException as exc:  # handed to _await_pubsub, raised there
                failed.append(exc)

        self._pubsub_failed = failed
        self._pubsub_starting = threading.Thread(target=start, name="pubsub-start", daemon=True)
        self._pubsub_starting.start()

    def _await_pubsub(self) -> None:
        if self._pubsub_starting is not None:
            self._pubsub_starting.join()
            self._pubsub_starting = None
        if self._pubsub_failed:
            raise self._pubsub_failed[0]
        log.info("pubsub: %s", self.pubsub.summary())

    def _start_endpoint(self) -> None:
        self.router = RouterProcess(self.state_dir, self.settings.endpoint)
        self.router.start()
        try:
            self.restored = self._endpoint().restore()
        except DeployError as exc:
            # the mesh still starts: the other models serve, and this says which did not
            self.restore_failures = str(exc)
            log.error("%s", exc)
        for deployed in self.restored:
            log.info("restarted the prediction server of deployed model %s", deployed)

    def _endpoint(self) -> Any:
        from salesmesh.backends.local_endpoint import LocalEndpoint

        env = {**os.environ, **function_env(self.settings, self.emulator.host)}
        return LocalEndpoint(self.state_dir, self.settings.endpoint, env=env)

    def _start_functions(self) -> None:
        env = {**function_env(self.settings, self.emulator.host), **self.pubsub.env()}
        logs = self.state_dir / "logs" / "functions"
        for trigger in self.triggers:
            source = self.root / "functions" / trigger.function / "main.py"
            if not source.exists():
                self.skipped[trigger.function] = f"{source} does not exist yet"
            if trigger.function in self.skipped:
                log.warning("not serving %s: %s", trigger.function, self.skipped[trigger.function])
                continue
            server = FunctionServer(
                trigger.function,
                trigger.entry_point,
                source,
                free_port(),
                env,
                logs / f"{trigger.function}.log",
            )
            self.servers[trigger.function] = server  # registered first, so stop() finds it
            server.start()

    def stop(self) -> None:
        """Stop monitor, deliveries, function servers, training jobs still running, Pub/Sub,
        then the storage emulator.

        A training job outliving the mesh would only fail against a vanished emulator, and
        Ctrl-C must leave no process behind.
        """
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self.pubsub_delivery is not None:
            self.pubsub_delivery.stop()
            self.pubsub_delivery = None
        if self.delivery is not None:
            self.delivery.stop()
            self.delivery = None
        for server in reversed(list(self.servers.values())):
            server.stop()
        self.servers.clear()
        if self.router is not None:
            self.router.stop()
            self.router = None
            for deployed in self._endpoint().stop_servers():
                log.info("stopped the prediction server of deployed model %s", deployed)
        if self.settings.backend == "local":
            from salesmesh.backends.local import LocalTrainingLauncher

            for run_id in LocalTrainingLauncher(self.state_dir).stop_unfinished():
                log.warning("stopped training run %s with the mesh", run_id)
        if self._pubsub_starting is not None:  # start() failed before it was awaited
            self._pubsub_starting.join()
            self._pubsub_starting = None
        self.pubsub.stop()
        self.emulator.stop()

    def url(self, function: str) -> str:
        """The URL the named function's server listens on."""
        if function not in self.servers:
            why = self.skipped.get(function, "not wired")
            raise KeyError(f"function {function!r} is not served: {why}")
        return self.servers[function].url

    def storage_client(self) -> Any:
        """A google-cloud-storage client for the mesh's emulator."""
        return self.emulator.client(self.settings.project)

    def __enter__(self) -> Mesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
