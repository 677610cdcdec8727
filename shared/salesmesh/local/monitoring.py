"""The local stand-in for Cloud Monitoring's alerting: the alert policies, evaluated in the mesh.

A thread runs :class:`~salesmesh.alerts.monitor.Monitor` over the packaged policies
(:mod:`salesmesh.alerts.policies`) with their windows and durations times
``SALESMESH_ALERT_SCALE``, the router's measurements (the ``Metrics`` port) and the endpoint's
deployed models, every :func:`interval` seconds: a sixth of the shortest window, at least
:data:`MIN_INTERVAL` (10 s for the real one-minute policy, 0.5 s at scale 0.05), so an idle
mesh reads the router's stats a few times a minute. Each incident that opens or closes is
published to the alerts topic as Cloud Monitoring's notification (incident JSON 1.2, no
attributes) and logged to the mesh log (``<state_dir>/logs/mesh.jsonl``, component
``monitor``, the incident id as correlation id): WARNING when it opens, INFO when it closes.

A router that cannot be read (:class:`~salesmesh.errors.MetricsError`) is logged once when it
starts failing and once when it answers again, not on every tick; an unreadable window is
neither a breach nor a clear. A notification that cannot be published is kept and sent again
on the next tick, in order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from salesmesh import runtime
from salesmesh.alerts import policies
from salesmesh.alerts.incident import Incident, State
from salesmesh.alerts.monitor import Monitor
from salesmesh.alerts.policies import Policy
from salesmesh.errors import MeshError, MetricsError
from salesmesh.logs import Logger
from salesmesh.ports import Metrics, Topic
from salesmesh.settings import Settings

MIN_INTERVAL = 0.2  # seconds; the router's stats answer in about a millisecond
log = logging.getLogger(__name__)


def scaled_policies(settings: Settings) -> list[Policy]:
    """The packaged policies with windows and durations times ``settings.alert_scale``.

    :func:`salesmesh.alerts.policies.load` divides by its ``scale`` (a speed-up factor), while
    SALESMESH_ALERT_SCALE multiplies (a fraction): hence the reciprocal.
    """
    return policies.load(scale=1.0 / settings.alert_scale)


def interval(found: list[Policy]) -> float:
    """Seconds between evaluations: a sixth of the shortest window, at least MIN_INTERVAL."""
    return max(min(p.window_seconds for p in found) / 6.0, MIN_INTERVAL)


def deployed_ids(settings: Settings) -> Callable[[], list[str]]:
    """The endpoint's deployed model ids, read from its record (no side effects)."""
    from salesmesh.backends.local_record import EndpointRecord

    record = EndpointRecord(settings.state_dir, settings.endpoint)
    return lambda: [model.id for model in record.deployed()]


class MonitorLoop:
    """Evaluates the alert policies in a thread and publishes incidents to ``topic``."""

    def __init__(
        self,
        settings: Settings,
        topic: Topic,
        *,
        metrics: Metrics | None = None,
        deployed: Callable[[], list[str]] | None = None,
    ) -> None:
        found = scaled_policies(settings)
        self.interval = interval(found)
        self.monitor = Monitor(
            found,
            metrics if metrics is not None else runtime.metrics(settings),
            deployed if deployed is not None else deployed_ids(settings),
            settings.endpoint_id,
            project_id=settings.project,
            location=settings.region,
        )
        self.topic = topic
        self.published: list[tuple[str, str]] = []  # (incident id, message id), oldest first
        self._log = Logger("monitor", stream=None, path=settings.state_dir / "logs" / "mesh.jsonl")
        self._unsent: list[tuple[Incident, bytes]] = []
        self._failing: str | None = None  # why the metrics cannot be read, while they cannot
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Evaluate every :attr:`interval` seconds in a background thread."""
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (after the evaluation in progress, if any)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.tick()
            except Exception:  # a monitor that dies quietly is worse than one that logs
                log.exception("the local monitor's evaluation failed; it goes on")

    def tick(self) -> list[Incident]:
        """Evaluate once; log and publish the incidents that opened or closed."""
        try:
            changes = self.monitor.evaluate()
        except MetricsError as exc:
            if self._failing is None:
                self._failing = str(exc)
                self._log.warning(f"cannot read the endpoint's metrics: {exc}")
                log.warning("cannot read the endpoint's metrics: %s", exc)
            return []
        if self._failing is not None:
            self._failing = None
            self._log.info("the endpoint's metrics can be read again")
        for incident in changes:
            self._announce(incident)
            self._unsent.append((incident, self.monitor.payload(incident)))
        self._publish()
        return changes

    def _announce(self, incident: Incident) -> None:
        fields: dict[str, Any] = {
            "incident_id": incident.incident_id,
            "state": str(incident.state),
            "deployed_model_id": incident.deployed_model_id,
            "observed_value": incident.observed_value,
            "threshold_value": incident.threshold_value,
        }
        what = "opened" if incident.state is State.OPEN else "closed"
        message = f"incident {what}: {incident.summary}"
        if incident.state is State.OPEN:
            self._log.warning(message, correlation_id=incident.incident_id, **fields)
            log.warning("%s", message)
        else:
            self._log.info(message, correlation_id=incident.incident_id, **fields)
            log.info("%s", message)

    def _publish(self) -> None:
        while self._unsent:
            incident, payload = self._unsent[0]
            try:
                message_id = self.topic.publish(payload)
            except MeshError as exc:
                self._log.error(
                    f"could not publish incident {incident.incident_id}; retrying: {exc}",
                    correlation_id=incident.incident_id,
                )
                return
            self._unsent.pop(0)
            self.published.append((incident.incident_id, message_id))
