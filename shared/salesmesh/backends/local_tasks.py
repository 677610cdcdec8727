"""Local task queue: each delayed task is one JSON object in the mesh's state bucket.

``gs://<bucket>/tasks/<function>/<name>.json`` holds the task's name, function, event type,
data, ``due`` and ``created`` (RFC 3339 UTC). The local mesh hears the object's finalize event
(and lists ``tasks/`` when it starts, so the queue survives a restart), delivers the event when
it is due and deletes the object once the function took it or the retries ran out
(:mod:`salesmesh.local.delivery`).

Names deduplicate as Cloud Tasks' task ids do: a name already queued is refused. The object is
created with ``if_generation_match=0``, atomic on Cloud Storage; the emulator ignores that
precondition, so the check and the create also run under an exclusive ``fcntl`` lock on
``<lock_dir>/tasks.lock`` (:func:`salesmesh.locks.file_lock`), as the local registry does.
Unlike Cloud Tasks, a name is free again once its task was delivered: the local queue does not
remember names that ran (Cloud Tasks does, for about an hour).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from salesmesh.errors import SourceError
from salesmesh.locks import file_lock
from salesmesh.ports import TASK_NAME, Task, rfc3339

PREFIX = "tasks/"
_SUFFIX = ".json"
# one check and one create, each of which the storage client may retry against a busy emulator
_LOCK_SECONDS = 600.0
# a Cloud Functions name, which becomes a folder of the bucket
_FUNCTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_FIELDS = ("name", "function", "event_type", "data", "due", "created")


def object_name(function: str, name: str) -> str:
    """Where the task ``name`` for ``function`` lives in the state bucket."""
    return f"{PREFIX}{function}/{name}{_SUFFIX}"


@dataclass(frozen=True)
class QueuedTask:
    """A task as stored: what the mesh delivers, and when (``due``, RFC 3339 UTC)."""

    name: str
    function: str
    event_type: str
    data: Mapping[str, Any]
    due: str
    created: str

    @property
    def due_at(self) -> datetime:
        """``due`` as an aware datetime."""
        return datetime.fromisoformat(self.due.replace("Z", "+00:00"))

    def to_json(self) -> str:
        """The stored document."""
        record = {key: getattr(self, key) for key in _FIELDS}
        record["data"] = dict(self.data)
        return json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> QueuedTask:
        """The task stored as ``text``; ValueError naming ``where`` if it is not one."""
        try:
            record = json.loads(text)
            task = cls(**{key: record[key] for key in _FIELDS})
            aware = task.due_at.tzinfo is not None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where} is not a task: {exc}") from exc
        texts = (task.name, task.function, task.event_type, task.created)
        if not (aware and all(isinstance(t, str) for t in texts) and isinstance(task.data, dict)):
            raise ValueError(f"{where} is not a task: {record}")
        if not TASK_NAME.fullmatch(task.name):
            raise ValueError(f"{where} is not a task: name {task.name!r} is not a task id")
        return task

    @classmethod
    def of(cls, task: Task, now: datetime | None = None) -> QueuedTask:
        """``task`` as queued at ``now``: due ``delay_seconds`` later."""
        now = now or datetime.now(UTC)
        return cls(
            name=task.name,
            function=task.function,
            event_type=task.event_type,
            data=dict(task.data),
            due=rfc3339(now + timedelta(seconds=task.delay_seconds)),
            created=rfc3339(now),
        )


class LocalTaskQueue:
    """Delayed tasks as objects in ``bucket`` (the state bucket), locked through ``lock_dir``."""

    def __init__(self, bucket: str, *, lock_dir: Path, client: Any | None = None) -> None:
        self.bucket = bucket
        self.lock_path = Path(lock_dir) / "tasks.lock"
        self._client = client

    def schedule(self, task: Task) -> bool:
        """Queue ``task``; False, queuing nothing, when a task of that name is queued."""
        from google.api_core import exceptions
        from requests import RequestException

        if not _FUNCTION.fullmatch(task.function):
            raise ValueError(f"task {task.name}: {task.function!r} is not a function name")
        try:  # plain JSON only: what the function receives must equal what was given
            queued = QueuedTask.of(task)
            text = queued.to_json()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"task {task.name} data must be plain JSON: {exc}") from exc
        blob = self._blob(object_name(task.function, task.name))
        uri = f"gs://{self.bucket}/{blob.name}"
        with file_lock(self.lock_path, _LOCK_SECONDS, poll=0.01):
            try:
                if blob.exists():
                    return False
                blob.upload_from_string(
                    text, content_type="application/json", if_generation_match=0
                )
            except exceptions.PreconditionFailed:
                return False  # Cloud Storage's own answer, where the precondition is kept
            except exceptions.NotFound as exc:
                msg = (
                    f"cannot queue task {uri}: bucket {self.bucket} does not exist (start the "
                    "mesh with `salesmesh up`, or create the state bucket)"
                )
                raise SourceError(msg) from exc
            except (exceptions.GoogleAPIError, RequestException) as exc:
                raise SourceError(f"cannot queue task {uri}: {exc}") from exc
        return True

    def _blob(self, name: str) -> Any:
        if self._client is None:
            from salesmesh.data.source import storage_client

            self._client = storage_client()
        return self._client.bucket(self.bucket).blob(name)
