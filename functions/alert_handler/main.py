"""Cloud Function ``alert_handler``: a Cloud Monitoring incident -> a rollback, logged."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from salesmesh import runtime
from salesmesh.alerts.handler import WHO, handle_event
from salesmesh.settings import Settings


@functions_framework.cloud_event
def alert_handler(event: CloudEvent) -> None:
    """Log the incident; roll the endpoint back when its serving model is at fault."""
    settings = Settings.from_env()
    log = runtime.logger(WHO, settings)
    handle_event(event, runtime.rollouts(settings, log))
