"""Binary-mode CloudEvents as Eventarc POSTs them: ``ce-*`` headers, StorageObjectData body;
and the delayed tasks' events, which the local mesh POSTs and Cloud Tasks replays byte for byte
(``salesmesh.backends.gcp_tasks`` stores these very headers and body in each task).

Only the standard library: ``http.client`` with a timeout, one connection per POST (the
function servers are local; keep-alive would save well under a millisecond).
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic
from typing import Any

from salesmesh.wiring import STORAGE_FINALIZED

EXCERPT = 500  # characters of a failing answer kept in the dead-letter record


@dataclass(frozen=True)
class Event:
    """One CloudEvent: its attributes (the ``ce-*`` headers) and its JSON data."""

    id: str
    source: str
    type: str
    subject: str  # "" for none: CloudEvents makes it optional, and a task has none
    time: str
    data: dict[str, Any]
    created: float = field(default_factory=monotonic)  # when the mesh saw it

    def headers(self) -> dict[str, str]:
        """The binary-mode headers Eventarc sends."""
        headers = {
            "Content-Type": "application/json",
            "ce-id": self.id,
            "ce-source": self.source,
            "ce-specversion": "1.0",
            "ce-type": self.type,
            "ce-subject": self.subject,
            "ce-time": self.time,
        }
        if not self.subject:
            del headers["ce-subject"]
        return headers

    def body(self) -> bytes:
        """The JSON body: the event's data."""
        return json.dumps(self.data).encode()

    def to_dict(self) -> dict[str, Any]:
        """Attributes and data, as the dead-letter record keeps them."""
        return {"attributes": self.headers(), "data": self.data}


def finalized_event(data: Mapping[str, Any]) -> Event:
    """The ``google.cloud.storage.object.v1.finalized`` event for a StorageObjectData dict."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Event(
        id=uuid.uuid4().hex,
        source=f"//storage.googleapis.com/projects/_/buckets/{data['bucket']}",
        type=STORAGE_FINALIZED,
        subject=f"objects/{data['name']}",
        time=str(data.get("updated") or now),
        data=dict(data),
    )


def task_source(project: str, location: str, queue: str) -> str:
    """The ``ce-source`` of a delayed task's event: the queue's resource, as a CloudEvents
    source of a Google service is written (``//<service>/<resource name>``)."""
    return f"//cloudtasks.googleapis.com/projects/{project}/locations/{location}/queues/{queue}"


def task_event(
    name: str, event_type: str, data: Mapping[str, Any], source: str, time: str
) -> Event:
    """The event a delayed task delivers: its name is the ``ce-id``, so a redelivery (a retry,
    or a task run again after a crash) carries the id the handler saw the first time."""
    return Event(id=name, source=source, type=event_type, subject="", time=time, data=dict(data))


RETRAIN_EVENT = "dev.salesmesh.retrain.v1"  # salesmesh.sales.retrain.EVENT_TYPE


def retrain_event(project: str, location: str, who: str = "schedule") -> Event:
    """The event a schedule sends train_trigger (Cloud Scheduler's job on Google Cloud carries
    the same headers and body: terraform/scheduler.tf)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Event(
        id=uuid.uuid4().hex,
        source=f"//cloudscheduler.googleapis.com/projects/{project}/locations/{location}"
        "/jobs/salesmesh-retrain",
        type=RETRAIN_EVENT,
        subject="",
        time=now,
        data={"who": who},
    )


def post(url: str, event: Event, timeout: float) -> tuple[int | None, str, str]:
    """(status, body excerpt, error) of POSTing ``event`` in binary mode to ``url``."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout
    )
    try:
        connection.request("POST", parts.path or "/", event.body(), event.headers())
        response = connection.getresponse()
        body = response.read(EXCERPT * 4).decode("utf-8", "replace")
        return response.status, body, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, "", f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
