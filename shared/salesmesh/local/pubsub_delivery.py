"""The local stand-in for Eventarc's Pub/Sub triggers: pull, POST a CloudEvent, ack or nack.

One thread per Pub/Sub trigger whose function the mesh serves pulls the trigger's subscription
(:class:`~salesmesh.local.mesh_pubsub.Route`) and POSTs each message, one at a time, as the
binary-mode ``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent Eventarc sends:
``ce-id`` the message id, ``ce-source`` ``//pubsub.googleapis.com/projects/P/topics/T``,
``ce-time`` the publish time, no subject; the body is ``MessagePublishedData``::

    {"message": {"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
                 "data": "<base64>", "attributes": {...},
                 "messageId": "…", "message_id": "…", "publishTime": "…", "publish_time": "…"},
     "subscription": "projects/P/subscriptions/S"}

(both spellings of id and time, as Eventarc sends them; ``attributes`` only when the message
has some, as protobuf JSON leaves an empty map out). A 2xx answer acks the message. Anything
else nacks it after the trigger's exponential backoff (a push subscription's retry policy),
without holding up the messages behind it; on the subscription's last allowed attempt the nack
is at once and the dead-letter policy moves the message to the dead-letter topic. A drain
thread per dead-letter subscription writes each such message to ``<state_dir>/
dead_letters.jsonl``, in the storage delivery's record format plus its ``subscription``, so
``salesmesh status`` lists dead-lettered alerts too.

Every POST is an :class:`~salesmesh.local.delivery.Attempt` in the storage delivery's
``attempts`` deque. A pull waits up to ``pull_timeout`` for a message (less when a nack falls
due sooner), so an idle mesh asks rarely; :meth:`PubSubDelivery.stop` calls ``interrupt`` to end
the pulls in flight and returns once a POST in flight, if any, is answered or abandoned.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from time import monotonic
from typing import Any, TypeVar

from salesmesh.errors import MeshError
from salesmesh.local.binary import EXCERPT, Event, post
from salesmesh.local.delivery import Attempt
from salesmesh.local.mesh_pubsub import Route, attempts
from salesmesh.ports import ReceivedMessage, Subscription
from salesmesh.wiring import PUBSUB_PUBLISHED

MAX_MESSAGES = 10
PUBSUB_MESSAGE = "type.googleapis.com/google.pubsub.v1.PubsubMessage"
DEAD_LETTER_PREFIX = "CloudPubSubDeadLetterSource"  # attributes Pub/Sub adds when it dead-letters
log = logging.getLogger(__name__)
T = TypeVar("T")


def published_event(message: ReceivedMessage, topic_path: str, subscription_path: str) -> Event:
    """The ``messagePublished`` CloudEvent Eventarc makes of ``message``."""
    published: dict[str, Any] = {
        "@type": PUBSUB_MESSAGE,
        "data": base64.b64encode(message.data).decode(),
        "messageId": message.message_id,
        "message_id": message.message_id,
        "publishTime": message.publish_time,
        "publish_time": message.publish_time,
    }
    if message.attributes:
        published["attributes"] = dict(message.attributes)
    # the event's age counts from the publish, so an Attempt's since_event spans the whole hop
    age = time.time() - datetime.fromisoformat(message.publish_time).timestamp()
    return Event(
        id=message.message_id,
        source=f"//pubsub.googleapis.com/{topic_path}",
        type=PUBSUB_PUBLISHED,
        subject="",
        time=message.publish_time,
        data={"message": published, "subscription": subscription_path},
        created=monotonic() - max(age, 0.0),
    )


def _key(subscription: str, data: bytes) -> tuple[str, str]:
    """What a dead-lettered copy shares with the message it came from: Pub/Sub gives the copy
    a new id, but keeps the data and names the source subscription (its short name)."""
    return subscription.rsplit("/", 1)[-1], hashlib.sha256(data).hexdigest()


class PubSubDelivery:
    """Delivers the routes' subscriptions to their functions; drains the dead letters."""

    def __init__(
        self,
        routes: list[Route],
        urls: Mapping[str, str],
        attempts: deque[Attempt],
        dead_letters: list[Subscription],
        dead_letters_path: Path,
        *,
        timeout: float = 60.0,
        pull_timeout: float = 0.5,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        """``urls`` maps function -> URL: routes of functions without one are not pulled
        (their messages wait in the subscription, as on Pub/Sub). ``interrupt`` ends the pulls
        in flight (at stop); without one, stop waits for them, up to ``pull_timeout``."""
        self.routes = [r for r in routes if r.trigger.function in urls]
        self.attempts = attempts
        self.dead_letters_path = dead_letters_path
        self._urls = dict(urls)
        self._drains = list(dead_letters)
        self._timeout = timeout
        self._pull_timeout = pull_timeout
        self._interrupt = interrupt
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # last failed attempts by _key, waiting for their dead-lettered copy (oldest first)
        self._last: dict[tuple[str, str], deque[tuple[Attempt, Event]]] = {}
        self._by_name = {_key(r.subscription_path, b"")[0]: r for r in routes}

    def start(self) -> None:
        """One puller thread per served route and one drain per dead-letter subscription."""
        targets: list[tuple[str, Callable[[], None]]] = [
            (f"pubsub-{r.trigger.function}", partial(self._pull, r)) for r in self.routes
        ]
        targets += [
            (f"pubsub-dead-{i}", partial(self._drain, s)) for i, s in enumerate(self._drains)
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every thread; a POST in flight is abandoned after ``timeout`` (its message
        comes back when its lease runs out, if the Pub/Sub outlives the mesh)."""
        self._stopping.set()
        if self._interrupt is not None:
            self._interrupt()
        deadline = monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - monotonic()))
        self._threads.clear()

    def _call(self, what: str, call: Callable[[], T], default: T) -> T:
        """``call()``, or ``default`` after logging why a Pub/Sub call failed."""
        try:
            return call()
        except Exception as exc:
            if self._stopping.is_set():
                return default  # interrupted, or a client closed under it: the mesh is ending
            if not isinstance(exc, MeshError):
                raise
            log.error("%s: %s", what, exc)
            self._stopping.wait(1.0)  # do not spin on an emulator that died
            return default

    def _pull(self, route: Route) -> None:
        subscription, url = route.subscription, self._urls[route.trigger.function]
        backoff: list[tuple[float, str]] = []  # (when to nack, ack id)
        while not self._stopping.is_set():
            now = monotonic()
            due = []
            while backoff and backoff[0][0] <= now:
                due.append(heapq.heappop(backoff)[1])
            if due:
                self._call(
                    f"nacking on {route.subscription_path}", partial(subscription.nack, due), None
                )
            wait = self._pull_timeout
            if backoff:  # the emulator's pull lasts 0.5 s at least: a nack may be that late
                wait = min(wait, backoff[0][0] - now)
            pulled: list[ReceivedMessage] = self._call(
                f"pulling {route.subscription_path}",
                partial(subscription.pull, MAX_MESSAGES, max(wait, 0.01)),
                [],
            )
            for message in pulled:
                if self._stopping.is_set():
                    return
                nack_at = self._deliver(route, url, message)
                if nack_at is not None:
                    heapq.heappush(backoff, (nack_at, message.ack_id))

    def _deliver(self, route: Route, url: str, message: ReceivedMessage) -> float | None:
        """POST ``message``; ack it on 2xx and return None, else when to nack it."""
        trigger = route.trigger
        event = published_event(message, route.topic_path, route.subscription_path)
        started = monotonic()
        status, body, error = post(url, event, self._timeout)
        ended = monotonic()
        record = Attempt(
            trigger.function,
            event.id,
            message.delivery_attempt,
            status,
            error or body[:EXCERPT],
            ended - started,
            ended - event.created,
        )
        self.attempts.append(record)  # deque.append is atomic: no lock
        subscription, what = route.subscription, f"on {route.subscription_path}"
        if status is not None and 200 <= status < 300:
            self._call(f"acking {what}", partial(subscription.ack, [message.ack_id]), None)
            return None
        if message.delivery_attempt >= attempts(trigger):
            with self._lock:
                key = _key(route.subscription_path, message.data)
                self._last.setdefault(key, deque(maxlen=100)).append((record, event))
            return ended  # the last attempt: nack at once, the dead-letter policy takes it
        return ended + trigger.retry.backoff(max(message.delivery_attempt, 1))

    def _drain(self, subscription: Subscription) -> None:
        while not self._stopping.is_set():
            pulled: list[ReceivedMessage] = self._call(
                "pulling the dead letters",
                partial(subscription.pull, MAX_MESSAGES, self._pull_timeout),
                [],
            )
            for message in pulled:
                self._write(self._dead_letter(message))
            if pulled:
                done = [m.ack_id for m in pulled]
                self._call("acking dead letters", partial(subscription.ack, done), None)

    def _dead_letter(self, message: ReceivedMessage) -> dict[str, Any]:
        """The record of a dead-lettered copy: its last attempt's outcome, if this mesh made it."""
        source = message.attributes.get(f"{DEAD_LETTER_PREFIX}Subscription", "")
        original = {
            k: v for k, v in message.attributes.items() if not k.startswith(DEAD_LETTER_PREFIX)
        }
        with self._lock:
            waiting = self._last.pop(_key(source, message.data), deque())
            last = waiting.popleft() if waiting else None
            if waiting:
                self._last[_key(source, message.data)] = waiting
        count = message.attributes.get(f"{DEAD_LETTER_PREFIX}DeliveryCount", "0")
        route = self._by_name.get(source)
        line: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "function": route.trigger.function if route else "",
            "event_id": None,
            "attempts": int(count) if count.isdigit() else 0,
            "last_status": None,
            "last_error": "",
            "subscription": source,
            "dead_letter_message_id": message.message_id,
        }
        if last is not None:
            attempt, event = last
            line.update(
                event_id=attempt.event_id, last_status=attempt.status, last_error=attempt.error
            )
            line["event"] = event.to_dict()
        else:  # expired leases, or a message failed by an earlier run: the copy is all there is
            copy = ReceivedMessage(
                "", message.message_id, message.data, original, message.publish_time, 0
            )
            paths = (route.topic_path, route.subscription_path) if route else ("", source)
            line["event"] = published_event(copy, *paths).to_dict()
        return line

    def _write(self, line: Mapping[str, Any]) -> None:
        with self._lock:
            self.dead_letters_path.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letters_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        log.warning(
            "dead-lettered a message for %s after %s attempt(s)", line["function"], line["attempts"]
        )
