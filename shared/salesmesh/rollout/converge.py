"""How a rollout step writes, re-arms and brings the endpoint in line with the ledger.

:func:`commit` writes a decision by compare-and-swap and schedules the next step;
:func:`arm` schedules the step for the ledger's current sequence (a task named after it, so a
second scheduling of one step is refused); :func:`reconcile` puts the endpoint's split back to
the ledger's and undeploys what the ledger retired, which is how every step finishes the action
of one that died after deciding it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from salesmesh.errors import MeshError
from salesmesh.ports import Task
from salesmesh.rollout.ledger import Snapshot
from salesmesh.rollout.world import FUNCTION, STATE_LABEL, STEP_EVENT, Rollouts


def commit(
    world: Rollouts,
    snapshot: Snapshot,
    change: Callable[[dict[str, Any]], None],
    delay: float | None = None,
) -> Snapshot:
    """Write ``change`` over ``snapshot`` (LedgerConflictError if it moved) and, unless
    ``delay`` is None, schedule the next step that many seconds from now."""
    doc = copy.deepcopy(snapshot.document)
    change(doc)
    doc["seq"] = int(doc["seq"]) + 1
    written = world.ledger.write(doc, snapshot.generation)
    if delay is not None:
        arm(world, written.document, delay)
    return written


def arm(world: Rollouts, doc: dict[str, Any], delay: float, force: bool = False) -> None:
    """Schedule the step for the ledger's current sequence, if there is anything to do (or
    ``force``: the endpoint has yet to follow the ledger)."""
    if doc.get("rollout") is None and not doc.get("queue") and not doc.get("sweep") and not force:
        return
    task = Task(
        name=f"rollout-{doc['id']}-{doc['seq']}",
        function=FUNCTION,
        event_type=STEP_EVENT,
        data={"endpoint": doc["endpoint"], "seq": int(doc["seq"])},
        delay_seconds=max(0.0, min(delay, 30 * 86_400.0)),
    )
    world.tasks.schedule(task)


def drift(world: Rollouts, doc: dict[str, Any]) -> tuple[dict[str, int] | None, list[str]]:
    """Where the endpoint has yet to follow the ledger: the split to apply (None if it
    follows), and the retired models still deployed."""
    wanted = doc.get("split") or {}
    split = world.endpoint.traffic()
    missing = sorted(m for m, share in wanted.items() if share and m not in split)
    apply = None
    if missing:  # someone undeployed a model the ledger gives traffic to: a person must look
        world.log.error(f"the ledger gives traffic to models no longer deployed: {missing}")
    elif wanted:
        full = {model: int(wanted.get(model, 0)) for model in split}
        apply = full if full != split else None
    after = apply or split
    retired = [m for m in doc.get("undeploy") or [] if m in after and after[m] == 0]
    return apply, retired


def reconcile(world: Rollouts, doc: dict[str, Any]) -> None:
    """Put the endpoint's split back to the ledger's and undeploy what the ledger retired.

    Steps act through this, on a ledger read just before: a step that hung after its decision
    and wakes late then applies the ledger's latest split, not its own stale one.
    """
    apply, retired = drift(world, doc)
    if apply is not None:
        world.log.info(f"traffic {world.endpoint.traffic()} differs from the ledger's: {apply}")
        world.endpoint.set_traffic(apply)
    for model in retired:
        try:
            world.endpoint.undeploy(model)
            world.log.info(f"undeployed {model}: retired by the ledger")
        except Exception as exc:  # housekeeping: a failure here must never stall a rollout
            world.log.warning(f"could not undeploy retired model {model}: {exc}")


def versions_of(world: Rollouts) -> dict[str, str]:
    return {d.id: d.version_id for d in world.endpoint.deployed()}


def label(world: Rollouts, version_id: str, state: str) -> None:
    """Copy a version's state to its label, for searches in the console; the ledger rules."""
    try:
        world.registry.update_labels(version_id, {STATE_LABEL: state})
    except (KeyError, ValueError, MeshError) as exc:
        world.log.warning(f"could not label version {version_id} {state}: {exc}")
