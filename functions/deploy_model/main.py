"""Cloud Function ``deploy_model``: a run's manifest finalized in the model bucket -> a version."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from salesmesh import runtime
from salesmesh.rollout.deploy import handle_manifest
from salesmesh.settings import Settings


@functions_framework.cloud_event
def deploy_model(event: CloudEvent) -> None:
    """Verify a finished run, register it, and roll it out behind the promotion gate."""
    settings = Settings.from_env()
    log = runtime.logger("deploy_model", settings)
    if (artifact := runtime.storage_object(event, log)) is None:
        return
    registry, endpoint = runtime.registry(settings), runtime.endpoint(settings)
    handle_manifest(artifact, settings, registry, endpoint, runtime.deploy_lock(settings), log)
