"""The rollout, advanced in short steps: read the ledger and the world, act once, write, re-arm.

A Vertex AI deployment can take half an hour and a function has 540 s at most, so no
invocation carries a rollout. Each step (:func:`advance`) reads the ledger
(:mod:`salesmesh.rollout.ledger`), asks the world one question (is the deployment operation
done? is the canary's time up? what do its metrics say?), writes its decision with
compare-and-swap and schedules the next step as a delayed task
(``dev.salesmesh.rollout.v1.step``: Cloud Tasks on Google Cloud, the mesh's durable queue
locally). Nothing waits: a step takes milliseconds to seconds.

Every step may die at any point; the next one converges:

- a decision is written *before* its action (deploy, change traffic), so of two copies of one
  step only the one whose write won acts; the loser stops (``conflict``);
- a step that carries an older sequence number than the ledger's changes nothing (``stale``);
  it only makes sure the step for the current sequence is scheduled (tasks are deduplicated
  by name), which is what revives a rollout whose step died between its write and its
  scheduling: the dead step's own redelivery re-arms it;
- the ledger's wanted ``split`` is applied at the start of every step when the endpoint
  differs, which finishes a traffic change whose step died after deciding it, and deployed
  models the ledger retired are undeployed the same way.
"""

from __future__ import annotations

import dataclasses
import time

from salesmesh.rollout.converge import arm, drift, reconcile
from salesmesh.rollout.ledger import LedgerConflictError, Snapshot
from salesmesh.rollout.record import State
from salesmesh.rollout.states import HANDLERS, Outcome, next_in_queue
from salesmesh.rollout.world import FUNCTION, STATE_LABEL, STEP_EVENT, Rollouts, Timing

__all__ = ["FUNCTION", "STATE_LABEL", "STEP_EVENT", "Rollouts", "Timing", "advance"]


def advance(world: Rollouts, seq: int | None = None) -> str:
    """Take one step of the endpoint's rollout; what happened, in a word.

    ``seq`` is the ledger sequence the step was scheduled for; None (a kick: a new manifest,
    a restart) acts on whatever the ledger holds now. Every step logs what it did and how long
    it took (``step_seconds``), under the run it worked on.
    """
    started = time.perf_counter()
    snapshot = world.ledger.read()
    doc = snapshot.document
    current = int(doc["seq"])
    subject = doc.get("rollout") or next(iter(doc.get("queue") or []), None) or {}
    log = world.log.bind(correlation_id=subject.get("correlation_id") or None)
    if subject:
        log = log.bind(labels={"run_id": subject["run_id"], "version": subject["version_id"]})
    world = dataclasses.replace(world, log=log)
    if seq is not None and seq != current:
        outcome = "stale"
        # a step that died after its last write leaves the endpoint behind the ledger: the
        # step for the current sequence (deduplicated by name) puts it right
        apply, retired = drift(world, doc)
        arm(world, doc, 0.0, force=apply is not None or bool(retired))
    else:
        try:
            outcome = _step(world, snapshot)
        except LedgerConflictError as exc:
            log.info(f"rollout step stopped, another step went first: {exc}")
            outcome = "conflict"
    took = time.perf_counter() - started
    which = "a kick" if seq is None else f"step {seq}"
    log.info(f"rollout {which} (ledger at {current}): {outcome} in {took:.3f} s", step_seconds=took)
    return outcome


def _step(world: Rollouts, snapshot: Snapshot) -> str:
    """Handle the ledger's state, and the states a handler goes on to in the same step."""
    result: Outcome = snapshot
    while isinstance(result, Snapshot):
        doc = result.document
        reconcile(world, doc)
        rollout = doc.get("rollout")
        if rollout is None:
            result = next_in_queue(world, result)
        else:
            result = HANDLERS[State(rollout["state"])](world, result, rollout)
    return result
