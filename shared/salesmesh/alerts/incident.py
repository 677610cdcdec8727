"""Cloud Monitoring's incident notification (Pub/Sub, schema version ``1.2``): parse and build.

A Pub/Sub notification channel publishes one JSON object per incident change::

    {"version": "1.2", "incident": {"incident_id", "scoping_project_id", "url", "started_at",
     "ended_at", "state", "summary", "observed_value", "resource": {"type", "labels"},
     "metric": {"type", "displayName", "labels"}, "policy_name", "condition": {...},
     "condition_name", "threshold_value", "documentation", ...}}

What real notifications teach, and this parser follows:

- ``started_at``/``ended_at`` are integer Unix seconds; ``ended_at`` is ``null`` (or missing)
  while the incident is open. The console's "send test notification" sends ``"version": "test"``
  with ``"state": "OPEN"`` and ``ended_at`` 0, so states are compared case-insensitively and a
  0 end means "not ended".
- ``observed_value`` and ``threshold_value`` are strings; ``observed_value`` may be prose
  ("Incident cancelled because the alert policy condition was deleted ...") rather than a
  number, which parses to ``observed_value=None``, not an error.
- ``documentation`` is an object (``content``, ``mime_type``, ``subject``) in 1.2 and a string in
  the test notification; either is accepted, neither is needed here.
- ``policy_name`` is the policy's display name in 1.2 (a resource name in the test one).

On Vertex AI's metrics the resource is ``aiplatform.googleapis.com/Endpoint`` with the
``endpoint_id`` resource label, and the offending model is the ``deployed_model_id`` metric
label. Pure: no I/O, no cloud SDK.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from salesmesh.alerts.policies import Policy
from salesmesh.errors import BadEventError

VERSION = "1.2"
TEST_VERSION = "test"
# the policy_name of incidents salesmesh.accuracy publishes when a serving version's live
# accuracy degrades: alert_handler logs them and rolls nothing back
ACCURACY_POLICY = "salesmesh live accuracy"


class BadIncidentError(BadEventError):
    """A notification is not a Cloud Monitoring incident this parser accepts.

    ``reason`` is a short code (``not_json``, ``not_object``, ``wrong_version``,
    ``missing_field``, ``ill_typed_field``, ``bad_value``) for logs and tests; the message
    names the field and what was found.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class State(StrEnum):
    """An incident is open while its condition is met, closed once it is not."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Incident:
    """What alert_handler needs from one notification; ``raw`` keeps the whole payload."""

    incident_id: str
    state: State
    started_at: int
    policy_name: str
    condition_name: str
    summary: str
    ended_at: int | None = None
    threshold_value: float | None = None
    observed_value: float | None = None
    endpoint_id: str | None = None
    deployed_model_id: str | None = None
    version: str = VERSION
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_test(self) -> bool:
        """True for the console's test notification: nothing real is wrong."""
        return self.version == TEST_VERSION


def parse(payload: bytes | str | Mapping[str, Any]) -> Incident:
    """The incident in ``payload`` (JSON text or already decoded), or BadIncidentError."""
    document: Any = payload
    if isinstance(payload, bytes | str):
        try:
            document = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadIncidentError("not_json", f"incident notification is not JSON: {exc}") from exc
    if not isinstance(document, Mapping):
        found = type(document).__name__
        raise BadIncidentError(
            "not_object", f"incident notification must be an object, got {found}"
        )
    version = document.get("version")
    if version not in (VERSION, TEST_VERSION):
        raise BadIncidentError(
            "wrong_version",
            f'incident notification "version" must be "{VERSION}" or "{TEST_VERSION}", '
            f"got {version!r}: only schema 1.2 is understood",
        )
    incident = _object(document, "incident", "")
    state_text = _string(incident, "state").lower()
    if state_text not in set(State):
        raise BadIncidentError(
            "bad_value", f'incident.state must be "open" or "closed", got {state_text!r}'
        )
    resource = _object(incident, "resource", "incident.")
    metric = _object(incident, "metric", "incident.")
    _string(resource, "type", "incident.resource.")
    _string(metric, "type", "incident.metric.")
    ended = _time(incident, "ended_at", required=False)
    return Incident(
        incident_id=_string(incident, "incident_id", non_empty=True),
        state=State(state_text),
        started_at=_time(incident, "started_at", required=True) or 0,
        ended_at=ended or None,  # 0 is the test notification's "not ended"
        policy_name=_string(incident, "policy_name"),
        condition_name=_string(incident, "condition_name"),
        summary=_string(incident, "summary"),
        threshold_value=_number_text(incident, "threshold_value"),
        observed_value=_number_text(incident, "observed_value"),
        endpoint_id=_labels(resource, "incident.resource.").get("endpoint_id"),
        deployed_model_id=_labels(metric, "incident.metric.").get("deployed_model_id"),
        version=str(version),
        raw=document,
    )


def _missing(path: str) -> BadIncidentError:
    return BadIncidentError("missing_field", f"incident notification has no {path}")


def _ill_typed(path: str, expected: str, value: Any) -> BadIncidentError:
    found = type(value).__name__
    return BadIncidentError("ill_typed_field", f"{path} must be {expected}, got {found} {value!r}")


def _object(parent: Mapping[str, Any], key: str, prefix: str) -> Mapping[str, Any]:
    if key not in parent:
        raise _missing(prefix + key)
    value = parent[key]
    if not isinstance(value, Mapping):
        raise _ill_typed(prefix + key, "an object", value)
    return value


def _string(
    parent: Mapping[str, Any], key: str, prefix: str = "incident.", *, non_empty: bool = False
) -> str:
    if key not in parent:
        raise _missing(prefix + key)
    value = parent[key]
    if not isinstance(value, str):
        raise _ill_typed(prefix + key, "a string", value)
    if non_empty and not value:
        raise BadIncidentError("bad_value", f"{prefix}{key} must not be empty")
    return value


def _time(parent: Mapping[str, Any], key: str, *, required: bool) -> int | None:
    value = parent.get(key)
    if value is None:
        if required:
            raise _missing("incident." + key)
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _ill_typed("incident." + key, "Unix seconds (a non-negative integer)", value)
    return value


def _number_text(parent: Mapping[str, Any], key: str) -> float | None:
    """A figure Cloud Monitoring prints as a string; None when absent, empty or prose."""
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _ill_typed("incident." + key, "a string", value)
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _labels(parent: Mapping[str, Any], prefix: str) -> dict[str, str]:
    value = parent.get("labels", {})
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _ill_typed(prefix + "labels", "an object of strings", value)
    return dict(value)


def to_payload(
    incident: Incident, policy: Policy, *, project_id: str = "local", location: str = "local"
) -> bytes:
    """The 1.2 notification Cloud Monitoring would publish for ``incident`` of ``policy``."""
    opened = incident.state is State.OPEN
    observed = "no data" if incident.observed_value is None else f"{incident.observed_value:.3f}"
    resource_labels = {"resource_container": project_id, "location": location}
    if incident.endpoint_id is not None:
        resource_labels["endpoint_id"] = incident.endpoint_id
    metric_labels = {}
    if incident.deployed_model_id is not None:
        metric_labels["deployed_model_id"] = incident.deployed_model_id
    threshold = incident.threshold_value
    body = {
        "version": incident.version,
        "incident": {
            "incident_id": incident.incident_id,
            "scoping_project_id": project_id,
            "url": "",  # no console locally; Cloud Monitoring links the incident here
            "severity": "no severity",
            "started_at": incident.started_at,
            "ended_at": incident.ended_at,
            "state": incident.state.value,
            "summary": incident.summary,
            "apigee_url": "",
            "observed_value": observed,
            "resource": {"type": policy.resource_type, "labels": resource_labels},
            "resource_type_display_name": "Vertex AI Endpoint",
            "resource_id": "",
            "resource_display_name": incident.endpoint_id or "",
            "resource_name": f"{project_id} {incident.endpoint_id or ''}".strip(),
            "metric": {
                "type": policy.metric_type,
                "displayName": policy.metric_display_name,
                "labels": metric_labels,
            },
            "metadata": {"system_labels": {}, "user_labels": {}},
            "policy_name": incident.policy_name,
            "policy_user_labels": {"app": "salesmesh"},
            "documentation": {
                "content": policy.documentation,
                "mime_type": "text/markdown",
                "subject": f"[{'ALERT' if opened else 'RESOLVED'}] {policy.display_name}",
            },
            "condition": policy.condition(project_id),
            "condition_name": incident.condition_name,
            "threshold_value": "" if threshold is None else f"{threshold:g}",
        },
    }
    return json.dumps(body, sort_keys=True).encode()
