"""Cloud Function ``train_trigger``: a sales file finalized in the data bucket -> one run; a
scheduled retrain (Cloud Scheduler, or ``salesmesh up --retrain-every``) -> a run on HEAD."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from salesmesh import runtime
from salesmesh.data.source import storage_client
from salesmesh.intake import handle_upload
from salesmesh.sales import retrain
from salesmesh.settings import Settings


@functions_framework.cloud_event
def train_trigger(event: CloudEvent) -> None:
    """Validate a newly uploaded sales file and launch one training run for it."""
    settings = Settings.from_env()
    log = runtime.logger("train_trigger", settings)
    if event["type"] == retrain.EVENT_TYPE:
        retrain.on_schedule(event.data, settings, runtime.launcher(settings), storage_client, log)
        return
    if (upload := runtime.storage_object(event, log)) is None:
        return
    handle_upload(upload, settings, runtime.launcher(settings), storage_client, log)
