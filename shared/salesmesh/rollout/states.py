"""What each state of a rollout does in one step (see :mod:`salesmesh.rollout.steps`).

Each handler reads the world once, decides, writes the decision (:func:`~salesmesh.rollout.
converge.commit`) before acting on it, and returns what happened in a word, or the ledger it
just wrote when the next state can be taken at once, in the same step (a gate passed, a first
model promoted): the step goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from salesmesh.errors import DeployError, MeshError, MetricsError
from salesmesh.ports import CHAMPION, PREVIOUS, Health
from salesmesh.rollout import policy, record
from salesmesh.rollout.converge import commit, label, reconcile, versions_of
from salesmesh.rollout.faults import crash_point
from salesmesh.rollout.ledger import Snapshot
from salesmesh.rollout.record import State
from salesmesh.rollout.world import EARLY, Rollouts

MAX_DEPLOY_STARTS = 3  # a deployment lost this many times fails the rollout
Outcome = str | Snapshot  # a word, or the ledger to go on from in the same step


def next_in_queue(world: Rollouts, snapshot: Snapshot) -> Outcome:
    """Idle: gate the oldest queued version and start its rollout, or gate it out."""
    queue = snapshot.document.get("queue") or []
    if snapshot.document.get("sweep"):
        swept = _sweep(world, snapshot, wait=not queue)
        if swept is not None:
            return swept
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
        # here, not at the top: the gate needs pandas, which no other step (nor a rollback,
        # nor a delivery that is not a manifest) should pay for on a cold start
        from salesmesh.gate.compare import GateSettings
        from salesmesh.gate.runs import judge_versions

        settings = GateSettings(tolerance=world.settings.gate_tolerance)
        decision = judge_versions(version, champion, settings, world.read_run)
    # kept with the version either way: why, and on what evidence
    verdict = {"reason": decision.reason, **dict(decision.evidence or {})}
    if not decision.passed:

        def gate_out(doc: dict[str, Any]) -> None:
            doc["queue"] = doc["queue"][1:]
            record.set_version(
                doc, version_id, record.GATED, now, reason=decision.reason, gate=verdict
            )

        written = commit(world, snapshot, gate_out, 0.0)
        log.warning(f"version {version_id} gated, not deployed: {decision.reason}")
        label(world, version_id, record.GATED)
        return "gated" if not written.document["queue"] else written

    before = world.endpoint.traffic()
    written = commit(
        world,
        snapshot,
        lambda doc: record.start(
            doc,
            entry,
            now,
            verdict=verdict,
            gate=decision.reason,
            before=before,
            champion=champion.version_id if champion else None,
        ),
    )
    log.info(f"rollout of version {version_id} starts: {decision.reason}")
    return written


def _sweep(world: Rollouts, snapshot: Snapshot, wait: bool) -> Outcome | None:
    """Undeploy the models of aborted rollouts that showed up after the abort (see
    :func:`record.sweep`); look again later while one may still be on its way."""
    now = world.clock()
    timing = world.timing
    patience = timing.deploy_timeout + timing.lost_grace
    deployed = versions_of(world)
    split = world.endpoint.traffic()
    pending = snapshot.document["sweep"]
    keep = []
    for entry in pending:
        mine = [m for m, v in deployed.items() if v == entry["version_id"] and not split.get(m)]
        for model in mine:
            try:
                world.endpoint.undeploy(model)
                world.log.info(f"undeployed {model}: its rollout was aborted before it arrived")
            except (KeyError, ValueError, MeshError) as exc:
                world.log.warning(f"could not undeploy {model} of an aborted rollout: {exc}")
                mine = []  # try again next time
        if not mine and now - float(entry["since"]) < patience:
            keep.append(entry)
    if keep == pending and not wait:
        return None
    again = max(timing.poll_seconds, min(30.0, patience / 20)) if keep and wait else None

    def swept(doc: dict[str, Any]) -> None:
        doc["sweep"] = keep

    written = commit(world, snapshot, swept, again)
    return "sweeping" if keep and wait else written


def _registered(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> Outcome:
    """Start the deployment: the decision first, so two copies of this step start one."""
    return _start_deploy(world, snapshot, rollout, "deployment started at 0 % traffic")


def _start_deploy(
    world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any], why: str
) -> Outcome:
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

    written = commit(world, snapshot, intend)
    crash_point(world.settings, "deploying")
    version = world.registry.get(rollout["version_id"])
    try:
        if version is None:
            raise DeployError(f"version {rollout['version_id']} is no longer in the registry")
        operation = world.endpoint.start_deploy(version, 0)
    except (DeployError, ValueError) as exc:
        return _fail(world, written, f"the deployment could not start: {exc}", None)
    crash_point(world.settings, "operation")
    written = commit(
        world,
        written,
        lambda doc: doc["rollout"].update(operation=operation),
        world.timing.poll_seconds,
    )
    world.log.info(f"deploying version {version.version_id}: operation {operation}")
    return "deploying"


def _deploying(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> Outcome:
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
        commit(
            world,
            snapshot,
            lambda doc: doc["rollout"].update(polls=polls),
            world.timing.poll_seconds,
        )
        return "deploying"
    if operation.error or not operation.deployed_model_id:
        return _fail(world, snapshot, f"deployment failed: {operation.error}", None)
    return _deployed(world, snapshot, rollout, operation.deployed_model_id)


def _adopt_or_restart(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> Outcome:
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
        commit(world, snapshot, lambda doc: doc["rollout"].update(polls=polls), delay)
        return "deploying"
    return _start_deploy(world, snapshot, rollout, "deployment lost: started again")


def _deployed(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any], model: str) -> Outcome:
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

        return commit(world, snapshot, promote)

    versions = versions_of(world)
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

    commit(world, snapshot, open_canary, world.timing.canary_seconds)
    crash_point(world.settings, "canary")
    reconcile(world, world.ledger.read().document)
    world.log.info(f"canary {model} at {percent} % for {world.timing.canary_seconds:g} s")
    return "canary"


def _canary(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> Outcome:
    """When the canary's time is up, judge its live traffic: promote, extend, or fail."""
    now = world.clock()
    until = float(rollout["canary_until"])
    if now < until - EARLY:
        commit(world, snapshot, lambda doc: None, until - now)
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

        commit(world, snapshot, extend, longer - now)
        return "canary"
    health = world.endpoint.health(model, rollout.get("probe") or {})
    if not health.ok:
        return _fail(world, snapshot, f"health check failed: {health.reason}", model)
    return _promote_next(world, snapshot, f"promoted on the health probe alone: {thin}")


def _promote_next(world: Rollouts, snapshot: Snapshot, reason: str) -> Outcome:
    now = world.clock()
    return commit(world, snapshot, lambda doc: record.transition(doc, State.PROMOTING, now, reason))


def _promoting(world: Rollouts, snapshot: Snapshot, rollout: dict[str, Any]) -> Outcome:
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
    versions = versions_of(world)
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

    commit(world, snapshot, promote, 0.0)
    world.log.info(f"version {version_id} takes 100 % of traffic as {model}")
    label(world, version_id, record.DEPLOYED)
    reconcile(world, world.ledger.read().document)
    return "promoted"


def _fail(world: Rollouts, snapshot: Snapshot, reason: str, model: str | None) -> Outcome:
    """End the rollout as failed: the split goes back to what it was, the newcomer goes."""
    now = world.clock()
    rollout = snapshot.document["rollout"]
    version_id = str(rollout["version_id"])
    versions = versions_of(world)
    before = {m: s for m, s in (rollout.get("before") or {}).items() if m in versions}

    def fail(doc: dict[str, Any]) -> None:
        if before and doc.get("split") != before:
            record.decide_split(doc, before, versions, now, world.who, f"rolled back: {reason}")
        elif not before:
            doc["split"] = {}
        doc["undeploy"] = [model] if model else []
        record.finish(doc, State.FAILED, now, reason, record.FAILED)

    commit(world, snapshot, fail, 0.0)
    world.log.error(f"version {version_id} not deployed, traffic as before: {reason}")
    label(world, version_id, record.FAILED)
    if model and not before:  # alone on the endpoint: it may go with its 100 %
        try:
            world.endpoint.undeploy(model)
        except (KeyError, ValueError, MeshError) as exc:
            world.log.warning(f"could not undeploy {model}: {exc}")
    reconcile(world, world.ledger.read().document)
    return "failed"


HANDLERS: dict[State, Callable[[Rollouts, Snapshot, dict[str, Any]], Outcome]] = {
    State.REGISTERED: _registered,
    State.DEPLOYING: _deploying,
    State.CANARY: _canary,
    State.PROMOTING: _promoting,
}
