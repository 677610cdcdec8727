"""Cloud Function ``train_trigger``: a sales file finalized in the data bucket -> one run."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from salesmesh import runtime
from salesmesh.data.source import storage_client
from salesmesh.errors import BadEventError
from salesmesh.events import StorageObject
from salesmesh.intake import handle_upload
from salesmesh.settings import Settings


@functions_framework.cloud_event
def train_trigger(event: CloudEvent) -> None:
    """Validate a newly uploaded sales file and launch one training run for it."""
    settings = Settings.from_env()
    log = runtime.logger("train_trigger", settings)
    try:
        upload = StorageObject.from_cloud_event(event)
    except BadEventError as exc:
        # redelivering a malformed event cannot fix it: log it whole, at ERROR, and return
        log.error(
            f"malformed event {event['id']}: {exc}", event_type=event["type"], data=event.data
        )
        return
    handle_upload(upload, settings, runtime.launcher(settings), storage_client, log)
