"""Rolling an endpoint back: a known-good version takes all traffic again, as a ledger change.

One path for both callers: ``alert_handler`` (an open incident from Cloud Monitoring names the
deployed model that misbehaves) and ``salesmesh rollback`` (an operator). :func:`rollback`
reads the ledger and the endpoint, decides, writes the decision by compare-and-swap *before*
acting (as every rollout step does), then puts the endpoint's split to the ledger's and moves
the aliases. What it decides:

- the bad model is the **canary** of the rollout in progress: the rollout is ``aborted``, the
  split goes back to what it was before the rollout, the version is ``rolled_back``;
- the bad model is the **champion** (the most traffic): the previous champion still deployed
  takes 100 % (the latest one in the ledger's traffic history that was never rolled back,
  failed or gated; or ``to``), a rollout in progress is aborted, the bad version is
  ``rolled_back`` (no later step promotes it again) and undeployed, the aliases move;
- otherwise nothing changes, and the outcome says why: the model is no longer deployed or
  takes no traffic (already replaced), an incident with this id and state was handled already
  (delivery is at least once), an automatic rollback happened less than ``cooldown`` seconds
  ago (a flapping alert must not walk the endpoint back through every version), or there is no
  previous version to return to (``refused``: a person must act).

Every incident the ledger hears of is kept in its ``incidents`` (with what was done about it)
and every rollback in ``rollbacks`` and in the traffic ``history`` (who, why, which incident).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from salesmesh.errors import MeshError
from salesmesh.ports import CHAMPION, PREVIOUS
from salesmesh.rollout import record
from salesmesh.rollout.converge import commit, label, reconcile, versions_of
from salesmesh.rollout.ledger import LedgerConflictError, Snapshot
from salesmesh.rollout.record import State
from salesmesh.rollout.world import Rollouts

KEEP_INCIDENTS = 500  # incidents remembered for idempotency and `salesmesh status`
KEEP_ROLLBACKS = 200
# versions a rollback never returns to on its own (an operator may, with `to`)
_NOT_A_TARGET = frozenset({record.ROLLED_BACK, record.FAILED, record.GATED, record.ABORTED})
ROLLED_BACK, ABORTED, UNCHANGED, DUPLICATE, REFUSED = (
    "rolled_back",
    "aborted",
    "unchanged",
    "duplicate",
    "refused",
)


@dataclass(frozen=True)
class Request:
    """What to roll back, by whom and why."""

    who: str
    reason: str
    bad_model: str | None = None  # the deployed model at fault; None: the champion
    to: str | None = None  # the version to return to; None: the previous champion
    incident: Mapping[str, Any] | None = None  # the incident record to keep, if one asked
    cooldown: float = 0.0  # refuse if the last rollback is younger than this (seconds)


@dataclass(frozen=True)
class Outcome:
    """What a rollback did: ``rolled_back``, ``aborted`` (a canary), ``unchanged``,
    ``duplicate`` or ``refused``, why, and the versions concerned."""

    action: str
    reason: str
    from_version: str | None = None
    to_version: str | None = None
    aborted: str | None = None  # the version whose rollout was aborted, if any

    @property
    def changed(self) -> bool:
        """True when traffic moved."""
        return self.action in (ROLLED_BACK, ABORTED)


def rollback(world: Rollouts, request: Request, attempts: int = 10) -> Outcome:
    """Decide, write and apply one rollback; re-decides if a rollout step wrote meanwhile."""
    key = str((request.incident or {}).get("incident_id", ""))
    for _ in range(attempts):
        snapshot = world.ledger.read()
        seen = (snapshot.document.get("incidents") or {}).get(key) if key else None
        if seen is not None and not _news(seen, request.incident or {}):
            why = f"incident {key} ({seen.get('state')}) was handled already: {seen.get('why')}"
            return Outcome(DUPLICATE, why)
        try:
            written, outcome = _write(world, snapshot, request)
        except LedgerConflictError:
            continue
        if outcome.changed:
            _apply(world, written.document, outcome)
        return outcome
    raise LedgerConflictError(f"{world.ledger.uri} kept changing: rollback gave up")


def _news(seen: Mapping[str, Any], incident: Mapping[str, Any]) -> bool:
    """True if ``incident`` moves the one ``seen`` on: an incident opens once and closes once,
    and Pub/Sub may deliver its open again after its close (no ordering, at least once)."""
    return seen.get("state") == "open" and incident.get("state") == "closed"


def _write(world: Rollouts, snapshot: Snapshot, request: Request) -> tuple[Snapshot, Outcome]:
    """Decide over ``snapshot`` and the endpoint as it is now, and write the decision."""
    deployed = versions_of(world)
    decided: list[Outcome] = []

    def change(doc: dict[str, Any]) -> None:
        decided.append(_decide(doc, deployed, request, world.clock()))

    return commit(world, snapshot, change, 0.0), decided[-1]


def _decide(
    doc: dict[str, Any], deployed: Mapping[str, str], request: Request, now: float
) -> Outcome:
    """Change ``doc`` for ``request``; the incident is recorded even when nothing moves."""
    incident = dict(request.incident or {})
    if incident.get("state", "open") == "open":
        outcome = _judge(doc, deployed, request, now)
    else:
        outcome = Outcome(UNCHANGED, "the incident closed")
    key = str(incident.get("incident_id", ""))
    if key:
        incidents = doc.setdefault("incidents", {})
        seen = incidents.pop(key, None)  # re-inserted last: the dict keeps arrival order
        entry = {**(seen or {}), **incident, "updated_at": record.now_text(now)}
        entry.setdefault("received_at", record.now_text(now))
        model = str(incident.get("deployed_model_id"))
        entry["version_id"] = entry.get("version_id") or deployed.get(model)
        if seen is None:
            entry.update(action=outcome.action, why=outcome.reason)
        incidents[key] = entry
        for old in list(incidents)[:-KEEP_INCIDENTS]:
            del incidents[old]
    return outcome


def _judge(
    doc: dict[str, Any], deployed: Mapping[str, str], request: Request, now: float
) -> Outcome:
    split = {m: int(s) for m, s in (doc.get("split") or {}).items() if m in deployed}
    serving = [m for m, share in split.items() if share > 0]
    champion = max(serving, key=lambda m: (split[m], m)) if serving else None
    rollout = doc.get("rollout")
    bad = request.bad_model
    if rollout and request.to is None:
        # by hand, "roll back" during a rollout undoes the rollout; an incident about the
        # newcomer does the same
        newcomer = bad is not None and bad != champion
        if bad is None or (newcomer and deployed.get(bad) == rollout.get("version_id")):
            return _abort_rollout(doc, deployed, request, now, bad)
    if champion is None:
        return Outcome(UNCHANGED, "no deployed model takes traffic on the endpoint")
    bad = bad or champion
    bad_version = deployed.get(bad)
    if bad_version is None:
        return Outcome(UNCHANGED, f"deployed model {bad} is no longer on the endpoint")
    if split.get(bad, 0) == 0:
        return Outcome(
            UNCHANGED, f"version {bad_version} ({bad}) takes no traffic: already replaced"
        )
    if bad != champion:
        return Outcome(UNCHANGED, f"version {bad_version} ({bad}) is not the endpoint's champion")
    last = (doc.get("rollbacks") or [{}])[-1].get("epoch")
    if request.cooldown and last is not None and now - float(last) < request.cooldown:
        ago = now - float(last)
        return Outcome(
            UNCHANGED,
            f"cool-down: the last rollback was {ago:.0f} s ago (under {request.cooldown:.0f} s)",
        )
    target = _target(doc, deployed, request, bad_version)
    if isinstance(target, Outcome):
        return target
    return _to_previous(doc, deployed, request, now, bad, target)


def _target(
    doc: Mapping[str, Any], deployed: Mapping[str, str], request: Request, bad_version: str
) -> str | Outcome:
    """The deployed model to return to, or the refusal saying why there is none."""
    models = {version: model for model, version in deployed.items()}  # the newest per version
    if request.to is not None:
        if request.to == bad_version:
            return Outcome(REFUSED, f"version {request.to} is the one being rolled back")
        if request.to not in models:
            return Outcome(
                REFUSED,
                f"version {request.to} is not deployed on the endpoint: only a deployed version "
                "takes traffic at once (deployed: " + ", ".join(sorted(models)) + ")",
            )
        return models[request.to]
    states = {v: e.get("state") for v, e in (doc.get("versions") or {}).items()}
    for change in reversed(doc.get("history") or []):
        to = change.get("to") or {}
        for version, share in sorted(to.items(), key=lambda kv: -int(kv[1])):
            if int(share) < 50:
                break
            usable = version != bad_version and states.get(version) not in _NOT_A_TARGET
            if usable and version in models:
                return models[version]
    return Outcome(
        REFUSED,
        f"no previous version to roll back to: no version that served before {bad_version} "
        "is still deployed (and never failed or was rolled back); deploy one first, or give "
        "`salesmesh rollback --to VERSION`",
    )


def _abort_rollout(
    doc: dict[str, Any],
    deployed: Mapping[str, str],
    request: Request,
    now: float,
    bad: str | None,
) -> Outcome:
    """The rollout in progress ends ``aborted``: traffic as before it, its version
    ``rolled_back``, its model undeployed."""
    rollout = doc["rollout"]
    version = str(rollout["version_id"])
    model = bad or rollout.get("deployed_model_id")
    before = {m: int(s) for m, s in (rollout.get("before") or {}).items() if m in deployed}
    why = f"rollout of version {version} aborted: {request.reason}"
    if before and doc.get("split") != before:
        record.decide_split(doc, before, deployed, now, request.who, why)
        _note_incident(doc, request)
    doc["undeploy"] = [str(model)] if model else []
    record.sweep(doc, rollout, now)
    record.finish(doc, State.ABORTED, now, why, record.ROLLED_BACK)
    champion = max(before, key=lambda m: before[m]) if before else None
    back_to = deployed.get(champion or "")
    _log_rollback(doc, request, now, version, back_to, version)
    return Outcome(ABORTED, why, version, back_to, version)


def _to_previous(
    doc: dict[str, Any],
    deployed: Mapping[str, str],
    request: Request,
    now: float,
    bad: str,
    target: str,
) -> Outcome:
    bad_version, target_version = deployed[bad], deployed[target]
    aborted = None
    undeploy = [bad]
    rollout = doc.get("rollout")
    if rollout:  # whatever it was rolling out, the endpoint goes back to a known version
        aborted = str(rollout["version_id"])
        if rollout.get("deployed_model_id") and rollout["deployed_model_id"] != target:
            undeploy.append(str(rollout["deployed_model_id"]))
        record.sweep(doc, rollout, now)
        record.finish(
            doc, State.ABORTED, now, f"aborted by a rollback: {request.reason}", record.ABORTED
        )
    why = f"rolled back from version {bad_version} to {target_version}: {request.reason}"
    split = {m: 100 if m == target else 0 for m in deployed}
    record.decide_split(doc, split, deployed, now, request.who, why)
    _note_incident(doc, request)
    doc["undeploy"] = undeploy
    record.set_version(doc, bad_version, record.ROLLED_BACK, now, reason=why)
    record.set_version(doc, target_version, record.DEPLOYED, now, reason=why)
    _log_rollback(doc, request, now, bad_version, target_version, aborted)
    return Outcome(ROLLED_BACK, why, bad_version, target_version, aborted)


def _note_incident(doc: dict[str, Any], request: Request) -> None:
    if request.incident:
        doc["history"][-1]["incident"] = request.incident.get("incident_id")


def _log_rollback(
    doc: dict[str, Any],
    request: Request,
    now: float,
    bad: str | None,
    target: str | None,
    aborted: str | None,
) -> None:
    entry = {
        "at": record.now_text(now),
        "epoch": now,
        "who": request.who,
        "why": request.reason,
        "incident": (request.incident or {}).get("incident_id"),
        "from_version": bad,
        "to_version": target,
        "aborted": aborted,
    }
    doc["rollbacks"] = [*(doc.get("rollbacks") or []), entry][-KEEP_ROLLBACKS:]


def _apply(world: Rollouts, doc: dict[str, Any], outcome: Outcome) -> None:
    """Traffic first (it is what users feel), then the aliases and labels (bookkeeping)."""
    reconcile(world, world.ledger.read().document)
    if outcome.to_version:
        try:
            champion = world.registry.alias(CHAMPION)
            if champion is None or champion.version_id != outcome.to_version:
                world.registry.set_alias(CHAMPION, outcome.to_version)
            before = _previous_of(doc, outcome.to_version, outcome.from_version)
            if outcome.action == ROLLED_BACK and before is not None:
                world.registry.set_alias(PREVIOUS, before)
            elif outcome.action == ROLLED_BACK:  # nothing is left to return to after this
                world.registry.remove_alias(PREVIOUS)
        except (KeyError, ValueError, MeshError) as exc:
            world.log.warning(f"traffic rolled back, but the aliases did not move: {exc}")
    if outcome.action == ROLLED_BACK and outcome.to_version:
        label(world, outcome.to_version, record.DEPLOYED)
    if outcome.from_version:
        label(world, outcome.from_version, record.ROLLED_BACK)
    if outcome.aborted and outcome.aborted != outcome.from_version:
        label(world, outcome.aborted, record.ABORTED)


def _previous_of(doc: Mapping[str, Any], champion: str, bad: str | None) -> str | None:
    """The version that served before ``champion`` in the traffic history, if any usable."""
    states = {v: e.get("state") for v, e in (doc.get("versions") or {}).items()}
    seen_champion = False
    for change in reversed(doc.get("history") or []):
        for version, share in (change.get("to") or {}).items():
            if int(share) < 50:
                continue
            if version == champion:
                seen_champion = True
            elif seen_champion and version != bad and states.get(version) not in _NOT_A_TARGET:
                return str(version)
    return None
