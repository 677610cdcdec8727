"""The delivery loop against real functions-framework servers: retries and dead letters."""

from __future__ import annotations

import json
import queue
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_waits import wait_for

from salesmesh.local.delivery import Delivery, read_dead_letters
from salesmesh.local.functions import FunctionServer
from salesmesh.local.processes import free_port
from salesmesh.settings import Settings
from salesmesh.wiring import STORAGE_FINALIZED, Retry, Trigger

EVENTS = Path(__file__).parents[1] / "events"
ATTEMPTS = 3

FUNCTIONS = textwrap.dedent(
    """
    import json, os
    import functions_framework

    def _record(event):
        line = {"id": event["id"], "source": event["source"], "type": event["type"],
                "subject": event["subject"], "time": event["time"], "data": event.data}
        with open(os.environ["SEEN"], "a") as out:
            out.write(json.dumps(line) + "\\n")

    @functions_framework.cloud_event
    def succeeding(event):
        _record(event)

    @functions_framework.cloud_event
    def failing(event):
        raise RuntimeError("boom")

    @functions_framework.cloud_event
    def flaky(event):
        _record(event)
        if sum(1 for _ in open(os.environ["SEEN"])) == 1:
            raise RuntimeError("first attempt fails")
    """
)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, FunctionServer]]:
    """Three throwaway functions from one source file, each in its own server process."""
    source = tmp_path / "fn" / "main.py"
    source.parent.mkdir()
    source.write_text(FUNCTIONS)
    started: dict[str, FunctionServer] = {}
    try:
        for name in ("succeeding", "failing", "flaky"):
            env = {"SEEN": str(tmp_path / f"{name}.seen")}
            log = tmp_path / "logs" / f"{name}.log"
            started[name] = FunctionServer(name, name, source, free_port(), env, log)
            started[name].start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def seen(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / f"{name}.seen"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_failures_dead_letter_and_successes_deliver_once(
    servers: dict[str, FunctionServer], tmp_path: Path
) -> None:
    """A raising function dead-letters after N attempts; others get exactly one good delivery."""
    settings = Settings(state_dir=tmp_path / "state")
    retry = Retry(ATTEMPTS, 0.05, 0.2)
    triggers = [Trigger(n, n, STORAGE_FINALIZED, "data", retry) for n in servers]
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    delivery = Delivery(settings, triggers, {n: s.url for n, s in servers.items()}, events)
    data = json.loads((EVENTS / "storage_finalized.json").read_text())["data"]
    delivery.start()
    try:
        events.put(data)
        events.put({**data, "bucket": "not-a-mesh-bucket"})  # no role: delivered nowhere
        letters = wait_for(lambda: read_dead_letters(settings.state_dir), 20, "a dead letter")
        wait_for(lambda: len(seen(tmp_path, "flaky")) == 2, 10, "the flaky retry")
    finally:
        delivery.stop()

    assert len(letters) == 1
    letter = letters[0]
    assert (letter["function"], letter["attempts"], letter["last_status"]) == ("failing", 3, 500)
    assert letter["event"]["data"] == data
    failing = [a for a in delivery.attempts if a.function == "failing"]
    assert [a.attempt for a in failing] == [1, 2, 3]
    assert {a.event_id for a in failing} == {letter["event_id"]}

    [good] = seen(tmp_path, "succeeding")
    assert good["type"] == STORAGE_FINALIZED
    assert good["source"] == "//storage.googleapis.com/projects/_/buckets/salesmesh-data"
    assert good["subject"] == "objects/uploads/sample_sales.csv"
    assert good["data"] == data
    assert good["id"] == letter["event_id"]  # one event, one id, whichever function gets it
    first, second = seen(tmp_path, "flaky")
    assert first["id"] == second["id"]  # a retry is a redelivery of the same event
    assert all(a.seconds >= 0 and a.since_event >= a.seconds for a in delivery.attempts)


def test_stop_is_prompt_with_retries_pending(tmp_path: Path) -> None:
    """stop() returns at once even when a delivery waits on a long backoff."""
    import time

    settings = Settings(state_dir=tmp_path / "state")
    trigger = Trigger("gone", "gone", STORAGE_FINALIZED, "data", Retry(5, 30.0, 60.0))
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    delivery = Delivery(settings, [trigger], {"gone": f"http://127.0.0.1:{free_port()}/"}, events)
    delivery.start()
    events.put(json.loads((EVENTS / "storage_finalized.json").read_text())["data"])
    wait_for(lambda: len(delivery.attempts) == 1, 5, "the first, refused attempt")
    assert delivery.attempts[0].status is None and "Connection" in delivery.attempts[0].error
    started = time.monotonic()
    delivery.stop()
    assert time.monotonic() - started < 1.0
    assert not read_dead_letters(settings.state_dir)
