"""The Cloud Tasks queue against the installed client, with the Cloud Tasks service faked.

Only ``CloudTasksClient.create_task`` is patched (``autospec=True``: a wrong argument fails as it
would against the API); :class:`FakeCloudTasks` keeps the real ``Task`` protos it was sent and
refuses a known name with ``AlreadyExists``, as Cloud Tasks does. Delivery replays each stored
``http_request`` (its headers, plus those Cloud Tasks adds, and its body) against a real
functions-framework app, so what Cloud Tasks would POST is proved to be a CloudEvent the function
takes.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from contract_tasks import FUNCTION, STEP, TaskQueueContract, received, recorder, step
from fake_tasks import INVOKER, LOCATION, PARENT, PROJECT, QUEUE, URL, FakeCloudTasks

# hard imports: the client is a dev dependency, and this suite must never skip quietly
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2 import CloudTasksClient, HttpMethod

from salesmesh import runtime
from salesmesh.backends.gcp_tasks import CloudTasksQueue
from salesmesh.errors import ConfigError, SourceError
from salesmesh.ports import Task
from salesmesh.settings import Settings


@pytest.fixture
def cloud_tasks() -> Iterator[FakeCloudTasks]:
    fake = FakeCloudTasks()
    with mock.patch.object(
        CloudTasksClient, "create_task", autospec=True, side_effect=fake.create_task
    ):
        yield fake


def client() -> CloudTasksClient:
    return CloudTasksClient(credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


@pytest.fixture
def queue(cloud_tasks: FakeCloudTasks) -> CloudTasksQueue:
    return CloudTasksQueue(PROJECT, LOCATION, QUEUE, URL, INVOKER, client=client())


def replay(task: tasks_v2.Task, app_client: Any) -> int:
    """POST ``task``'s stored request as Cloud Tasks would; the function's status code."""
    http = task.http_request
    headers = dict(http.headers)
    headers |= {  # what Cloud Tasks adds itself (the token is opaque to the function)
        "Authorization": "Bearer an-oidc-token",
        "User-Agent": "Google-Cloud-Tasks",
        "X-CloudTasks-QueueName": QUEUE,
        "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[1],
        "X-CloudTasks-TaskRetryCount": "0",
        "X-CloudTasks-TaskExecutionCount": "0",
    }
    assert http.http_method == HttpMethod.POST
    path = urllib.parse.urlsplit(http.url).path or "/"
    response = app_client.post(path, headers=headers, data=http.body)
    return int(response.status_code)


class Inspect:
    def __init__(self, fake: FakeCloudTasks, folder: Path) -> None:
        self.fake = fake
        self.folder = folder

    def names(self) -> set[str]:
        return {name.rsplit("/", 1)[1] for name in self.fake.tasks}

    def due(self, name: str) -> datetime:
        moment: datetime = self.fake.tasks[f"{PARENT}/tasks/{name}"].schedule_time
        return moment

    def deliver(self) -> list[dict[str, Any]]:
        from functions_framework import create_app

        source, seen = recorder(self.folder)
        app = create_app(target=FUNCTION, source=str(source), signature_type="cloudevent")
        ordered = sorted(self.fake.tasks.values(), key=lambda t: t.schedule_time)
        statuses = [replay(task, app.test_client()) for task in ordered]
        assert statuses == [200] * len(ordered)
        return received(seen)


@pytest.fixture
def inspect(cloud_tasks: FakeCloudTasks, tmp_path: Path) -> Inspect:
    return Inspect(cloud_tasks, tmp_path / "recorder")


class TestCloudTasksContract(TaskQueueContract):
    pass


def test_the_task_is_an_authenticated_post(queue: CloudTasksQueue, cloud_tasks: Any) -> None:
    """POST to the URL, JSON body and content type, OIDC token of the invoker for that URL."""
    assert queue.schedule(step("rollout-1-deploying", n=1)) is True
    [task] = cloud_tasks.tasks.values()
    assert task.name == f"{PARENT}/tasks/rollout-1-deploying"
    http = task.http_request
    assert (http.url, http.http_method) == (URL, HttpMethod.POST)
    assert http.oidc_token.service_account_email == INVOKER
    # the service's URL, as Cloud Run checks the token's audience against it
    assert http.oidc_token.audience == "https://deploy-model-abc123-ew.a.run.app"
    assert http.headers["Content-Type"] == "application/json"
    assert http.headers["ce-type"] == STEP and http.headers["ce-id"] == "rollout-1-deploying"
    assert http.headers["ce-source"] == f"//cloudtasks.googleapis.com/{PARENT}"
    assert b'"n": 1' in http.body


def test_missing_configuration_is_named(cloud_tasks: FakeCloudTasks) -> None:
    """Without the function's URL or the invoker account, scheduling says which to set."""
    unset_url = CloudTasksQueue(PROJECT, LOCATION, QUEUE, None, INVOKER, client=client())
    with pytest.raises(ConfigError, match="SALESMESH_DEPLOY_URL is not set"):
        unset_url.schedule(step("rollout-1-a"))
    unset_account = CloudTasksQueue(PROJECT, LOCATION, QUEUE, URL, None, client=client())
    with pytest.raises(ConfigError, match="SALESMESH_TASKS_SERVICE_ACCOUNT is not set"):
        unset_account.schedule(step("rollout-1-a"))
    assert cloud_tasks.tasks == {}


def test_a_task_for_another_function_is_refused(queue: CloudTasksQueue, cloud_tasks: Any) -> None:
    """The queue posts to deploy_model's URL only: a task for another function is refused."""
    with pytest.raises(ConfigError, match="delivers to deploy_model only"):
        queue.schedule(Task("alert-1", "alert_handler", STEP, {}))
    assert cloud_tasks.tasks == {}


def test_a_missing_queue_or_a_failing_service_is_clear(cloud_tasks: FakeCloudTasks) -> None:
    """No such queue is a ConfigError naming it; other API errors are a SourceError."""
    elsewhere = CloudTasksQueue(PROJECT, LOCATION, "not-created", URL, INVOKER, client=client())
    with pytest.raises(ConfigError, match="queues/not-created does not exist"):
        elsewhere.schedule(step("rollout-1-a"))
    queue = CloudTasksQueue(PROJECT, LOCATION, QUEUE, URL, INVOKER, client=client())
    cloud_tasks.error = exceptions.PermissionDenied("cloudtasks.tasks.create denied")
    with pytest.raises(SourceError, match="cannot create task rollout-1-a"):
        queue.schedule(step("rollout-1-a"))
    assert queue.schedule(step("rollout-1-a")) is True  # nothing was created before


def test_runtime_builds_the_queue_from_settings() -> None:
    """On gcp the factory passes project, region, queue, URL and invoker through."""
    settings = Settings(
        backend="gcp",
        project=PROJECT,
        tasks_queue="rollouts",
        deploy_url=URL,
        tasks_service_account=INVOKER,
    )
    built = runtime.task_queue(settings)
    assert isinstance(built, CloudTasksQueue)
    assert built.path == f"projects/{PROJECT}/locations/europe-west1/queues/rollouts"
    assert (built.url, built.service_account, built.function) == (URL, INVOKER, FUNCTION)


def test_the_client_library_is_imported_only_to_schedule() -> None:
    """Importing the backend, or building it, loads no Cloud Tasks client library."""
    probe = (
        "import sys; from salesmesh import runtime; from salesmesh.settings import Settings\n"
        "runtime.task_queue(Settings(backend='gcp', project='p'))\n"
        "assert 'google.cloud.tasks_v2' not in sys.modules, 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
