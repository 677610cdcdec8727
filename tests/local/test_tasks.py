"""Delayed tasks through the real local mesh: emulator, delivery loop, a function server process.

``deploy_model`` here is a stand-in that appends every event it gets (with the wall-clock time)
to a file, and fails when the event's data says so.
"""

from __future__ import annotations

import json
import logging
import queue
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_waits import wait_for

from salesmesh.backends.local_tasks import LocalTaskQueue, object_name
from salesmesh.local.delivery import Delivery, read_dead_letters
from salesmesh.local.emulator import StorageEmulator
from salesmesh.local.functions import FunctionServer
from salesmesh.local.mesh import Mesh
from salesmesh.local.processes import free_port
from salesmesh.ports import Task
from salesmesh.settings import Settings
from salesmesh.wiring import STORAGE_FINALIZED, Retry, Trigger

STEP = "dev.salesmesh.rollout.v1.step"
ATTEMPTS = 3
TRIGGERS = [
    Trigger("deploy_model", "deploy_model", STORAGE_FINALIZED, "model", Retry(ATTEMPTS, 0.05, 0.2))
]
FUNCTION = textwrap.dedent(
    """
    import json, time
    import functions_framework

    @functions_framework.cloud_event
    def deploy_model(event):
        line = {"id": event["id"], "type": event["type"], "source": event["source"],
                "data": event.data, "at": time.time()}
        with open({seen!r}, "a") as out:
            out.write(json.dumps(line) + "\\n")
        if event.data.get("fail"):
            raise RuntimeError("this step fails")
    """
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A mesh root whose functions/deploy_model records what it gets in ``<root>/seen.jsonl``."""
    source = tmp_path / "root" / "functions" / "deploy_model" / "main.py"
    source.parent.mkdir(parents=True)
    source.write_text(FUNCTION.replace("{seen!r}", repr(str(tmp_path / "root" / "seen.jsonl"))))
    return tmp_path / "root"


def seen(root: Path) -> list[dict[str, Any]]:
    path = root / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def step(name: str, delay: float = 0.0, **data: Any) -> Task:
    return Task(name, "deploy_model", STEP, {"endpoint": "salesmesh", **data}, delay)


def queued(client: Any, settings: Settings) -> list[str]:
    """The task objects in the state bucket."""
    return [b.name for b in client.list_blobs(settings.state_bucket, prefix="tasks/")]


def test_a_task_is_delivered_after_its_delay_and_deleted(
    root: Path, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Delivered once, not before its due time, then gone; an unserved function's task stays."""
    settings = Settings(state_dir=state_dir)
    caplog.set_level(logging.WARNING, logger="salesmesh.local.delivery")
    with Mesh(settings, root, triggers=TRIGGERS) as mesh:
        client = mesh.storage_client()
        tasks = LocalTaskQueue(settings.state_bucket, lock_dir=state_dir / "locks", client=client)
        unserved = Task("alert-1", "alert_handler", "dev.salesmesh.alert.v1", {})
        assert tasks.schedule(unserved)
        asked = time.time()
        assert tasks.schedule(step("rollout-1-deploying", delay=1.5, n=1))
        [event] = wait_for(lambda: seen(root), 15, "the task's delivery")
        wait_for(
            lambda: queued(client, settings) == [object_name("alert_handler", "alert-1")],
            5,
            "the delivered task's object to go",
        )
        time.sleep(0.3)  # a second delivery would come now
        assert len(seen(root)) == 1
    assert 1.5 - 0.002 <= event["at"] - asked < 1.5 + 3.0
    assert (event["id"], event["type"], event["data"]) == (
        "rollout-1-deploying",
        STEP,
        {"endpoint": "salesmesh", "n": 1},
    )
    assert event["source"] == (
        "//cloudtasks.googleapis.com/projects/local/locations/europe-west1/queues/salesmesh-rollout"
    )
    assert "does not serve function alert_handler" in caplog.text
    assert read_dead_letters(state_dir) == []


def test_the_queue_survives_a_restart_of_the_mesh(root: Path, state_dir: Path) -> None:
    """Tasks left pending, queued while stopped or due while stopped are each delivered once
    after the next start: at once if due, at their time if not."""
    settings = Settings(state_dir=state_dir)
    locks = state_dir / "locks"
    with Mesh(settings, root, triggers=TRIGGERS) as mesh:
        tasks = LocalTaskQueue(settings.state_bucket, lock_dir=locks, client=mesh.storage_client())
        assert tasks.schedule(step("a-pending-at-stop", delay=1.0))
    with StorageEmulator(state_dir / "gcs") as emulator:  # the mesh is down; its bucket is not
        tasks = LocalTaskQueue(settings.state_bucket, lock_dir=locks, client=emulator.client())
        assert tasks.schedule(step("b-queued-while-stopped"))
        assert tasks.schedule(step("c-due-while-stopped", delay=0.2))
        asked = time.time()
        assert tasks.schedule(step("d-due-after-restart", delay=5.0))
    time.sleep(1.2)  # a and c fall due while nothing runs
    assert seen(root) == []
    with Mesh(settings, root, triggers=TRIGGERS) as mesh:
        started = time.time()
        wait_for(lambda: len(seen(root)) >= 3, 10, "the overdue tasks")
        events = wait_for(lambda: len(seen(root)) == 4 and seen(root), 10, "the task due later")
        client = mesh.storage_client()
        wait_for(lambda: not queued(client, settings), 5, "the delivered tasks' objects to go")
        time.sleep(0.3)
        assert len(seen(root)) == 4
    at = {e["id"]: e["at"] for e in events}
    assert sorted(at) == [
        "a-pending-at-stop",
        "b-queued-while-stopped",
        "c-due-while-stopped",
        "d-due-after-restart",
    ]
    assert all(
        at[name] - started < 2.5
        for name in ("a-pending-at-stop", "b-queued-while-stopped", "c-due-while-stopped")
    )
    assert at["d-due-after-restart"] >= asked + 5.0 - 0.002  # due times are kept to the ms


def test_a_failing_step_is_retried_then_dead_lettered(root: Path, state_dir: Path) -> None:
    """A function answering 500 gets the task its trigger's number of times, then the dead
    letter holds it and the task is no longer queued."""
    settings = Settings(state_dir=state_dir)
    with Mesh(settings, root, triggers=TRIGGERS) as mesh:
        client = mesh.storage_client()
        tasks = LocalTaskQueue(settings.state_bucket, lock_dir=state_dir / "locks", client=client)
        assert tasks.schedule(step("rollout-5-broken", fail=True))
        [letter] = wait_for(lambda: read_dead_letters(state_dir), 15, "the dead letter")
        wait_for(lambda: not queued(client, settings), 5, "the dead task's object to go")
        assert mesh.delivery is not None
        tried = [(a.attempt, a.status) for a in mesh.delivery.attempts]
    assert tried == [(n, 500) for n in range(1, ATTEMPTS + 1)]
    assert [e["id"] for e in seen(root)] == ["rollout-5-broken"] * ATTEMPTS
    assert (letter["function"], letter["event_id"], letter["attempts"]) == (
        "deploy_model",
        "rollout-5-broken",
        ATTEMPTS,
    )
    assert letter["last_status"] == 500
    assert (
        letter["task"] == f"gs://{settings.state_bucket}/tasks/deploy_model/rollout-5-broken.json"
    )
    assert letter["event"]["attributes"]["ce-type"] == STEP
    assert letter["event"]["data"] == {"endpoint": "salesmesh", "fail": True}


@pytest.fixture
def deploy_model(root: Path, tmp_path: Path) -> Iterator[FunctionServer]:
    """The recording deploy_model in its own functions-framework server, without a mesh."""
    source = root / "functions" / "deploy_model" / "main.py"
    server = FunctionServer(
        "deploy_model", "deploy_model", source, free_port(), {}, tmp_path / "fn.log"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_listing_and_finalize_schedule_a_task_once(
    bucket: Any, deploy_model: FunctionServer, root: Path, tmp_path: Path
) -> None:
    """A task seen by both the start-up listing and its finalize event is delivered once; the
    same name queued again later (a new object) is delivered again."""
    settings = Settings(state_bucket=bucket.name, state_dir=tmp_path / "state")
    tasks = LocalTaskQueue(bucket.name, lock_dir=tmp_path / "locks", client=bucket.client)
    assert tasks.schedule(step("rollout-6-seen-twice", n=1))
    blob = bucket.get_blob(object_name("deploy_model", "rollout-6-seen-twice"))
    finalized = {"bucket": bucket.name, "name": blob.name, "generation": str(blob.generation)}
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    events.put(finalized)  # as the emulator would have: created after it started
    urls = {"deploy_model": deploy_model.url}
    delivery = Delivery(settings, TRIGGERS, urls, events, storage=bucket.client)
    delivery.start()
    try:
        wait_for(lambda: seen(root), 10, "the delivery")
        wait_for(lambda: bucket.get_blob(blob.name) is None, 5, "the task's object to go")
        events.put(finalized)  # a late duplicate of the same finalize
        time.sleep(0.5)
        assert len(seen(root)) == 1
        assert tasks.schedule(step("rollout-6-seen-twice", n=2))
        again = bucket.get_blob(blob.name)
        events.put({**finalized, "generation": str(again.generation)})
        wait_for(lambda: len(seen(root)) == 2, 10, "the task queued again")
    finally:
        delivery.stop()
    assert [e["data"]["n"] for e in seen(root)] == [1, 2]
    assert [a.status for a in delivery.attempts] == [200, 200]
