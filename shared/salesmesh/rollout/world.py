"""What a rollout step works with: its world (ledger, registry, endpoint, metrics, tasks, log,
clock) and its pace. Built at the edge (``salesmesh.runtime.rollouts``); see
:mod:`salesmesh.rollout.steps` for what a step does with it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from salesmesh import artifact
from salesmesh.logs import Logger
from salesmesh.ports import Endpoint, Metrics, ModelRegistry, TaskQueue
from salesmesh.rollout.ledger import LedgerStore
from salesmesh.settings import Settings

Reader = Callable[[str, Iterable[str]], Mapping[str, bytes | None]]
STEP_EVENT = "dev.salesmesh.rollout.v1.step"
FUNCTION = "deploy_model"
STATE_LABEL = "salesmesh-deploy"  # a searchable copy of the version's state; the ledger rules
# A step due at T may run a hair before T by another clock (schedule times are rounded): that
# close counts as on time, or the step would re-arm itself for no wait at all.
EARLY = 0.05


@dataclass(frozen=True)
class Timing:
    """How long the rollout waits for what; Vertex AI's pace on gcp, a demo's locally."""

    poll_seconds: float  # between looks at a deployment in progress
    deploy_timeout: float  # a deployment not done by then fails the rollout
    canary_seconds: float
    canary_max_seconds: float  # too little traffic extends the canary up to this
    canary_min_requests: int  # fewer live requests than this are no verdict
    min_window: float  # the shortest metrics window the backend answers
    # A deployment whose operation name was lost (its step died between starting it and
    # writing it down) may still be on its way: it is waited for this long before another
    # starts, so two deployments of one version never run at once.
    lost_grace: float

    @classmethod
    def of(cls, settings: Settings) -> Timing:
        """The timing for ``settings``' backend and canary."""
        canary = settings.canary_wait
        if settings.backend == "gcp":
            # Cloud Monitoring aligns over 60 s at least
            return cls(30.0, 45 * 60.0, canary, 2 * canary, 20, 60.0, 45 * 60.0)
        return cls(0.25, 120.0, canary, 2 * canary, 20, 1.0, 15.0)


@dataclass
class Rollouts:
    """Everything a step reads and acts on; built at the edge (``salesmesh.runtime``)."""

    settings: Settings
    ledger: LedgerStore
    registry: ModelRegistry
    endpoint: Endpoint
    metrics: Metrics
    tasks: TaskQueue
    log: Logger
    clock: Callable[[], float] = time.time
    who: str = FUNCTION
    pace: Timing | None = None  # None: the settings' backend's (Timing.of)
    # reads files of a version's run, checked against its manifest (the gate's evidence)
    read_run: Reader = artifact.read_files

    @property
    def timing(self) -> Timing:
        """How long this rollout waits for what."""
        return self.pace or Timing.of(self.settings)
