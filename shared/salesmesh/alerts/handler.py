"""What ``alert_handler`` does with one Pub/Sub message from Cloud Monitoring.

The message is a ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent whose
``message.data`` is the base64 of an incident notification (:mod:`salesmesh.alerts.incident`).
The handler logs the whole incident (WARNING when it opens, INFO when it closes) and, for an
open incident about a model on this function's endpoint, rolls back through the ledger
(:func:`salesmesh.rollout.rollback.rollback`, the same path as ``salesmesh rollback``).

It never asks for a redelivery that cannot help: a malformed message, a test notification,
an incident about another endpoint or a version already replaced is logged and acknowledged
(the function returns). Only a failure to read or write the ledger or the endpoint raises, so
Pub/Sub delivers the incident again; the ledger remembers every incident id it acted on, which
makes the redelivery (and any duplicate) change nothing twice.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from salesmesh.alerts.incident import ACCURACY_POLICY, BadIncidentError, Incident, State, parse
from salesmesh.errors import BadEventError
from salesmesh.rollout import rollback
from salesmesh.rollout.world import Rollouts

WHO = "alert_handler"


def message_data(data: Any) -> bytes:
    """The decoded ``message.data`` of a messagePublished event's data, or BadEventError."""
    if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
        raise BadEventError('a Pub/Sub event needs a "message" object in its data')
    encoded = data["message"].get("data")
    if not isinstance(encoded, str) or not encoded:
        raise BadEventError('the Pub/Sub message has no "data" (base64 text) to read')
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEventError(f"the Pub/Sub message's data is not base64: {exc}") from exc


def handle_event(event: Any, world: Rollouts) -> str:
    """Handle one delivered message; what happened, in a word (``malformed`` for bad input)."""
    try:
        incident = parse(message_data(event.data))
    except (BadEventError, BadIncidentError) as exc:
        world.log.error(
            f"malformed alert message {event['id']}: {exc}",
            event_type=event["type"],
            data=event.data,
        )
        return "malformed"
    published = event.data["message"].get("publishTime") or event.data["message"].get(
        "publish_time"
    )
    return handle_incident(incident, world, published_at=str(published or "")).action


def handle_incident(
    incident: Incident, world: Rollouts, published_at: str = ""
) -> rollback.Outcome:
    """Log ``incident`` whole and roll back when it is about this endpoint's serving model.

    ``published_at`` (RFC 3339) is when Pub/Sub took the notification, kept in the ledger so
    the time from alert to restored traffic can be told."""
    model = incident.deployed_model_id
    outcome = _why_not(incident, world)
    log = world.log
    if outcome is None:  # about this endpoint: read it, to log under the bad version's run
        doc = world.ledger.read().document
        versions = {d.id: d.version_id for d in world.endpoint.deployed()}
        version = versions.get(model or "") or _version_in_ledger(doc, incident.incident_id)
        known = (doc.get("versions") or {}).get(version or "") or {}
        log = log.bind(correlation_id=known.get("correlation_id") or None)
        if version:
            log = log.bind(labels={"run_id": known.get("run_id", ""), "version": version})
    world = dataclasses.replace(world, log=log, who=WHO)
    what = f"incident {incident.incident_id} {incident.state.value}: {incident.summary}"
    if incident.state is State.OPEN:
        log.warning(what, incident=dict(incident.raw))
    else:
        log.info(what, incident=dict(incident.raw))
    if outcome is None:
        state = incident.state.value
        outcome = rollback.rollback(
            world,
            rollback.Request(
                who=WHO,
                reason=f"incident {incident.incident_id} ({incident.policy_name})",
                bad_model=model,
                incident={
                    "incident_id": incident.incident_id,
                    "state": state,
                    "policy": incident.policy_name,
                    "summary": incident.summary,
                    "deployed_model_id": model,
                    "observed_value": incident.observed_value,
                    "threshold_value": incident.threshold_value,
                    "started_at": incident.started_at,
                    "ended_at": incident.ended_at,
                    **({"published_at": published_at} if published_at else {}),
                },
                cooldown=world.settings.rollback_cooldown,
            ),
        )
    if outcome.action == rollback.REFUSED:
        log.error(f"incident {incident.incident_id}: no rollback: {outcome.reason}")
    elif outcome.changed:
        log.warning(f"incident {incident.incident_id}: {outcome.reason}", rollback=outcome.action)
    else:
        log.info(f"incident {incident.incident_id}: no change: {outcome.reason}")
    return outcome


def _why_not(incident: Incident, world: Rollouts) -> rollback.Outcome | None:
    """Why this incident cannot concern the endpoint's traffic at all, or None."""
    if incident.is_test:
        return rollback.Outcome(rollback.UNCHANGED, "a test notification: nothing is wrong")
    if incident.policy_name == ACCURACY_POLICY:
        return rollback.Outcome(
            rollback.UNCHANGED,
            "a live-accuracy incident: logged, nothing rolled back (the versions before it "
            "forecast from older data still); upload newer sales to retrain, or roll back by "
            "hand with `salesmesh rollback`",
        )
    ours = world.settings.endpoint_id
    if incident.endpoint_id != ours:
        return rollback.Outcome(
            rollback.UNCHANGED,
            f"the incident is about endpoint {incident.endpoint_id!r}; this function serves "
            f"{ours!r}",
        )
    if incident.state is State.OPEN and not incident.deployed_model_id:
        return rollback.Outcome(
            rollback.UNCHANGED,
            "the incident names no deployed model (metric label deployed_model_id): the "
            "policy must group by it for a rollback to know what to roll back",
        )
    return None


def _version_in_ledger(doc: Mapping[str, Any], incident_id: str) -> str | None:
    found = (doc.get("incidents") or {}).get(incident_id) or {}
    return found.get("version_id")
