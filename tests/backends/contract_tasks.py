"""The TaskQueue contract, run against every backend (fsspec's abstract test style).

A backend's test module subclasses :class:`TaskQueueContract` and provides two fixtures: ``queue``,
a fresh, empty TaskQueue for ``deploy_model``, and ``inspect``, a :class:`Inspector` that sees
the backend's side: the task names queued, each one's due time, and ``deliver()``, which hands
every queued task to a real functions-framework ``cloudevent`` function (:func:`recorder`) the
way that backend would deliver it and returns the events the function received.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from salesmesh.ports import Task, TaskQueue

STEP = "dev.salesmesh.rollout.v1.step"
FUNCTION = "deploy_model"
MS = timedelta(milliseconds=1)  # the local queue keeps RFC 3339 times to the millisecond


class Inspector(Protocol):
    def names(self) -> set[str]:
        """The names of the tasks queued now."""
        ...

    def due(self, name: str) -> datetime:
        """When the queued task ``name`` is to be delivered (aware, UTC)."""
        ...

    def deliver(self) -> list[dict[str, Any]]:
        """Every queued task delivered to a real function: the events it received, by id."""
        ...


RECORDER = textwrap.dedent(
    """
    import json
    import functions_framework

    @functions_framework.cloud_event
    def deploy_model(event):
        line = {key: event[key] for key in ("id", "source", "type", "specversion")}
        line["time"] = event.get("time")
        line["data"] = event.data
        with open({path!r}, "a") as out:
            out.write(json.dumps(line) + "\\n")
    """
)


def recorder(folder: Path) -> tuple[Path, Path]:
    """A cloudevent function that appends each event it gets to a file: (source, file)."""
    folder.mkdir(parents=True, exist_ok=True)
    seen = folder / "seen.jsonl"
    source = folder / "task_recorder.py"
    source.write_text(RECORDER.replace("{path!r}", repr(str(seen))))
    return source, seen


def received(seen: Path) -> list[dict[str, Any]]:
    """The events the recorder got, in order."""
    if not seen.exists():
        return []
    return [json.loads(line) for line in seen.read_text().splitlines()]


def step(name: str, delay: float = 0.0, **data: Any) -> Task:
    return Task(name, FUNCTION, STEP, {"endpoint": "salesmesh", **data}, delay_seconds=delay)


class TaskQueueContract:
    """What every TaskQueue backend must do."""

    def test_a_new_name_is_queued(self, queue: TaskQueue, inspect: Inspector) -> None:
        """schedule() answers True for a name not queued, and the task is then queued."""
        assert queue.schedule(step("rollout-1-deploying")) is True
        assert inspect.names() == {"rollout-1-deploying"}

    def test_a_queued_name_is_refused(self, queue: TaskQueue, inspect: Inspector) -> None:
        """A second task of a queued name answers False and changes nothing: the first stays."""
        assert queue.schedule(step("rollout-1-canary", delay=0.0, attempt=1)) is True
        assert queue.schedule(step("rollout-1-canary", delay=60.0, attempt=2)) is False
        assert inspect.names() == {"rollout-1-canary"}
        assert inspect.due("rollout-1-canary") <= datetime.now(UTC) + MS
        [event] = inspect.deliver()
        assert event["data"] == {"endpoint": "salesmesh", "attempt": 1}

    def test_different_names_are_both_queued(self, queue: TaskQueue, inspect: Inspector) -> None:
        """Two names are two tasks, each delivered once with its own data."""
        assert queue.schedule(step("rollout-1-a", n=1)) is True
        assert queue.schedule(step("rollout-1-b", n=2)) is True
        assert inspect.names() == {"rollout-1-a", "rollout-1-b"}
        events = inspect.deliver()
        assert sorted((e["id"], e["data"]["n"]) for e in events) == [
            ("rollout-1-a", 1),
            ("rollout-1-b", 2),
        ]

    def test_the_function_gets_the_event(self, queue: TaskQueue, inspect: Inspector) -> None:
        """The function receives a CloudEvent: type = event_type, id = name, data = the JSON."""
        data = {"endpoint": "salesmesh", "generation": 7, "nested": {"ok": True, "list": [1.5]}}
        assert queue.schedule(Task("rollout-7-poll", FUNCTION, STEP, data)) is True
        [event] = inspect.deliver()
        assert (event["id"], event["type"], event["specversion"]) == ("rollout-7-poll", STEP, "1.0")
        assert event["data"] == data
        assert event["source"].startswith("//cloudtasks.googleapis.com/projects/")
        assert "/queues/" in event["source"]
        assert event["time"] is not None and event["time"].endswith("Z")

    def test_delay_sets_the_due_time(self, queue: TaskQueue, inspect: Inspector) -> None:
        """A task is due delay_seconds after it was scheduled; without a delay, at once."""
        before = datetime.now(UTC)
        queue.schedule(step("rollout-2-later", delay=90.0))
        queue.schedule(step("rollout-2-now"))
        after = datetime.now(UTC)
        later = timedelta(seconds=90)
        assert before + later - MS <= inspect.due("rollout-2-later") <= after + later + MS
        assert before - MS <= inspect.due("rollout-2-now") <= after + MS

    def test_data_must_be_plain_json(self, queue: TaskQueue, inspect: Inspector) -> None:
        """Data that JSON cannot carry (NaN, a set) is a ValueError and queues nothing."""
        with pytest.raises(ValueError, match="JSON"):
            queue.schedule(step("rollout-3-nan", score=float("nan")))
        with pytest.raises(ValueError, match="JSON"):
            queue.schedule(step("rollout-3-set", ids={1, 2}))
        assert inspect.names() == set()
