"""One pending run per model: uploads that arrive before it starts fold into it.

``sales/<model>/pending-run.json`` names the run launched for the history that has not yet
resolved HEAD. It is created only if absent (a compare-and-swap from generation 0), so of any
number of uploads merged at once exactly one launches; the others find the claim and launch
nothing, since that run will train on whatever HEAD is when it starts. The trainer releases the
claim *before* it resolves HEAD (:mod:`.resolve`): a merge that lands after the release finds
no claim and launches the next run, and one that landed before is in what the trainer reads.

This is honest on both backends because the trainer itself says when it started, whatever the
launcher reports: a local job starts at once but holds the claim until HEAD has been still for
the URI's ``quiet`` seconds; a Vertex AI job holds it through QUEUED and PENDING.

A claim must not outlive its run. It is stale, and the next upload takes it over, when the
launcher reports its run finished (the trainer died before releasing it), when the launcher
does not know the run ``grace`` seconds after the claim (the launch itself died), or after
``lease`` seconds whatever the state (a trainer that hangs before resolving).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from salesmesh import cas
from salesmesh.errors import LaunchError
from salesmesh.ports import TrainingLauncher, TrainingRequest, TrainingRun, rfc3339
from salesmesh.sales.store import HistoryStore

CLAIM = "pending-run.json"
LEASE_SECONDS = 3600.0
GRACE_SECONDS = 120.0


@dataclass(frozen=True)
class Pending:
    """Which run will train on the history: ``launched`` by this call, or ``coalesced`` into
    one launched before that has not started yet."""

    action: str
    run_id: str
    run: TrainingRun | None


class PendingRun:
    """The pending-run claim of one model's history."""

    def __init__(
        self,
        store: HistoryStore,
        *,
        lease: float = LEASE_SECONDS,
        grace: float = GRACE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.claim = store.object(CLAIM)
        self.lease = lease
        self.grace = grace
        self.clock = clock

    def holder(self) -> tuple[str | None, cas.Versioned]:
        """The run id holding the claim (None: nobody) and the claim as read."""
        held = self.claim.read()
        return (None if held.document is None else str(held.document["run_id"])), held

    def acquire(self, run_id: str, correlation_id: str) -> int | None:
        """The claim's generation if this call created it for ``run_id``, else None."""
        document = {
            "run_id": run_id,
            "correlation_id": correlation_id,
            "claimed": rfc3339(datetime.fromtimestamp(self.clock(), UTC)),
            "claimed_at": self.clock(),
        }
        try:
            return self.claim.write(document, 0).generation
        except cas.CasConflictError:
            return None

    def release(self, run_id: str) -> bool:
        """Give the claim up if ``run_id`` holds it; a later run's claim stays."""
        holder, held = self.holder()
        return holder == run_id and self.claim.delete(held.generation)

    def stale(self, held: cas.Versioned, run: TrainingRun | None) -> str | None:
        """Why the claim can be taken over, or None while its run may still resolve HEAD."""
        return stale_reason(held.document or {}, run, self.clock(), self.lease, self.grace)


def stale_reason(
    claim: Mapping[str, Any], run: TrainingRun | None, now: float, lease: float, grace: float
) -> str | None:
    """Why ``claim`` (with ``run``, as its launcher reports it) no longer holds, or None."""
    age = now - float(claim.get("claimed_at", 0))
    if run is not None and run.state.finished:
        return f"its run {run.run_id} is {run.state} and never released it"
    if run is None and age > grace:
        return f"no launcher knows its run {claim.get('run_id')} after {age:.0f} s"
    if age > lease:
        return f"it is {age:.0f} s old, past its lease of {lease:.0f} s"
    return None


def ensure_pending(
    pending: PendingRun, launcher: TrainingLauncher, request: TrainingRequest, correlation: str
) -> Pending:
    """Make sure one run that has not started yet will train on the history.

    Launches ``request`` if no run is pending (or the pending one is stale), else returns the
    pending one. A redelivery whose own earlier call claimed but died before launching launches
    now, under the same run id, which the launcher starts at most once.
    """
    for _ in range(10):
        mine = pending.acquire(request.run_id, correlation)
        if mine is not None:
            return _launch(pending, launcher, request, mine)
        holder, held = pending.holder()
        if holder is None:
            continue  # released between our attempt and our read: try again
        if holder == request.run_id:
            return _launch(pending, launcher, request, held.generation)
        run = launcher.get(holder)
        if pending.stale(held, run) is None:
            return Pending("coalesced", holder, run)
        pending.claim.delete(held.generation)  # stale: take it over on the next turn
    raise LaunchError(
        f"{pending.claim.uri} kept changing hands: no run was launched for the history; a "
        "redelivery of the upload will try again"
    )


def _launch(
    pending: PendingRun, launcher: TrainingLauncher, request: TrainingRequest, generation: int
) -> Pending:
    try:
        run = launcher.launch(request)
    except Exception:
        pending.claim.delete(generation)  # a claim nobody will start must not hold others back
        raise
    if run.state.finished:
        # the run id was launched long ago (a redelivery): its trainer will not release this
        pending.claim.delete(generation)
    return Pending("launched", request.run_id, run)
