"""What a function needs at run time, built from :class:`Settings` at the edge.

Kept out of the handlers so each ``main.py`` stays a shell: settings in, backend picked by name,
logs where the backend reads them (stdout for Cloud Logging; also a file under the state folder
locally, which ``salesmesh logs`` reads).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from salesmesh import backends
from salesmesh.backends import training_launcher
from salesmesh.errors import BadEventError, ConfigError
from salesmesh.events import StorageObject
from salesmesh.logs import Logger
from salesmesh.ports import (
    Endpoint,
    Metrics,
    ModelRegistry,
    TaskQueue,
    TrainingLauncher,
)

if TYPE_CHECKING:
    from salesmesh.rollout.ledger import LedgerStore
    from salesmesh.rollout.steps import Rollouts
from salesmesh.settings import ENV_VARS, Settings

LOG_FILE = "mesh.jsonl"


def launcher(settings: Settings) -> TrainingLauncher:
    """The training launcher of ``settings.backend``."""
    if settings.backend == "local":
        return training_launcher("local", state_dir=settings.state_dir)
    if not settings.training_image:
        raise ConfigError(
            "SALESMESH_TRAINING_IMAGE is not set: the gcp backend needs the training container's "
            "image URI (e.g. europe-west1-docker.pkg.dev/PROJECT/salesmesh/train:TAG)"
        )
    from salesmesh.backends.gcp_claims import GcsClaims
    from salesmesh.data.source import storage_client

    return training_launcher(
        "gcp",
        project=settings.project,
        location=settings.region,
        staging_bucket=f"gs://{settings.state_bucket}",
        container_uri=settings.training_image,
        service_account=settings.service_account,
        # two deliveries of one upload at the same instant must not submit two jobs
        claims=GcsClaims(storage_client(), settings.state_bucket),
        # the job's container does not inherit the function's environment
        env={ENV_VARS["regressors"]: ",".join(settings.regressors)}
        if settings.regressors
        else None,
    )


def registry(settings: Settings) -> ModelRegistry:
    """The model registry of ``settings.backend``: the state bucket locally, Vertex AI on gcp."""
    if settings.backend == "local":
        return backends.model_registry(
            "local",
            bucket=settings.state_bucket,
            model=settings.model_name,
            lock_dir=settings.state_dir / "locks",
        )
    return backends.model_registry(
        "gcp",
        project=settings.project,
        location=settings.region,
        model_name=settings.model_name,
        # only registering needs it: reading versions works without
        serving_image=settings.serving_image or "",
    )


def endpoint(settings: Settings) -> Endpoint:
    """The endpoint of ``settings.backend``: local router and servers, or Vertex AI."""
    if settings.backend == "local":
        return backends.endpoint("local", state_dir=settings.state_dir, name=settings.endpoint)
    return backends.endpoint(
        "gcp",
        project=settings.project,
        location=settings.region,
        endpoint=settings.endpoint,
        model_name=settings.model_name,
        service_account=settings.serving_service_account or settings.service_account,
    )


def task_queue(settings: Settings) -> TaskQueue:
    """Delayed deliveries of ``settings.backend``: the state bucket that the local mesh
    delivers from, or Cloud Tasks (which needs SALESMESH_DEPLOY_URL and
    SALESMESH_TASKS_SERVICE_ACCOUNT once a task is scheduled, not before)."""
    if settings.backend == "local":
        return backends.task_queue(
            "local", bucket=settings.state_bucket, lock_dir=settings.state_dir / "locks"
        )
    return backends.task_queue(
        "gcp",
        project=settings.project,
        location=settings.region,
        queue=settings.tasks_queue,
        url=settings.deploy_url,
        service_account=settings.tasks_service_account,
    )


def metrics(settings: Settings) -> Metrics:
    """Live per-model metrics: the local router's, or Cloud Monitoring's on gcp."""
    if settings.backend == "local":
        return backends.metrics("local", state_dir=settings.state_dir, endpoint=settings.endpoint)
    return backends.metrics(
        "gcp", project=settings.project, location=settings.region, endpoint_id=settings.endpoint_id
    )


def ledger(settings: Settings, client: Callable[[], Any] | None = None) -> LedgerStore:
    """The endpoint's rollout ledger in the state bucket (:mod:`salesmesh.rollout.ledger`);
    ``client`` makes the storage client (default: the environment's)."""
    from salesmesh.data.source import storage_client
    from salesmesh.rollout.ledger import LedgerStore

    name = settings.endpoint_id  # whatever form SALESMESH_ENDPOINT took
    guard: Callable[[], AbstractContextManager[None]] | None = None
    if settings.backend == "local":  # the emulator ignores preconditions: serialise here
        from salesmesh import locks

        guard = partial(locks.file_lock, settings.state_dir / "locks" / f"ledger-{name}.lock")
    return LedgerStore(client or storage_client, settings.state_bucket, name, guard=guard)


def rollouts(settings: Settings, log: Logger) -> Rollouts:
    """What a rollout step reads and acts on, for ``settings.backend``."""
    from salesmesh.rollout.steps import Rollouts

    return Rollouts(
        settings=settings,
        ledger=ledger(settings),
        registry=registry(settings),
        endpoint=endpoint(settings),
        metrics=metrics(settings),
        tasks=task_queue(settings),
        log=log,
    )


def storage_object(event: Any, log: Logger) -> StorageObject | None:
    """The object a storage CloudEvent announces, or None (logged whole, at ERROR) if the event
    is malformed: redelivering it cannot fix it, so the handler returns instead of raising."""
    try:
        return StorageObject.from_cloud_event(event)
    except BadEventError as exc:
        log.error(
            f"malformed event {event['id']}: {exc}", event_type=event["type"], data=event.data
        )
        return None


def logger(component: str, settings: Settings) -> Logger:
    """Structured logs to stdout, and locally to ``<state_dir>/logs/mesh.jsonl`` too."""
    path = settings.state_dir / "logs" / LOG_FILE if settings.backend == "local" else None
    return Logger(component, path=path)


MESH_FILE = "mesh.json"


def write_mesh_file(settings: Settings, description: dict[str, Any]) -> Path:
    """Record where the running mesh listens, so other commands in other shells find it."""
    path = settings.state_dir / MESH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(description, indent=2) + "\n")
    staging.replace(path)
    return path


def use_running_mesh(settings: Settings) -> str | None:
    """Point this process's storage client at the running local mesh, if there is one.

    ``STORAGE_EMULATOR_HOST`` set by the caller wins; otherwise the mesh file written by
    ``salesmesh up`` names the emulator. Returns the emulator host in use, or None.
    """
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return os.environ["STORAGE_EMULATOR_HOST"]
    path = settings.state_dir / MESH_FILE
    try:
        host = json.loads(path.read_text())["storage_emulator_host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    os.environ["STORAGE_EMULATOR_HOST"] = str(host)
    return str(host)
