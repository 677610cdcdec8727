"""Google Cloud's unreachable services, in memory, inside ``serve_probe``'s process.

Loaded by ``serve_probe`` (by file path: nothing of the project goes on ``sys.path``) only once
its cold events are delivered, so they run with nothing faked. :class:`FakeCloud` is the server
side of every RPC a function package may send to a service that cannot run here:

- Vertex AI's model service: ``tests/backends/fake_vertex_models`` itself, the fake the backend
  tests use (it needs only google-* distributions, which every gcp package pins);
- Vertex AI's job service (training jobs), and its endpoint and prediction services
  (``probe_endpoint``: deployments stay running until the probe ends them; the model answers a
  fixed forecast for the series the plan says it serves);
- Resource Manager's ``get_project``, which the SDK sends when ``GOOGLE_CLOUD_PROJECT`` is set;
- Cloud Tasks' ``create_task``: ``tests/backends/fake_tasks``, whose tasks
  :meth:`FakeCloud.dispatch` hands back as Cloud Tasks would POST them.

:func:`faked` patches each generated client's method with ``autospec=True`` (a wrong argument
fails as against the service) and routes every other RPC to an error that is also recorded, so
a caller that swallows exceptions cannot hide it. Cloud Storage stays real (the emulator).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from google.api_core import exceptions
from google.cloud.aiplatform_v1 import types
from google.protobuf import json_format
from google.protobuf.message import Message

BACKENDS = Path(__file__).resolve().parent.parent / "backends"


def _load(path: Path) -> ModuleType:
    """A module from its file, not from ``sys.path`` (which holds only the package and venv)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


models = _load(BACKENDS / "fake_vertex_models.py")
fake_tasks = _load(BACKENDS / "fake_tasks.py")
endpoints = _load(Path(__file__).with_name("probe_endpoint.py"))
PROJECT, PROJECT_NUMBER, LOCATION = models.PROJECT, models.PROJECT_NUMBER, models.LOCATION


def as_json(message: Any) -> Any:
    """A request proto (proto-plus or plain protobuf) as the JSON the API would carry."""
    if isinstance(message, Message):
        return json_format.MessageToDict(message)
    return json.loads(type(message).to_json(message, use_integers_for_enums=False))


class FakeCloud(endpoints.FakeEndpoints, models.FakeModelService):
    """Vertex AI (models, jobs, one endpoint, predictions), Resource Manager and Cloud Tasks."""

    def __init__(
        self,
        endpoint: str | None = None,
        serves: tuple[dict[str, Any], ...] = (),
        queues: tuple[str, ...] = (),
    ) -> None:
        """``endpoint``: the id of the empty endpoint Terraform created (None: no endpoint);
        ``serves``: the series (store_id, product_id) a deployed model answers; ``queues``:
        the Cloud Tasks queues that exist."""
        super().__init__()
        self.jobs: list[types.CustomJob] = []
        self.endpoint = types.Endpoint(
            name=f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{endpoint}",
            display_name="salesmesh",
            create_time=self._now(),
        )
        self.has_endpoint = endpoint is not None
        self._serve(serves)
        self.tasks = fake_tasks.FakeCloudTasks(queues=tuple(queues))
        self.dispatched: set[str] = set()
        self.unserved: list[str] = []

    # --- training jobs (train_trigger) -----------------------------------------------------

    def create_custom_job(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        req = self._record("create_custom_job", types.CreateCustomJobRequest, request, flattened)
        job = types.CustomJob(req.custom_job)
        job.name = f"{req.parent}/customJobs/{len(self.jobs) + 1}"
        job.state = types.JobState.JOB_STATE_PENDING
        job.create_time = self._now()
        self.jobs.append(job)
        return types.CustomJob(job)

    def list_custom_jobs(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        from google.cloud.aiplatform_v1.services.job_service import pagers

        req = self._record("list_custom_jobs", types.ListCustomJobsRequest, request, flattened)
        wanted = re.fullmatch(r'labels\.([\w-]+)="([^"]*)"', req.filter)
        jobs = [
            job
            for job in self.jobs
            if job.name.startswith(req.parent + "/")
            and (wanted is None or job.labels.get(wanted.group(1)) == wanted.group(2))
        ]
        response = types.ListCustomJobsResponse(custom_jobs=jobs)
        more = functools.partial(self.unserved_rpc, "ListCustomJobs (a next page)")
        return pagers.ListCustomJobsPager(more, req, response)

    def get_project(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        from google.cloud.resourcemanager_v3 import GetProjectRequest, Project

        req = self._record("get_project", GetProjectRequest, request, flattened)
        return Project(name=req.name, project_id=req.name.removeprefix("projects/"))

    # --- the endpoint (its services: probe_endpoint) ---------------------------------------

    def _endpoint(self, name: str) -> types.Endpoint:
        wanted = models.parse(name, "endpoints")["id"]
        if not self.has_endpoint or wanted != self.endpoint.name.rsplit("/", 1)[-1]:
            raise exceptions.NotFound(f"Endpoint {name} not found.")
        return self.endpoint

    # --- Cloud Tasks -----------------------------------------------------------------------

    def create_task(self, client: Any, request: Any = None, **flattened: Any) -> Any:
        return self.tasks.create_task(client, request, **flattened)

    def dispatch(self) -> tuple[str, dict[str, str], bytes] | None:
        """The oldest task not yet dispatched as Cloud Tasks POSTs it: (path, headers, body)."""
        waiting = [n for n in self.tasks.tasks if n not in self.dispatched]
        if not waiting:
            return None
        task = self.tasks.tasks[waiting[0]]
        self.dispatched.add(task.name)
        http = task.http_request
        if http.http_method != fake_tasks.tasks_v2.HttpMethod.POST:
            raise AssertionError(f"{task.name} is not a POST: {http.http_method}")
        queue, _, short = task.name.rpartition("/tasks/")
        # what Cloud Tasks adds to the task's own headers (it overrides these names)
        headers = {
            **http.headers,
            "User-Agent": "Google-Cloud-Tasks",
            "Authorization": f"Bearer oidc-token-of-{http.oidc_token.service_account_email}",
            "X-CloudTasks-QueueName": queue.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskName": short,
            "X-CloudTasks-TaskRetryCount": "0",
            "X-CloudTasks-TaskExecutionCount": "0",
            "X-CloudTasks-TaskETA": f"{task.schedule_time.timestamp():.6f}",
        }
        return urlsplit(http.url).path or "/", headers, http.body

    # --- what the probe reports ------------------------------------------------------------

    def unserved_rpc(self, rpc: Any, *args: Any, **_: Any) -> None:
        """Record and refuse an RPC no fake serves (a pager's next page, an unpatched method)."""
        self.unserved.append(f"{rpc}: {args!r}"[:400])
        raise AssertionError(f"{rpc} is not faked: it would have gone to Google Cloud")

    def report(self) -> dict[str, Any]:
        """Every request received, tasks created, the endpoint now, and unserved RPCs."""
        return {
            "vertex": [{"method": m, "request": as_json(r)} for m, r in self.calls],
            "tasks": [as_json(t) for t in self.tasks.tasks.values()],
            "endpoint": as_json(self.endpoint),
            "unserved": self.unserved,
        }


FAKED = {
    "google.cloud.aiplatform_v1": {
        "JobServiceClient": ("create_custom_job", "list_custom_jobs"),
        "ModelServiceClient": (
            "upload_model",
            "get_model",
            "list_model_versions",
            "merge_version_aliases",
            "update_model",
        ),
        "EndpointServiceClient": (
            "get_endpoint",
            "deploy_model",
            "get_operation",
            "update_endpoint",
        ),
        "PredictionServiceClient": ("predict",),
    },
    "google.cloud.resourcemanager_v3": {"ProjectsClient": ("get_project",)},
    "google.cloud.tasks_v2": {"CloudTasksClient": ("create_task",)},
}


@contextlib.contextmanager
def faked(fake: FakeCloud) -> Iterator[FakeCloud]:
    """The generated clients' methods routed to ``fake`` (autospec: a wrong argument fails);
    every other RPC fails and is recorded; credentials anonymous."""
    from google.api_core.gapic_v1.method import _GapicCallable
    from google.auth.credentials import AnonymousCredentials

    with contextlib.ExitStack() as stack:
        for module, clients in FAKED.items():
            for client_name, names in clients.items():
                client = getattr(importlib.import_module(module), client_name)
                for name in names:
                    side_effect = getattr(fake, name)
                    stack.enter_context(
                        mock.patch.object(client, name, autospec=True, side_effect=side_effect)
                    )

        def unserved(gapic: _GapicCallable, *args: Any, **kwargs: Any) -> None:
            # the wrapped gRPC stub knows its method: /google.cloud.<service>/<Method>
            rpc = getattr(gapic._target, "_method", gapic._target)
            fake.unserved_rpc(rpc, *args, **kwargs)

        stack.enter_context(mock.patch.object(_GapicCallable, "__call__", unserved))
        # what Application Default Credentials give: a credential and the environment's project
        project = os.environ.get("GOOGLE_CLOUD_PROJECT")
        stack.enter_context(
            mock.patch(
                "google.auth.default", autospec=True, return_value=(AnonymousCredentials(), project)
            )
        )
        yield fake
