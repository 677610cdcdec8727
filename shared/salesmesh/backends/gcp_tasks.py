"""Delayed tasks on Google Cloud: one Cloud Tasks HTTP task per step, POSTed to deploy_model.

Each :class:`~salesmesh.ports.Task` becomes ``CloudTasksClient.create_task`` of a task named
``<queue>/tasks/<name>`` with a ``schedule_time`` of now + ``delay_seconds`` and an HTTP
request: POST to the function's URL, the binary-mode CloudEvent's ``ce-*`` headers and JSON
body (the very ones the local mesh POSTs: :func:`salesmesh.local.binary.task_event`), and an
OIDC token. What this relies on, from Google's documentation:

- *Names deduplicate.* A ``create_task`` naming a task that exists, or that was executed or
  deleted within about an hour (queues created through the Cloud Tasks API), fails with
  ``ALREADY_EXISTS``: :meth:`CloudTasksQueue.schedule` answers False. Named tasks cost extra
  latency on create; a step creates one. ``schedule_time`` may be at most 30 days ahead.
- *Authentication.* With ``oidc_token`` Cloud Tasks mints a Google-signed ID token for
  ``service_account_email`` and sends it as ``Authorization: Bearer …``. That account must be in
  the queue's project, the caller (deploy_model's own runtime account) needs
  ``iam.serviceAccounts.actAs`` on it (``roles/iam.serviceAccountUser``), and it needs
  ``roles/run.invoker`` on deploy_model: a gen2 function is a Cloud Run service, and Cloud Run
  accepts a token whose ``aud`` is the service's ``*.run.app`` URL (or a custom audience set on
  the service). So ``SALESMESH_DEPLOY_URL`` is that URL and the audience is that URL's
  origin (``https://host``, no path: the service URL as Cloud Run states it; Cloud Tasks'
  default would be the full target URL). Terraform gives the function its own *deterministic*
  run.app URL, ``https://deploy-model-PROJECT_NUMBER.REGION.run.app``, which Cloud Run assigns
  every service whose name, project number and tags fit one 63-character DNS label, and which is
  known before the function exists (its ``service_config[0].uri`` is not: the function would
  have to name itself). Cloud Tasks counts as internal traffic for the
  service's ingress setting when queue and function share a project.
- *Headers.* Cloud Tasks passes the task's headers through, except ``Host``,
  ``Content-Length``, ``User-Agent`` (``Google-Cloud-Tasks``) and the ``X-CloudTasks-*``,
  ``X-Google-*`` and ``X-AppEngine-*`` families, which it sets itself (``X-CloudTasks-TaskName``,
  ``-QueueName``, ``-TaskRetryCount``, ``-TaskExecutionCount``, ``-TaskETA``). It does not set
  ``Content-Type``, so the task carries ``application/json``: the CloudEvents SDK needs it to
  hand the function a JSON ``data``.
- *The function takes it.* functions-framework (Python) serves a ``cloudevent`` function by
  ``cloudevents.http.from_http(request.headers, body)`` on any POST, so a binary-mode request
  from Cloud Tasks is the same to it as Eventarc's. The tests replay a stored task's headers
  and body against ``functions_framework.create_app`` to prove it.
- *Retries.* A non-2xx answer, or none within the dispatch deadline (10 minutes unless set;
  a step takes under a minute), is retried by the queue's ``retry_config``, which Terraform
  sets; the ``ce-id`` (the task's name) stays the same on every attempt.
"""

from __future__ import annotations

import functools
import importlib
import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from salesmesh.errors import ConfigError, SourceError
from salesmesh.local.binary import task_event, task_source
from salesmesh.ports import Task, rfc3339


class CloudTasksQueue:
    """Tasks for ``function`` (served at ``url``) in the Cloud Tasks queue ``queue``."""

    def __init__(
        self,
        project: str,
        location: str,
        queue: str,
        url: str | None,
        service_account: str | None,
        *,
        function: str = "deploy_model",
        client: Any | None = None,
    ) -> None:
        """``url`` and ``service_account`` may be unset until a task is scheduled."""
        self.project = project
        self.location = location
        self.queue = queue
        self.url = url
        self.service_account = service_account
        self.function = function
        self.path = f"projects/{project}/locations/{location}/queues/{queue}"
        self._client = client

    def schedule(self, task: Task) -> bool:
        """Create the task; False when Cloud Tasks knows its name (queued or ran recently)."""
        from google.api_core import exceptions

        url, account = self._target(task)
        try:  # what the function receives must equal what was given
            json.dumps(dict(task.data), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"task {task.name} data must be plain JSON: {exc}") from exc
        now = datetime.now(UTC)
        source = task_source(self.project, self.location, self.queue)
        event = task_event(task.name, task.event_type, task.data, source, rfc3339(now))
        tasks = _tasks_v2()
        request = tasks.Task(
            name=f"{self.path}/tasks/{task.name}",
            schedule_time=now + timedelta(seconds=task.delay_seconds),
            http_request=tasks.HttpRequest(
                url=url,
                http_method=tasks.HttpMethod.POST,
                headers=event.headers(),
                body=event.body(),
                oidc_token=tasks.OidcToken(service_account_email=account, audience=_origin(url)),
            ),
        )
        try:
            self._tasks_client().create_task(parent=self.path, task=request)
        except exceptions.AlreadyExists:
            return False
        except exceptions.NotFound as exc:
            msg = (
                f"Cloud Tasks queue {self.path} does not exist: create it (Terraform's "
                f"google_cloud_tasks_queue) or set SALESMESH_TASKS_QUEUE to one that does"
            )
            raise ConfigError(msg) from exc
        except exceptions.GoogleAPICallError as exc:
            raise SourceError(f"cannot create task {task.name} in {self.path}: {exc}") from exc
        return True

    def _target(self, task: Task) -> tuple[str, str]:
        if task.function != self.function:
            msg = (
                f"task {task.name} is for function {task.function!r}, but this Cloud Tasks "
                f"queue delivers to {self.function} only (SALESMESH_DEPLOY_URL)"
            )
            raise ConfigError(msg)
        if not self.url:
            msg = (
                f"SALESMESH_DEPLOY_URL is not set: Cloud Tasks needs {self.function}'s HTTPS URL "
                "to deliver rollout steps (Terraform output: the function's service_config.uri)"
            )
            raise ConfigError(msg)
        if not self.service_account:
            msg = (
                "SALESMESH_TASKS_SERVICE_ACCOUNT is not set: Cloud Tasks needs the service "
                f"account whose OIDC token may invoke {self.function} (roles/run.invoker)"
            )
            raise ConfigError(msg)
        return self.url, self.service_account

    def _tasks_client(self) -> Any:
        if self._client is None:
            self._client = _default_client()
        return self._client


@functools.cache
def _default_client() -> Any:
    """One client per process: each function invocation builds its queue anew, and a client
    opens a gRPC channel and looks up credentials."""
    return _tasks_v2().CloudTasksClient()


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _tasks_v2() -> Any:
    """The Cloud Tasks client library, imported on first use (and past mypy, as with
    ``backends.gcp._aiplatform``: it ships ``py.typed``, which would shadow the untyped
    ``google.cloud.storage`` for mypy)."""
    return importlib.import_module("google.cloud.tasks_v2")
