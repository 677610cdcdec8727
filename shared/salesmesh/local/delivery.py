"""The local stand-in for Eventarc and Cloud Tasks: binary-mode CloudEvents, retried.

Three kinds of thread, none of which polls:

- the *intake* blocks on the emulator's finalize queue and turns each object into one delivery
  per subscribed function (wiring: the bucket name maps back to its role through Settings).
  An object under ``tasks/`` in the state bucket is a delayed task instead
  (:mod:`salesmesh.backends.local_tasks`): it is read and delivered to its function when due;
- the *scheduler* keeps pending deliveries in a heap ordered by due time and sleeps on a
  condition until the earliest is due (or a new one arrives), then hands it to a worker;
- *workers* POST the event; a non-2xx answer or a connection error goes back on the heap after
  the trigger's backoff, so one failing function never holds up the others. After
  ``retry.max_attempts`` the delivery is appended to ``<state_dir>/dead_letters.jsonl``.

Delivery is at least once, as with Eventarc: the ``ce-id`` is fixed when the event is made and
is the same on every retry, so a handler can recognise a redelivery.

Tasks are durable: a task object is deleted only once its function answered 2xx or its
dead-letter record is written, and :meth:`Delivery.start` lists ``tasks/`` so the tasks left
when the mesh stopped are delivered (at once, if their time passed meanwhile). Each task object
(name and generation) is scheduled once per run, whether the listing or its finalize event
sees it first. A task for a function the mesh does not serve stays queued, with a warning.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic
from typing import Any

from salesmesh.backends.local_tasks import PREFIX as TASKS_PREFIX
from salesmesh.backends.local_tasks import QueuedTask
from salesmesh.local.binary import EXCERPT, Event, finalized_event, post, task_event, task_source
from salesmesh.settings import Settings
from salesmesh.wiring import BUCKET_ROLES, STORAGE_FINALIZED, Trigger, subscribers

DEAD_LETTERS = "dead_letters.jsonl"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """One POST of one event to one function: for status, dead letters and benchmarks."""

    function: str
    event_id: str
    attempt: int
    status: int | None  # None: no HTTP answer (connection refused, timeout)
    error: str
    seconds: float  # the request alone
    since_event: float  # from the mesh seeing the event to the answer


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    trigger: Trigger = field(compare=False)
    event: Event = field(compare=False)
    attempt: int = field(compare=False, default=1)
    task: tuple[str, int] | None = field(compare=False, default=None)  # its object, generation


class Delivery:
    """Delivers finalize events from ``events`` to the functions wired to their bucket."""

    def __init__(
        self,
        settings: Settings,
        triggers: list[Trigger],
        urls: Mapping[str, str],
        events: queue.Queue[dict[str, Any]],
        *,
        timeout: float = 60.0,
        workers: int = 4,
        storage: Any | None = None,
    ) -> None:
        """``urls`` maps function name -> URL; wired functions without one are not served.

        ``storage`` is a google-cloud-storage client of the mesh's buckets: with it, the
        delayed tasks in the state bucket are delivered too (to their function's URL, retried
        by its trigger's policy).
        """
        self._settings = settings
        self._triggers = triggers
        self._urls = dict(urls)
        self._events = events
        self._timeout = timeout
        self._roles = {settings.bucket(role): role for role in BUCKET_ROLES}
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._work: queue.Queue[_Pending | None] = queue.Queue()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._log_lock = threading.Lock()
        # every POST, in order of completion (the latest 10 000): for status and benchmarks
        self.attempts: deque[Attempt] = deque(maxlen=10_000)
        self.dead_letters_path = settings.state_dir / DEAD_LETTERS
        self._workers = workers
        self._storage = storage
        self._storage_lock = threading.Lock()  # one client, shared by intake and workers
        self._task_source = task_source(settings.project, settings.region, settings.tasks_queue)
        self._task_triggers = {t.function: t for t in triggers}
        self._tasks_seen: set[tuple[str, int]] = set()

    def start(self) -> None:
        """Queue the tasks already in the state bucket; start intake, scheduler and workers."""
        if self._storage is not None:
            with self._storage_lock:
                blobs = list(self._tasks_bucket().list_blobs(prefix=TASKS_PREFIX))
            for blob in blobs:
                self._submit_task(blob.name, int(blob.generation))
        targets = [self._intake, self._schedule] + [self._serve] * self._workers
        for i, target in enumerate(targets):
            thread = threading.Thread(target=target, name=f"delivery-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread; a POST in flight is abandoned after ``timeout`` (not retried)."""
        self._stopping.set()
        self._events.put({})  # wakes the intake
        with self._wake:
            self._wake.notify_all()
        for _ in range(self._workers):
            self._work.put(None)
        deadline = monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - monotonic()))
        self._threads.clear()

    def submit(self, data: Mapping[str, Any]) -> list[str]:
        """Deliver the finalize of ``data`` (StorageObjectData); the functions it goes to."""
        role = self._roles.get(str(data.get("bucket")))
        if role is None:
            return []
        name = str(data.get("name"))
        if role == "state" and name.startswith(TASKS_PREFIX) and self._storage is not None:
            return self._submit_task(name, int(data["generation"]))
        event = finalized_event(data)
        wired = subscribers(self._triggers, STORAGE_FINALIZED, role)
        served = [t for t in wired if t.function in self._urls]
        for trigger in served:
            self._push(_Pending(monotonic(), next(self._seq), trigger, event))
        return [t.function for t in served]

    def _submit_task(self, name: str, generation: int) -> list[str]:
        """Schedule the task stored at ``name`` for its due time; its function, or []."""
        from google.api_core.exceptions import GoogleAPIError
        from requests import RequestException

        with self._storage_lock:
            if (name, generation) in self._tasks_seen:
                return []
            self._tasks_seen.add((name, generation))
            uri = f"gs://{self._settings.state_bucket}/{name}#{generation}"
            try:
                text = self._tasks_bucket().blob(name, generation=generation).download_as_bytes()
                task = QueuedTask.from_json(text, uri)
            except ValueError as exc:
                log.error("not delivering %s: %s", uri, exc)
                return []
            except (GoogleAPIError, RequestException) as exc:  # gone meanwhile: delivered
                log.warning("not delivering task %s: cannot read it: %s", uri, exc)
                return []
        trigger = self._task_triggers.get(task.function)
        if trigger is None or task.function not in self._urls:
            log.warning(
                "task %s stays queued: this mesh does not serve function %s", uri, task.function
            )
            return []
        wait = (task.due_at - datetime.now(UTC)).total_seconds()
        event = task_event(task.name, task.event_type, task.data, self._task_source, task.created)
        due = monotonic() + max(0.0, wait)
        self._push(_Pending(due, next(self._seq), trigger, event, task=(name, generation)))
        return [task.function]

    def _tasks_bucket(self) -> Any:
        assert self._storage is not None
        return self._storage.bucket(self._settings.state_bucket)

    def _task_done(self, pending: _Pending) -> None:
        """Delete a delivered (or dead-lettered) task's object: it is no longer queued."""
        from google.api_core.exceptions import GoogleAPIError, NotFound
        from requests import RequestException

        assert pending.task is not None
        name, generation = pending.task
        with self._storage_lock:
            try:
                # this generation only: a task queued anew under the name is another task
                self._tasks_bucket().blob(name).delete(if_generation_match=generation)
            except NotFound:
                pass
            except (GoogleAPIError, RequestException) as exc:
                # it is delivered again when the mesh next starts: at least once, as promised
                log.warning("task %s was delivered but stays queued: %s", name, exc)

    def _push(self, pending: _Pending) -> None:
        with self._wake:
            heapq.heappush(self._heap, pending)
            self._wake.notify()

    def _intake(self) -> None:
        while not self._stopping.is_set():
            data = self._events.get()  # blocks: an idle mesh costs nothing here
            if data and not self._stopping.is_set():
                self.submit(data)

    def _schedule(self) -> None:
        with self._wake:
            while not self._stopping.is_set():
                if not self._heap:
                    self._wake.wait()
                    continue
                delay = self._heap[0].due - monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                self._work.put(heapq.heappop(self._heap))

    def _serve(self) -> None:
        while (pending := self._work.get()) is not None:
            if self._stopping.is_set():
                return
            self._deliver(pending)

    def _deliver(self, pending: _Pending) -> None:
        trigger, event = pending.trigger, pending.event
        started = monotonic()
        status, body, error = post(self._urls[trigger.function], event, self._timeout)
        ended = monotonic()
        record = Attempt(
            trigger.function,
            event.id,
            pending.attempt,
            status,
            error or body[:EXCERPT],
            ended - started,
            ended - event.created,
        )
        with self._log_lock:
            self.attempts.append(record)
        if status is not None and 200 <= status < 300:
            if pending.task is not None:
                self._task_done(pending)
            return
        if self._stopping.is_set():
            return
        if pending.attempt >= trigger.retry.max_attempts:
            self._dead_letter(pending, record)
            if pending.task is not None:
                self._task_done(pending)
            return
        due = ended + trigger.retry.backoff(pending.attempt)
        self._push(replace(pending, due=due, seq=next(self._seq), attempt=pending.attempt + 1))

    def _dead_letter(self, pending: _Pending, last: Attempt) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "function": pending.trigger.function,
            "event_id": pending.event.id,
            "attempts": pending.attempt,
            "last_status": last.status,
            "last_error": last.error,
            "event": pending.event.to_dict(),
        }
        if pending.task is not None:
            line["task"] = f"gs://{self._settings.state_bucket}/{pending.task[0]}"
        with self._log_lock:
            self.dead_letters_path.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letters_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")


def read_dead_letters(state_dir: Path) -> list[dict[str, Any]]:
    """The dead-letter records under ``state_dir``, oldest first."""
    path = state_dir / DEAD_LETTERS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
