"""Ports: the small interfaces the mesh talks to, each with a local and a Google Cloud backend.

Domain code and function handlers depend on these Protocols only; backends are picked by name
in :mod:`salesmesh.backends`, so local mode never imports a cloud SDK it does not use.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

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
