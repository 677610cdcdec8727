"""Cloud Tasks in memory: the service side of ``CloudTasksClient.create_task``.

:class:`FakeCloudTasks` keeps the real ``Task`` protos it was sent and refuses a known name with
``AlreadyExists``, as Cloud Tasks does (it remembers a name for about an hour after its task ran).
Tests patch ``CloudTasksClient.create_task`` with ``autospec=True`` and this as the side effect.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2
from google.cloud.tasks_v2 import CreateTaskRequest

PROJECT, LOCATION, QUEUE = "demo-project", "europe-west1", "salesmesh-rollout"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}/queues/{QUEUE}"
URL = "https://deploy-model-abc123-ew.a.run.app/"
INVOKER = "salesmesh-tasks@demo-project.iam.gserviceaccount.com"
_TASK_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/queues/[^/]+/tasks/[A-Za-z0-9_-]{1,500}")


class FakeCloudTasks:
    """The service side of ``create_task``: existing queues and the tasks they hold."""

    def __init__(self, queues: tuple[str, ...] = (PARENT,)) -> None:
        self.queues = set(queues)
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.error: exceptions.GoogleAPICallError | None = None  # the next call fails so

    def create_task(self, _client: Any, request: Any = None, **flattened: Any) -> tasks_v2.Task:
        flattened = {k: v for k, v in flattened.items() if k in ("parent", "task")}
        req = CreateTaskRequest(request) if request is not None else CreateTaskRequest(**flattened)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if req.parent not in self.queues:
            raise exceptions.NotFound(f"Requested entity was not found: queue {req.parent}")
        task = tasks_v2.Task(req.task)
        if not _TASK_NAME.fullmatch(task.name) or not task.name.startswith(req.parent + "/"):
            raise exceptions.InvalidArgument(f"bad task name {task.name!r} for {req.parent}")
        if task.name in self.tasks:
            raise exceptions.AlreadyExists(
                "The task cannot be created because a task with this name existed too recently."
            )
        http = task.http_request
        if not http.url.startswith(("http://", "https://")):
            raise exceptions.InvalidArgument(f"HttpRequest.url must be an http(s) URL: {http.url}")
        if "schedule_time" not in task:
            task.schedule_time = datetime.now(UTC)  # Cloud Tasks' default: now
        task.create_time = datetime.now(UTC)
        self.tasks[task.name] = task
        return tasks_v2.Task(task)
