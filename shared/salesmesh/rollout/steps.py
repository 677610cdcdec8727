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

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from salesmesh.errors import DeployError, MeshError, MetricsError
from salesmesh.logs import Logger
from salesmesh.ports import (
    CHAMPION,
    PREVIOUS,
    Endpoint,
    Health,
    Metrics,
    ModelRegistry,
    Task,
    TaskQueue,
)
from salesmesh.rollout import policy, record
from salesmesh.rollout.faults import crash_point
from salesmesh.rollout.ledger import LedgerConflictError, LedgerStore, Snapshot
from salesmesh.rollout.record import State
from salesmesh.settings import Settings

STEP_EVENT = "dev.salesmesh.rollout.v1.step"
FUNCTION = "deploy_model"
STATE_LABEL = "salesmesh-deploy"  # a searchable copy of the version's state; the ledger rules
MAX_DEPLOY_STARTS = 3  # a deployment lost this many times fails the rollout
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

    @property
    def timing(self) -> Timing:
        """How long this rollout waits for what."""
        return self.pace or Timing.of(self.settings)


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
        apply, retired = _drift(world, doc)
        _arm(world, doc, 0.0, force=apply is not None or bool(retired))
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
    doc = snapshot.document
    _reconcile(world, doc)
    rollout = doc.get("rollout")
    if rollout is None:
        return _next_in_queue(world, snapshot)
    handler = _HANDLERS[State(rollout["state"])]
    return handler(world, snapshot, rollout)


# --- writing and scheduling --------------------------------------------------------------


def _commit(
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
        _arm(world, written.document, delay)
    return written


def _arm(world: Rollouts, doc: dict[str, Any], delay: float, force: bool = False) -> None:
    """Schedule the step for the ledger's current sequence, if there is anything to do (or
    ``force``: the endpoint has yet to follow the ledger)."""
    if doc.get("rollout") is None and not doc.get("queue") and not force:
        return
    task = Task(
        name=f"rollout-{doc['id']}-{doc['seq']}",
        function=FUNCTION,
        event_type=STEP_EVENT,
        data={"endpoint": doc["endpoint"], "seq": int(doc["seq"])},
        delay_seconds=max(0.0, min(delay, 30 * 86_400.0)),
    )
    world.tasks.schedule(task)


def _drift(world: Rollouts, doc: dict[str, Any]) -> tuple[dict[str, int] | None, list[str]]:
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


def _reconcile(world: Rollouts, doc: dict[str, Any]) -> None:
    """Put the endpoint's split back to the ledger's and undeploy what the ledger retired.

    Steps act through this, on a ledger read just before: a step that hung after its decision
    and wakes late then applies the ledger's latest split, not its own stale one.
    """
    apply, retired = _drift(world, doc)
    if apply is not None:
        world.log.info(f"traffic {world.endpoint.traffic()} differs from the ledger's: {apply}")
        world.endpoint.set_traffic(apply)
    for model in retired:
        try:
            world.endpoint.undeploy(model)
            world.log.info(f"undeployed {model}: retired by the ledger")
        except Exception as exc:  # housekeeping: a failure here must never stall a rollout
            world.log.warning(f"could not undeploy retired model {model}: {exc}")


def _versions(world: Rollouts) -> dict[str, str]:
    return {d.id: d.version_id for d in world.endpoint.deployed()}


# --- the states ---------------------------------------------------------------------------


def _next_in_queue(world: Rollouts, snapshot: Snapshot) -> str:
    """Idle: gate the oldest queued version and start its rollout, or gate it out."""
    queue = snapshot.document.get("queue") or []
    if not queue:
        return "idle"
    entry = queue[0]
    version_id = str(entry["version_id"])
    log = world.log.bind(correlation_id=entry.get("correlation_id") or None)
    log = log.bind(labels={"run_id": entry["run_id"], "version": version_id})
    version = world.registry.get(version_id)
    champion = world.registry.alias(CHAMPION)
    now = world.clock()
    if version is None:
        reason = f"version {version_id} is no longer in the registry"
        decision = policy.GateDecision(False, reason)
    else:
        decision = policy.gate(
            version.metrics, champion.metrics if champion else None, world.settings.gate_tolerance
        )
    if not decision.passed:

        def gate_out(doc: dict[str, Any]) -> None:
            doc["queue"] = doc["queue"][1:]
            record.set_version(doc, version_id, record.GATED, now, reason=decision.reason)

        written = _commit(world, snapshot, gate_out, 0.0)
        log.warning(f"version {version_id} gated, not deployed: {decision.reason}")
        _label(world, version_id, record.GATED)
        return "gated" if not written.document["queue"] else _step(world, written)

    before = world.endpoint.traffic()
    written = _commit(
        world,
        snapshot,
        lambda doc: record.start(
            doc,
            entry,
            now,
            gate=decision.reason,
            before=before,
            champion=champion.version_id if champion else None,
        ),
    )
    log.info(f"rollout of version {version_id} starts: {decision.reason}")
    return _step(world, written)


def _registered(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> str:
    """Start the deployment: the decision first, so two copies of this step start one."""
    return _start_deploy(world, snapshot, rollout, "deployment started at 0 % traffic")


def _start_deploy(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any], why: str) -> str:
    now = world.clock()
    starts = int(rollout.get("deploy_starts", 0))
    if starts >= MAX_DEPLOY_STARTS:
        return _fail(world, snapshot, f"the deployment was lost {starts} times", None)

    def intend(doc: dict[str, Any]) -> None:
        doc["rollout"].update(
            operation=None,
            deploy_starts=starts + 1,
            deadline=now + world.timing.deploy_timeout,
        )
        doc["rollout"]["deploy_started"] = now
        record.transition(doc, State.DEPLOYING, now, why)

    written = _commit(world, snapshot, intend)
    crash_point(world.settings, "deploying")
    version = world.registry.get(rollout["version_id"])
    try:
        if version is None:
            raise DeployError(f"version {rollout['version_id']} is no longer in the registry")
        operation = world.endpoint.start_deploy(version, 0)
    except (DeployError, ValueError) as exc:
        return _fail(world, written, f"the deployment could not start: {exc}", None)
    crash_point(world.settings, "operation")
    written = _commit(
        world,
        written,
        lambda doc: doc["rollout"].update(operation=operation),
        world.timing.poll_seconds,
    )
    world.log.info(f"deploying version {version.version_id}: operation {operation}")
    return "deploying"


def _deploying(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> str:
    """Look at the deployment once: still going, failed, lost, or done."""
    now = world.clock()
    name = rollout.get("operation")
    if name is None:  # a step died between deciding to deploy and recording the operation
        return _adopt_or_restart(world, snapshot, rollout)
    try:
        operation = world.endpoint.operation(name)
    except KeyError:
        return _adopt_or_restart(world, snapshot, rollout)
    if not operation.done:
        if now > float(rollout["deadline"]):
            timeout = world.timing.deploy_timeout
            return _fail(world, snapshot, f"the deployment took over {timeout:.0f} s", None)
        polls = int(rollout.get("polls", 0)) + 1
        _commit(
            world,
            snapshot,
            lambda doc: doc["rollout"].update(polls=polls),
            world.timing.poll_seconds,
        )
        return "deploying"
    if operation.error or not operation.deployed_model_id:
        return _fail(world, snapshot, f"deployment failed: {operation.error}", None)
    return _deployed(world, snapshot, rollout, operation.deployed_model_id)


def _adopt_or_restart(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> str:
    """The deployment's operation is unknown: adopt its model once it shows, or start again
    when it cannot be on its way any more."""
    before = rollout.get("before") or {}
    mine = [
        d.id
        for d in world.endpoint.deployed()
        if d.version_id == rollout["version_id"] and d.id not in before
    ]
    if mine:
        return _deployed(world, snapshot, rollout, mine[-1])
    now = world.clock()
    waited = now - float(rollout.get("deploy_started", 0.0))
    if waited < world.timing.lost_grace - EARLY:
        polls = int(rollout.get("polls", 0)) + 1
        delay = min(world.timing.poll_seconds, world.timing.lost_grace - waited)
        _commit(world, snapshot, lambda doc: doc["rollout"].update(polls=polls), delay)
        return "deploying"
    return _start_deploy(world, snapshot, rollout, "deployment lost: started again")


def _deployed(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any], model: str) -> str:
    """The new model serves at 0 % (or alone at 100 %): probe it, then canary or promote."""
    now = world.clock()
    health = world.endpoint.health(model, rollout.get("probe") or {})
    ok, reason = policy.canary_ok(Health(health.ok, health.reason))
    if not ok:
        return _fail(world, snapshot, f"health check failed: {reason}", model)
    before = rollout.get("before") or {}
    if not before:  # the first model on an empty endpoint took all traffic: nothing to compare

        def promote(doc: dict[str, Any]) -> None:
            doc["rollout"]["deployed_model_id"] = model
            record.transition(doc, State.PROMOTING, now, "first model on the endpoint: healthy")

        return _step(world, _commit(world, snapshot, promote))

    versions = _versions(world)
    current = world.endpoint.traffic()
    percent = world.settings.canary_percent
    canary = policy.canary_split(current, model, percent)
    until = now + world.timing.canary_seconds

    def open_canary(doc: dict[str, Any]) -> None:
        doc["rollout"].update(
            deployed_model_id=model, canary_started=now, canary_until=until, canary=canary
        )
        record.transition(doc, State.CANARY, now, f"healthy at 0 %; canary at {percent} %")
        why = f"canary of version {rollout['version_id']} at {percent} %"
        record.decide_split(doc, canary, versions, now, world.who, why)

    _commit(world, snapshot, open_canary, world.timing.canary_seconds)
    crash_point(world.settings, "canary")
    _reconcile(world, world.ledger.read().document)
    world.log.info(f"canary {model} at {percent} % for {world.timing.canary_seconds:g} s")
    return "canary"


def _canary(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> str:
    """When the canary's time is up, judge its live traffic: promote, extend, or fail."""
    now = world.clock()
    until = float(rollout["canary_until"])
    if now < until - EARLY:
        _commit(world, snapshot, lambda doc: None, until - now)
        return "canary"
    model = str(rollout["deployed_model_id"])
    started = float(rollout["canary_started"])
    timing = world.timing
    try:
        seen = world.metrics.window(model, max(timing.min_window, now - started))
    except MetricsError as exc:
        world.log.warning(f"no live metrics for canary {model}: {exc}")
        seen = None
    if seen is not None and seen.requests >= timing.canary_min_requests:
        live = Health(True, requests=seen.requests, errors=seen.errors, p99_ms=seen.p99_ms)
        ok, reason = policy.canary_ok(live)
        if not ok:
            return _fail(world, snapshot, f"canary failed on live traffic: {reason}", model)
        return _promote_next(world, snapshot, reason)
    requests = 0 if seen is None else seen.requests
    thin = (
        f"{requests} live request(s) in {now - started:.0f} s, under the "
        f"{timing.canary_min_requests} a verdict needs"
    )
    if now < started + timing.canary_max_seconds - EARLY:
        longer = min(now + timing.canary_seconds, started + timing.canary_max_seconds)

        def extend(doc: dict[str, Any]) -> None:
            doc["rollout"]["canary_until"] = longer
            doc["rollout"]["canary_extended"] = int(doc["rollout"].get("canary_extended", 0)) + 1
            record.transition(doc, State.CANARY, now, f"canary extended: {thin}")

        _commit(world, snapshot, extend, longer - now)
        return "canary"
    health = world.endpoint.health(model, rollout.get("probe") or {})
    if not health.ok:
        return _fail(world, snapshot, f"health check failed: {health.reason}", model)
    return _promote_next(world, snapshot, f"promoted on the health probe alone: {thin}")


def _promote_next(world: Rollouts, snapshot: Snapshot, reason: str) -> str:
    now = world.clock()
    return _step(
        world,
        _commit(world, snapshot, lambda doc: record.transition(doc, State.PROMOTING, now, reason)),
    )


def _promoting(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> str:
    """All traffic to the new model, aliases moved, the old champion kept warm at 0 %."""
    now = world.clock()
    model = str(rollout["deployed_model_id"])
    version_id = str(rollout["version_id"])
    champion = rollout.get("champion")
    registry = world.registry
    if champion and champion != version_id and registry.get(champion) is not None:
        registry.set_alias(PREVIOUS, champion)
    registry.set_alias(CHAMPION, version_id)
    crash_point(world.settings, "promoting")
    versions = _versions(world)
    deployed = world.endpoint.deployed()
    standby = [m for m, v in versions.items() if v == champion and m != model]
    split = {m: 100 if m == model else 0 for m in versions}
    retire = policy.retire(
        deployed,
        split,
        world.settings.keep_deployed,
        [model, *standby[-1:]],
    )

    def promote(doc: dict[str, Any]) -> None:
        why = f"version {version_id} promoted: {rollout.get('reason', '')}"
        record.decide_split(doc, split, versions, now, world.who, why)
        doc["undeploy"] = retire
        for other, entry in doc["versions"].items():
            if other != version_id and entry.get("state") in (record.DEPLOYED, record.STANDBY):
                retired = not any(versions.get(m) == other for m in versions if m not in retire)
                entry["state"] = record.RETIRED if retired else record.STANDBY
        record.finish(doc, State.DONE, now, why, record.DEPLOYED)

    _commit(world, snapshot, promote, 0.0)
    world.log.info(f"version {version_id} takes 100 % of traffic as {model}")
    _label(world, version_id, record.DEPLOYED)
    _reconcile(world, world.ledger.read().document)
    return "promoted"


def _fail(world: Rollouts, snapshot: Snapshot, reason: str, model: str | None) -> str:
    """End the rollout as failed: the split goes back to what it was, the newcomer goes."""
    now = world.clock()
    rollout = snapshot.document["rollout"]
    version_id = str(rollout["version_id"])
    versions = _versions(world)
    before = {m: s for m, s in (rollout.get("before") or {}).items() if m in versions}

    def fail(doc: dict[str, Any]) -> None:
        if before and doc.get("split") != before:
            record.decide_split(doc, before, versions, now, world.who, f"rolled back: {reason}")
        elif not before:
            doc["split"] = {}
        doc["undeploy"] = [model] if model else []
        record.finish(doc, State.FAILED, now, reason, record.FAILED)

    _commit(world, snapshot, fail, 0.0)
    world.log.error(f"version {version_id} not deployed, traffic as before: {reason}")
    _label(world, version_id, record.FAILED)
    if model and not before:  # alone on the endpoint: it may go with its 100 %
        try:
            world.endpoint.undeploy(model)
        except (KeyError, ValueError, MeshError) as exc:
            world.log.warning(f"could not undeploy {model}: {exc}")
    _reconcile(world, world.ledger.read().document)
    return "failed"


def _label(world: Rollouts, version_id: str, state: str) -> None:
    """Copy a version's state to its label, for searches in the console; the ledger rules."""
    try:
        world.registry.update_labels(version_id, {STATE_LABEL: state})
    except (KeyError, ValueError, MeshError) as exc:
        world.log.warning(f"could not label version {version_id} {state}: {exc}")


_HANDLERS: dict[State, Callable[[Rollouts, Snapshot, dict[str, Any]], str]] = {
    State.REGISTERED: _registered,
    State.DEPLOYING: _deploying,
    State.CANARY: _canary,
    State.PROMOTING: _promoting,
}
