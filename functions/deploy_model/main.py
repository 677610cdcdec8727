"""Cloud Function ``deploy_model``: a run's manifest -> a queued version; rollout steps."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from salesmesh import runtime
from salesmesh.rollout.deploy import handle_event
from salesmesh.settings import Settings


@functions_framework.cloud_event
def deploy_model(event: CloudEvent) -> None:
    """Register a finished run and queue its rollout, or take the next step of a rollout."""
    settings = Settings.from_env()
    log = runtime.logger("deploy_model", settings)
    handle_event(event, runtime.rollouts(settings, log))
