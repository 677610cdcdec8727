"""The local stand-in for Cloud Monitoring's alerting: the same policies over the Metrics port.

Each :meth:`Monitor.evaluate` reads, for every policy and every deployed model, one window of
``Metrics.window(model, policy.window_seconds)`` and moves that condition along as Cloud
Monitoring does for a threshold condition:

- **breach**: the figure exceeds the threshold. An incident OPENS once the breach has lasted
  the policy's ``duration_seconds`` without a break (at once when it is 0) and is reported once.
- **clear**: the figure is back under the threshold; an open incident CLOSES, reported once.
- **no data**: the window holds fewer than ``min_requests`` requests (or no latency figure).
  That is not a breach, and it breaks a breach in progress. It closes an open incident, as
  the policies' ``EVALUATION_MISSING_DATA_INACTIVE`` does on Google Cloud: after a rollback
  the bad version takes no traffic, and its incident should end rather than stay open forever.
  A model no longer deployed is no data too.

The monitor keeps its state in memory; a restarted monitor starts from nothing, so a breach
still going on opens a new incident once the duration passes again. Incident ids are
``<endpoint>.<policy>.<deployed model>.<opening time in ms>``: the open and the close of one
incident share it, and two openings never do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from salesmesh.alerts.incident import Incident, State, to_payload
from salesmesh.alerts.policies import Kind, Policy
from salesmesh.ports import Metrics, ModelMetrics


@dataclass
class _Condition:
    """Where one (policy, deployed model) condition stands."""

    breach_since: float | None = None
    incident: Incident | None = None


class Monitor:
    """Evaluates ``policies`` for every model ``deployed()`` names on endpoint ``endpoint_id``."""

    def __init__(
        self,
        policies: Sequence[Policy],
        metrics: Metrics,
        deployed: Callable[[], list[str]],
        endpoint_id: str,
        clock: Callable[[], float] = time.time,
        *,
        project_id: str = "local",
        location: str = "local",
    ) -> None:
        self.policies = tuple(policies)
        self.metrics = metrics
        self.deployed = deployed
        self.endpoint_id = endpoint_id
        self.clock = clock
        self.project_id = project_id
        self.location = location
        self._conditions: dict[tuple[str, str], _Condition] = {}
        self._policy_of: dict[str, Policy] = {}

    def evaluate(self) -> list[Incident]:
        """Read every window once; return the incidents that opened or closed, in that order.

        A :class:`~salesmesh.errors.MetricsError` from the port propagates and leaves every
        condition as it was: an unreadable window is neither a breach nor a clear.
        """
        now = self.clock()
        models = list(self.deployed())
        readings = [
            (policy, model, self.metrics.window(model, policy.window_seconds))
            for policy in self.policies
            for model in models
        ]
        changes: list[Incident] = []
        for policy, model, window in readings:
            change = self._step(policy, model, _figure(policy, window), now)
            if change is not None:
                changes.append(change)
        for (_policy, model), condition in sorted(self._conditions.items()):
            if model not in models and condition.incident is not None:
                gone = self._close(condition, None, now)
                changes.append(gone)
            if model not in models:
                condition.breach_since = None
        return changes

    def payload(self, incident: Incident) -> bytes:
        """The 1.2 notification to publish for ``incident`` (one :meth:`evaluate` returned)."""
        policy = self._policy_of[incident.incident_id]
        return to_payload(incident, policy, project_id=self.project_id, location=self.location)

    def open_incidents(self) -> list[Incident]:
        """Incidents open now, oldest first."""
        found = [c.incident for c in self._conditions.values() if c.incident is not None]
        return sorted(found, key=lambda i: (i.started_at, i.incident_id))

    def _step(self, policy: Policy, model: str, value: float | None, now: float) -> Incident | None:
        condition = self._conditions.setdefault((policy.name, model), _Condition())
        if value is None or not policy.breached(value):
            condition.breach_since = None
            if condition.incident is not None:
                return self._close(condition, value, now)
            return None
        if condition.breach_since is None:
            condition.breach_since = now
        if condition.incident is None and now - condition.breach_since >= policy.duration_seconds:
            condition.incident = self._open(policy, model, value, now)
            return condition.incident
        return None

    def _open(self, policy: Policy, model: str, value: float, now: float) -> Incident:
        observed = round(value, 3)
        incident = Incident(
            incident_id=f"{self.endpoint_id}.{policy.name}.{model}.{round(now * 1000)}",
            state=State.OPEN,
            started_at=int(now),
            policy_name=policy.display_name,
            condition_name=policy.display_name,
            summary=(
                f"{policy.metric_display_name} for endpoint {self.endpoint_id} with metric labels "
                f"{{deployed_model_id={model}}} is above the threshold of "
                f"{policy.threshold_value:.3f} with a value of {observed:.3f}."
            ),
            threshold_value=policy.threshold_value,
            observed_value=observed,
            endpoint_id=self.endpoint_id,
            deployed_model_id=model,
        )
        self._policy_of[incident.incident_id] = policy
        return incident

    def _close(self, condition: _Condition, value: float | None, now: float) -> Incident:
        opened = condition.incident
        assert opened is not None  # callers check; kept for mypy
        observed = None if value is None else round(value, 3)
        how = "no data" if observed is None else f"a value of {observed:.3f}"
        summary = opened.summary.split(" is above the threshold")[0]
        closed = Incident(
            incident_id=opened.incident_id,
            state=State.CLOSED,
            started_at=opened.started_at,
            ended_at=int(now),
            policy_name=opened.policy_name,
            condition_name=opened.condition_name,
            summary=f"{summary} returned to normal with {how}.",
            threshold_value=opened.threshold_value,
            observed_value=observed,
            endpoint_id=opened.endpoint_id,
            deployed_model_id=opened.deployed_model_id,
        )
        condition.incident = None
        return closed


def _figure(policy: Policy, window: ModelMetrics) -> float | None:
    """The figure ``policy`` compares with its threshold, or None for no data."""
    if window.requests < policy.min_requests:
        return None
    if policy.kind is Kind.LATENCY_P99:
        return window.p99_ms
    return window.error_rate
