"""The local task queue against the real GCS emulator, delivered by the real delivery loop.

``deliver()`` runs :class:`salesmesh.local.delivery.Delivery` (the mesh's own) over the bucket
and POSTs to a real functions-framework app served on 127.0.0.1 in this process: the contract
sees the event exactly as the local mesh hands it to a function.
"""

from __future__ import annotations

import json
import queue as queues
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from contract_tasks import FUNCTION, STEP, TaskQueueContract, received, recorder, step
from werkzeug.serving import make_server

from salesmesh import runtime
from salesmesh.backends import task_queue
from salesmesh.backends.local_tasks import LocalTaskQueue, QueuedTask, object_name
from salesmesh.local.delivery import Delivery
from salesmesh.ports import Task
from salesmesh.settings import Settings
from salesmesh.wiring import STORAGE_FINALIZED, Retry, Trigger


@pytest.fixture
def queue(bucket: Any, tmp_path: Path) -> LocalTaskQueue:
    return LocalTaskQueue(bucket.name, lock_dir=tmp_path / "locks")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The recorder function on a real HTTP server in this process: (url, its event file)."""
    from functions_framework import create_app

    source, seen = recorder(tmp_path / "recorder")
    app = create_app(target=FUNCTION, source=str(source), signature_type="cloudevent")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", seen
    finally:
        server.shutdown()
        thread.join(5)


class Inspect:
    def __init__(self, bucket: Any, served: tuple[str, Path], state_dir: Path) -> None:
        self.bucket = bucket
        self.url, self.seen = served
        self.state_dir = state_dir

    def records(self) -> dict[str, QueuedTask]:
        blobs = self.bucket.client.list_blobs(self.bucket.name, prefix="tasks/")
        tasks = [QueuedTask.from_json(b.download_as_bytes(), b.name) for b in blobs]
        return {task.name: task for task in tasks}

    def names(self) -> set[str]:
        return set(self.records())

    def objects(self) -> list[str]:
        return [b.name for b in self.bucket.client.list_blobs(self.bucket.name, prefix="tasks/")]

    def due(self, name: str) -> datetime:
        return self.records()[name].due_at

    def deliver(self) -> list[dict[str, Any]]:
        expected = len(self.records())
        settings = Settings(state_bucket=self.bucket.name, state_dir=self.state_dir)
        trigger = Trigger(FUNCTION, FUNCTION, STORAGE_FINALIZED, "model", Retry(2, 0.05, 0.1))
        events: queues.Queue[dict[str, Any]] = queues.Queue()
        delivery = Delivery(
            settings, [trigger], {FUNCTION: self.url}, events, storage=self.bucket.client
        )
        delivery.start()  # lists tasks/ and delivers what is due
        try:
            deadline = time.monotonic() + 10
            while self.objects() or len(received(self.seen)) < expected:
                assert time.monotonic() < deadline, f"{self.objects()} still queued"
                time.sleep(0.05)
        finally:
            delivery.stop()
        assert [a.status for a in delivery.attempts] == [200] * expected
        return received(self.seen)


@pytest.fixture
def inspect(bucket: Any, served: tuple[str, Path], tmp_path: Path) -> Inspect:
    return Inspect(bucket, served, tmp_path / "state")


class TestLocalTaskQueueContract(TaskQueueContract):
    pass


def test_a_task_is_one_json_object(queue: LocalTaskQueue, bucket: Any) -> None:
    """tasks/<function>/<name>.json holds name, function, type, data, due and created."""
    assert queue.schedule(step("rollout-1-deploying", delay=5.0, n=1))
    blob = bucket.get_blob("tasks/deploy_model/rollout-1-deploying.json")
    record = json.loads(blob.download_as_bytes())
    assert set(record) == {"name", "function", "event_type", "data", "due", "created"}
    assert (record["function"], record["event_type"]) == (FUNCTION, STEP)
    assert record["data"] == {"endpoint": "salesmesh", "n": 1}
    created, due = (
        datetime.fromisoformat(record[k].replace("Z", "+00:00")) for k in ("created", "due")
    )
    assert (due - created).total_seconds() == pytest.approx(5.0, abs=0.002)
    assert blob.content_type == "application/json"
    assert object_name(FUNCTION, "x") == "tasks/deploy_model/x.json"


def test_concurrent_schedules_of_one_name_queue_one(bucket: Any, tmp_path: Path) -> None:
    """Eight writers racing on one name (the emulator ignores preconditions): one wins."""
    start = threading.Barrier(8)
    answers: list[bool] = []

    def writer(n: int) -> None:
        own = LocalTaskQueue(bucket.name, lock_dir=tmp_path / "locks")  # own client, own lock fd
        start.wait()
        answers.append(own.schedule(step("rollout-9-race", writer=n)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == [False] * 7 + [True]
    [blob] = bucket.client.list_blobs(bucket.name, prefix="tasks/")
    winner = json.loads(blob.download_as_bytes())["data"]["writer"]
    assert blob.name.endswith("rollout-9-race.json") and isinstance(winner, int)


def test_a_delivered_name_can_be_queued_again(queue: LocalTaskQueue, inspect: Inspect) -> None:
    """Delivery deletes the object, so the name is free again (Cloud Tasks waits an hour)."""
    assert queue.schedule(step("rollout-4-again", n=1))
    inspect.deliver()
    assert inspect.names() == set()
    assert queue.schedule(step("rollout-4-again", n=2)) is True


def test_bad_function_names_and_missing_buckets(tmp_path: Path, bucket: Any) -> None:
    """A function name that is no folder is refused; a missing bucket says to start the mesh."""
    from salesmesh.errors import SourceError

    queue = LocalTaskQueue(bucket.name, lock_dir=tmp_path)
    with pytest.raises(ValueError, match="not a function name"):
        queue.schedule(Task("t-1", "../deploy", STEP, {}))
    gone = LocalTaskQueue("no-such-bucket-here", lock_dir=tmp_path)
    with pytest.raises(SourceError, match="salesmesh up"):
        gone.schedule(step("t-2"))


def test_backends_and_runtime_build_the_local_queue(tmp_path: Path) -> None:
    """By name, and from local settings: the state bucket, locked under state_dir/locks."""
    built = task_queue("local", bucket="salesmesh-state", lock_dir=tmp_path)
    assert isinstance(built, LocalTaskQueue) and built.lock_path == tmp_path / "tasks.lock"
    settings = Settings(state_dir=tmp_path / "state", state_bucket="acme-state")
    from_settings = runtime.task_queue(settings)
    assert isinstance(from_settings, LocalTaskQueue)
    assert from_settings.bucket == "acme-state"
    assert from_settings.lock_path == tmp_path / "state" / "locks" / "tasks.lock"
