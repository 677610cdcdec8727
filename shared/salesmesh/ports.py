"""Ports: the small interfaces the mesh talks to, each with a local and a Google Cloud backend.

Domain code and function handlers depend on these Protocols only; backends are picked by name
in :mod:`salesmesh.backends`, so local mode never imports a cloud SDK it does not use.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

# A run id names a local folder and is a Vertex AI label value, so it obeys the stricter of the
# two: lowercase letters, digits, '-' and '_', at most 63 characters.
RUN_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class RunState(StrEnum):
    """Where a training run is; the values are what `salesmesh status --json` prints."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """True once the run can no longer change state."""
        return self in (RunState.SUCCEEDED, RunState.FAILED)


@dataclass(frozen=True)
class TrainingRequest:
    """One training run to start: the same ``run_id`` always means the same run.

    ``output_uri`` is where the caller wants the run's output; the backend reports where the
    artifact lands in :attr:`TrainingRun.output_uri` (Vertex AI nests it one level down).
    """

    run_id: str
    data_uri: str
    output_uri: str
    horizon: int
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not RUN_ID.fullmatch(self.run_id):
            msg = f"run_id {self.run_id!r} must match {RUN_ID.pattern} (a folder and a label)"
            raise ValueError(msg)
        if self.horizon < 1:
            raise ValueError(f"horizon must be positive, got {self.horizon}")


@dataclass(frozen=True)
class TrainingRun:
    """A launched training run as its backend sees it now.

    ``output_uri`` is the folder the job writes its artifact to (its ``AIP_MODEL_DIR``), so
    ``<output_uri>/manifest.json`` appears when the run succeeds. ``log`` is where the job's
    output can be read, ``backend_id`` the Vertex AI job resource name or the local pid.
    """

    run_id: str
    state: RunState
    data_uri: str
    output_uri: str
    created: str
    exit_code: int | None = None
    log: str | None = None
    backend_id: str | None = None


class TrainingLauncher(Protocol):
    """Starts training jobs and reports on them; every backend passes one contract suite."""

    def launch(self, request: TrainingRequest) -> TrainingRun:
        """Start the run, or return the existing one if ``request.run_id`` was launched before.

        Idempotent even when two processes launch the same run id at the same moment.
        """
        ...

    def get(self, run_id: str) -> TrainingRun | None:
        """The run with this id, or None if it was never launched."""
        ...

    def list(self) -> builtins.list[TrainingRun]:
        """Every run this launcher knows, oldest first."""
        ...


def rfc3339(moment: datetime | None = None) -> str:
    """``2026-11-03T10:15:42.123Z``: UTC, millisecond precision, the form Cloud APIs print."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- model registry -------------------------------------------------------------------------

CHAMPION = "champion"  # the version serving (or about to serve) all traffic
PREVIOUS = "previous"  # the champion before it: the warm standby a rollback returns to
# Vertex AI alias rule: 2-128 lowercase letters, digits and '-', starting with a letter and
# ending with a letter or digit; "default" is reserved for the model's default version.
ALIAS = re.compile(r"[a-z][a-z0-9-]{0,126}[a-z0-9]")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of the mesh's model.

    ``version_id`` is the registry's own id (Vertex AI numbers versions "1", "2", ...),
    ``artifact_uri`` the run folder holding ``manifest.json``. ``labels`` carry the lineage
    (run id, correlation id, source data) as label-safe strings; ``metrics`` is the run's
    backtest summary: ``{"protocol": {...}, "models": {"salesmesh": {"mase": ...}, ...}}``.
    """

    version_id: str
    artifact_uri: str
    created: str
    aliases: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)


class ModelRegistry(Protocol):
    """Versions of one model, with movable aliases; every backend passes one contract suite."""

    def register(
        self,
        artifact_uri: str,
        *,
        labels: Mapping[str, str],
        metrics: Mapping[str, Any],
        aliases: Sequence[str] = (),
    ) -> ModelVersion:
        """Add a new version (the first call creates the model) and return it.

        Not idempotent, like Vertex AI's ``Model.upload``: callers find an existing version
        by its labels first. ``aliases`` move to the new version from whichever held them.
        """
        ...

    def get(self, version_id: str) -> ModelVersion | None:
        """The version with this id, or None."""
        ...

    def versions(self) -> builtins.list[ModelVersion]:
        """Every version, oldest first."""
        ...

    def find(self, labels: Mapping[str, str]) -> builtins.list[ModelVersion]:
        """Versions carrying every one of ``labels``, oldest first."""
        ...

    def alias(self, name: str) -> ModelVersion | None:
        """The version holding alias ``name``, or None."""
        ...

    def set_alias(self, name: str, version_id: str) -> None:
        """Give alias ``name`` to ``version_id``, taking it from any version that held it.

        Raises KeyError for an unknown version, ValueError for an invalid alias name.
        """
        ...

    def remove_alias(self, name: str) -> None:
        """Take alias ``name`` from whichever version holds it (none: nothing happens).

        Raises ValueError for an invalid alias name.
        """
        ...

    def update_labels(self, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        """Merge ``labels`` into the version's labels (same key: new value) and return it."""
        ...


# --- endpoint ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeployedModel:
    """A model version deployed to the endpoint; ``id`` is the key of the traffic split."""

    id: str
    version_id: str
    created: str


@dataclass(frozen=True)
class Operation:
    """A long-running deployment as its backend reports it now.

    ``name`` is the operation's resource name (Vertex AI's ``projects/…/operations/N``; an id of
    the endpoint's own locally). Once ``done``, exactly one of ``error`` (why it failed) and
    ``deployed_model_id`` (the deployed model it made) is set.
    """

    name: str
    done: bool
    error: str | None = None
    deployed_model_id: str | None = None


@dataclass(frozen=True)
class Health:
    """What a health check of one deployed model found; ``reason`` says why it is not ok.

    ``requests`` and ``errors`` count the live traffic it took; ``p99_ms`` is its recent p99
    latency where the backend measures it (the local router does; on Vertex AI that figure
    lives in Cloud Monitoring).
    """

    ok: bool
    reason: str = ""
    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None


class Endpoint(Protocol):
    """Deployed models behind one endpoint and the traffic split across them.

    Vertex AI's semantics, which every backend's contract suite pins: the split maps deployed
    model ids to whole percentages summing to 100 whenever anything is deployed (``{}`` when
    nothing is); ids not in a split get 0.
    """

    def deployed(self) -> builtins.list[DeployedModel]:
        """Every deployed model, oldest first."""
        ...

    def traffic(self) -> dict[str, int]:
        """The current split, every deployed model included (0 where it takes none)."""
        ...

    def start_deploy(self, version: ModelVersion, traffic_percentage: int = 0) -> str:
        """Start deploying ``version`` and return the long-running operation's name at once.

        Same allocation and refusals as :meth:`deploy` (ValueError before anything starts),
        but nothing waits for the model to serve: :meth:`operation` reports how it went. The
        operation goes on whether or not the caller lives, as a Vertex AI deployment outlives
        the function that asked for it.
        """
        ...

    def operation(self, name: str) -> Operation:
        """The deployment :meth:`start_deploy` named ``name``, as it stands now.

        KeyError for a name this endpoint never gave. Once ``done``, it stays done with the
        same outcome: ``error`` (the endpoint's models and split are as they were) or
        ``deployed_model_id``.
        """
        ...

    def deploy(self, version: ModelVersion, traffic_percentage: int) -> DeployedModel:
        """Deploy ``version`` as a new deployed model taking ``traffic_percentage``.

        The others keep their shares scaled to the rest (Vertex's allocation). The first model
        on an empty endpoint takes 100 when given 0 and ValueError when given 1-99. Returns
        once the model serves (its health route answered); raises
        :class:`~salesmesh.errors.DeployError` if it
        never does, leaving the endpoint as it was.
        """
        ...

    def set_traffic(self, split: Mapping[str, int]) -> None:
        """Replace the split. ValueError unless the values are 0-100, sum to 100 and name
        only deployed models."""
        ...

    def undeploy(self, deployed_model_id: str) -> None:
        """Remove a deployed model. As on Vertex AI, one taking traffic while other models are
        deployed is refused with ValueError (move its traffic first); the only model may go,
        leaving the endpoint empty. KeyError if it is not deployed."""
        ...

    def health(self, deployed_model_id: str, probe: Mapping[str, Any]) -> Health:
        """Check one deployed model: it is deployed, serves, and answers the ``probe``
        instance with a forecast; ``requests``/``errors`` count live traffic it took."""
        ...

    def predict(self, instances: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send a prediction request through the endpoint's split.

        Returns the response body (``predictions`` and ``deployedModelId``); raises
        :class:`~salesmesh.errors.PredictionError` with the server's reasons on a 4xx/5xx.
        """
        ...


# Vertex AI (and GCP) label rule: keys start with a lowercase letter; keys and values use
# lowercase letters, digits, '-' and '_', at most 63 characters.
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` as a dict, or ValueError naming the first key or value Vertex AI refuses."""
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise ValueError(f"label key {key!r} must match {_LABEL_KEY.pattern}")
        if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"label {key}={value!r}: values must match {_LABEL_VALUE.pattern}")
    return dict(labels)


def check_alias(name: str) -> str:
    """``name`` if Vertex AI accepts it as a version alias, else ValueError."""
    if not ALIAS.fullmatch(name) or name == "default":
        raise ValueError(
            f"alias {name!r} must match {ALIAS.pattern} and not be 'default' (reserved)"
        )
    return name


def check_split(split: Mapping[str, int], deployed: Sequence[str]) -> dict[str, int]:
    """A full split over ``deployed`` (0 where absent), or ValueError as Vertex AI would."""
    unknown = sorted(set(split) - set(deployed))
    if unknown:
        raise ValueError(f"traffic split names models that are not deployed: {unknown}")
    bad = {
        k: v
        for k, v in split.items()
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100
    }
    if bad:
        raise ValueError(f"traffic shares must be whole percentages 0-100, got {bad}")
    if deployed and sum(split.values()) != 100:
        raise ValueError(f"traffic split must sum to 100, got {sum(split.values())}: {split}")
    return {model: int(split.get(model, 0)) for model in deployed}


def allocate(split: Mapping[str, int], new_id: str, percentage: int) -> dict[str, int]:
    """The split after deploying ``new_id`` at ``percentage``: Vertex AI's allocation.

    The others keep their shares scaled to ``100 - percentage``, rounded down, with the
    remainder handed out one point at a time in order (``Endpoint._allocate_traffic``).
    """
    if not 0 <= percentage <= 100:
        raise ValueError(f"traffic percentage must be 0-100, got {percentage}")
    if not split:
        if 0 < percentage < 100:
            raise ValueError("the first model on an endpoint must take 100 % of traffic")
        return {new_id: 100}
    rest = 100 - percentage
    new = {model: int(share / 100 * rest) for model, share in split.items()}
    left = rest - sum(new.values())
    for model in new:
        if left == 0:
            break
        new[model] += 1
        left -= 1
    return {**new, new_id: percentage}


# --- metrics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelMetrics:
    """The live traffic one deployed model took over the last ``window_seconds``.

    ``p99_ms`` is None when it served no request in the window (or the backend has no latency
    figure yet). ``errors`` counts answers of status 5xx and failed proxying; a 4xx is the
    caller's mistake and is not an error of the model.
    """

    deployed_model_id: str
    window_seconds: float
    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float:
        """Errors per request, 0.0 without requests."""
        return self.errors / self.requests if self.requests else 0.0


class Metrics(Protocol):
    """Requests, errors and p99 latency per deployed model: the local router's measurements,
    or Cloud Monitoring's on Google Cloud. Every backend passes one contract suite."""

    def window(self, deployed_model_id: str, seconds: float) -> ModelMetrics:
        """What ``deployed_model_id`` served over the last ``seconds`` (zeros if nothing)."""
        ...


# --- delayed tasks ----------------------------------------------------------------------------

# Cloud Tasks' task id rule, which the local queue keeps too: letters, digits, '-' and '_'.
TASK_NAME = re.compile(r"[A-Za-z0-9_-]{1,500}")


@dataclass(frozen=True)
class Task:
    """One CloudEvent to deliver to a function after ``delay_seconds``.

    ``name`` deduplicates: a second task of the same name is not queued. The event is delivered
    at least once, in binary mode, with ``event_type`` as its ``ce-type`` and ``data`` as its
    JSON body.
    """

    name: str
    function: str
    event_type: str
    data: Mapping[str, Any]
    delay_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not TASK_NAME.fullmatch(self.name):
            raise ValueError(f"task name {self.name!r} must match {TASK_NAME.pattern}")
        if not 0 <= self.delay_seconds <= 30 * 86_400:  # Cloud Tasks schedules 30 days ahead
            raise ValueError(f"delay_seconds must be 0-2592000, got {self.delay_seconds}")


class TaskQueue(Protocol):
    """Delayed, durable deliveries to a function: Cloud Tasks on Google Cloud, a queue in the
    state bucket that the local mesh delivers from. Every backend passes one contract suite."""

    def schedule(self, task: Task) -> bool:
        """Queue ``task``; False, queuing nothing, when a task of that name is already queued
        (or ran recently, as Cloud Tasks remembers names), True otherwise."""
        ...


# --- pub/sub ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as a subscription hands it out: what a ``messagePublished`` event carries.

    ``ack_id`` names this delivery (a redelivery gets a new one); ``message_id`` names the
    message (the same on every delivery). ``publish_time`` is RFC 3339 UTC.
    ``delivery_attempt`` counts deliveries from 1; Pub/Sub reports it only on subscriptions
    with a dead-letter policy, and 0 means the backend does not know.
    """

    ack_id: str
    message_id: str
    data: bytes
    attributes: Mapping[str, str]
    publish_time: str
    delivery_attempt: int


class Topic(Protocol):
    """Publishing to one topic: Pub/Sub (or its emulator), or the in-process fallback."""

    def publish(self, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Publish one message and return its message id once the topic has stored it."""
        ...


class Subscription(Protocol):
    """Pulling from one subscription, at least once: a message not acked comes back.

    Every backend passes one contract suite (tests/backends/contract_pubsub.py).
    """

    def pull(self, max_messages: int, timeout: float) -> builtins.list[ReceivedMessage]:
        """Up to ``max_messages`` messages, as soon as one is there; ``[]`` after ``timeout``
        seconds without any. Each is leased to the caller until acked, nacked or expired."""
        ...

    def ack(self, ack_ids: Sequence[str]) -> None:
        """Done with these deliveries: their messages are not delivered again."""
        ...

    def nack(self, ack_ids: Sequence[str]) -> None:
        """Give these deliveries back now: their messages are redelivered (a new attempt), or
        dead-lettered once the subscription's maximum attempts are spent."""
        ...
