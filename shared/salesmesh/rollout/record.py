"""Pure changes to a ledger document (:mod:`salesmesh.rollout.ledger`): no I/O here.

A rollout moves ``registered -> deploying -> canary -> promoting -> done``, or ends ``failed``
(its deployment or canary did not pass) or ``aborted`` (a rollback or an operator stopped it).
Each transition is appended to the rollout's ``transitions`` with its time and reason. A
finished rollout leaves ``rollout`` for the ``rollouts`` list, so ``rollout`` is always the one
in progress, or None.

``split`` is the traffic split the ledger wants (deployed-model id -> percent); every step puts
the endpoint back to it if it differs, which is how a step that died between its decision and
its action is completed by the next. ``history`` holds one entry per decided split change.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from salesmesh.ports import rfc3339


class State(StrEnum):
    """Where a rollout is."""

    REGISTERED = "registered"
    DEPLOYING = "deploying"
    CANARY = "canary"
    PROMOTING = "promoting"
    DONE = "done"
    ABORTED = "aborted"
    FAILED = "failed"


# what a version is, as `salesmesh versions` shows it
QUEUED, ROLLING_OUT, DEPLOYED, STANDBY, RETIRED = (
    "queued",
    "rolling_out",
    "deployed",
    "standby",
    "retired",
)
GATED, FAILED, ABORTED, ROLLED_BACK = "gated", "failed", "aborted", "rolled_back"
FINAL_VERSION_STATES = frozenset({DEPLOYED, STANDBY, RETIRED, GATED, FAILED, ABORTED, ROLLED_BACK})
KEEP_ROLLOUTS = 200  # finished rollouts kept in the record; history is kept whole


def now_text(epoch: float) -> str:
    """RFC 3339 text of an epoch time."""
    from datetime import UTC, datetime

    return rfc3339(datetime.fromtimestamp(epoch, UTC))


def set_version(doc: dict[str, Any], version_id: str, state: str, at: float, **fields: Any) -> None:
    """Record ``state`` (and any other fields) for a version."""
    entry = doc["versions"].setdefault(version_id, {"version_id": version_id})
    entry.update(fields, state=state, updated=now_text(at))


def queue_version(doc: dict[str, Any], entry: Mapping[str, Any], at: float) -> bool:
    """Queue a registered version for a rollout; False if it is already known to the ledger
    beyond being registered (queued, rolling out or decided)."""
    version_id = str(entry["version_id"])
    doc["runs"][str(entry["run_id"])] = version_id
    known = doc["versions"].get(version_id, {}).get("state")
    if known not in (None, "registered"):
        return False
    doc["queue"].append({**entry, "queued_at": now_text(at)})
    set_version(
        doc,
        version_id,
        QUEUED,
        at,
        run_id=entry["run_id"],
        correlation_id=entry.get("correlation_id", ""),
        artifact_uri=entry.get("artifact_uri", ""),
    )
    return True


def claim_registration(
    run_id: str, token: str, at: float, ttl: float, doc: dict[str, Any]
) -> bool | None:
    """Claim the registration of ``run_id`` for the delivery holding ``token``: True if this
    one may register it (the claim is now in ``doc``), False if the run is queued already, None
    while another delivery's claim younger than ``ttl`` seconds holds it."""
    held = doc.setdefault("registering", {}).get(run_id)
    if run_id in doc["runs"]:
        return False
    if held and held["token"] != token and at - float(held["at"]) < ttl:
        return None
    doc["registering"][run_id] = {"token": token, "at": at}
    return True


def start(
    doc: dict[str, Any],
    entry: Mapping[str, Any],
    at: float,
    verdict: Mapping[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Make the queued ``entry`` the rollout in progress, in state ``registered``; the
    gate's ``verdict`` (its reason and evidence) is kept with the version, not the rollout."""
    doc["queue"] = [q for q in doc["queue"] if q["version_id"] != entry["version_id"]]
    doc["rollout"] = {
        "id": entry["run_id"],
        "version_id": entry["version_id"],
        "run_id": entry["run_id"],
        "correlation_id": entry.get("correlation_id", ""),
        "artifact_uri": entry.get("artifact_uri", ""),
        "probe": dict(entry.get("probe") or {}),
        "state": State.REGISTERED.value,
        "started_at": now_text(at),
        "operation": None,
        "deployed_model_id": None,
        "transitions": [],
        **fields,
    }
    transition(doc, State.REGISTERED, at, "passed the gate: " + str(fields.get("gate", "")))
    # the version keeps why it passed, and on what evidence, after the rollout is forgotten
    set_version(doc, entry["version_id"], ROLLING_OUT, at, gate=dict(verdict or {}))


def transition(doc: dict[str, Any], state: State, at: float, reason: str) -> None:
    """Move the rollout in progress to ``state``, recording when and why."""
    rollout = doc["rollout"]
    rollout["state"] = state.value
    rollout["reason"] = reason
    rollout["transitions"].append({"state": state.value, "at": now_text(at), "reason": reason})


def finish(doc: dict[str, Any], state: State, at: float, reason: str, version_state: str) -> None:
    """End the rollout in progress as ``state``; its version becomes ``version_state``."""
    transition(doc, state, at, reason)
    rollout = doc["rollout"]
    rollout["finished_at"] = now_text(at)
    set_version(doc, rollout["version_id"], version_state, at, reason=reason)
    doc["rollouts"] = [*doc["rollouts"], rollout][-KEEP_ROLLOUTS:]
    doc["rollout"] = None


def sweep(doc: dict[str, Any], rollout: Mapping[str, Any], at: float) -> None:
    """Remember to undeploy the model of an aborted rollout whose deployment may still be on
    its way (no deployed model known yet): it would otherwise show up later at 0 % and stay
    deployed, and on Vertex AI a deployed model costs its nodes every hour."""
    if rollout.get("deployed_model_id") or not rollout.get("deploy_starts"):
        return
    entry = {"version_id": str(rollout["version_id"]), "since": at}
    doc["sweep"] = [*(doc.get("sweep") or []), entry]


def decide_split(
    doc: dict[str, Any],
    split: Mapping[str, int],
    versions: Mapping[str, str],
    at: float,
    who: str,
    why: str,
) -> None:
    """Record a new wanted split (deployed-model id -> percent) and its history entry.

    ``versions`` maps deployed-model ids to version ids, so the history reads in versions.
    """
    before = by_version(doc.get("split") or {}, versions)
    doc["split"] = {k: int(v) for k, v in split.items()}
    rollout = doc.get("rollout") or {}
    doc["history"].append(
        {
            "at": now_text(at),
            "who": who,
            "why": why,
            "rollout": rollout.get("id"),
            "from": before,
            "to": by_version(split, versions),
            "split": dict(doc["split"]),
        }
    )


def by_version(split: Mapping[str, int], versions: Mapping[str, str]) -> dict[str, int]:
    """A split keyed by version id (deployed models of unknown versions keep their own id)."""
    shown: dict[str, int] = {}
    for model, share in split.items():
        key = versions.get(model, model)
        shown[key] = shown.get(key, 0) + int(share)
    return shown
