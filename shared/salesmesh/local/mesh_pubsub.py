"""The local mesh's Pub/Sub: the official emulator when this machine has it, else the fallback.

:meth:`MeshPubSub.start` runs the gcloud SDK's Pub/Sub emulator (:mod:`salesmesh.local.pubsub`)
when :func:`~salesmesh.local.pubsub.available` finds it and ``google-cloud-pubsub`` imports;
otherwise the in-process fallback (:class:`~salesmesh.local.inprocess_pubsub.InProcessPubSub`),
and :attr:`MeshPubSub.why` says why. Either way, for every topic role (``alerts``), with the
names :class:`~salesmesh.settings.Settings` derives from ``SALESMESH_ALERTS_TOPIC``:

- the topic, and the dead-letter topic with its subscription ``<dead-letter topic>-sub``, which
  the mesh drains into ``<state_dir>/dead_letters.jsonl`` (:mod:`salesmesh.local.pubsub_delivery`);
- one subscription per Pub/Sub trigger on the topic (``<topic>-<function>``) whose dead-letter
  policy ends a message after the trigger's ``retry.max_attempts``, kept within Pub/Sub's 5-100.

Other processes publish with :func:`running_topic`, which reads ``mesh.json``: Pub/Sub's REST
``publish`` at ``pubsub.publish_url``, served by the emulator itself or, for the fallback, by
the mesh (:mod:`salesmesh.local.pubsub_rest`). With the emulator, ``PUBSUB_EMULATOR_HOST`` set
to ``pubsub.emulator_host`` points google-cloud-pubsub clients at it as well. The fallback has
one subscription per topic and keeps messages only while the mesh runs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salesmesh.errors import MeshError
from salesmesh.local import pubsub
from salesmesh.local.inprocess_pubsub import InProcessPubSub
from salesmesh.local.pubsub_rest import PublishServer, RestTopic
from salesmesh.ports import Subscription, Topic
from salesmesh.settings import Settings
from salesmesh.wiring import PUBSUB_PUBLISHED, TOPIC_ROLES, Trigger

EMULATOR = "emulator"
IN_PROCESS = "in-process"
MIN_ATTEMPTS, MAX_ATTEMPTS = 5, 100  # Pub/Sub's bounds on max_delivery_attempts
MAX_ACK_DEADLINE = 600  # seconds, Pub/Sub's ceiling
# How long one pull may wait for a message. The emulator holds an empty pull a few seconds
# itself, which costs its JVM far less than deadlines the client cancels (idle CPU 0.8 % against
# 8 % with 0.5 s pulls); :meth:`MeshPubSub.interrupt` cuts the wait short at shutdown. The
# fallback's pull waits on a condition, cheap at any length, and cannot be interrupted.
LONG_PULL = {EMULATOR: 30.0, IN_PROCESS: 0.5}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """One Pub/Sub trigger as the mesh delivers it: where it pulls, what the event names."""

    trigger: Trigger
    subscription: Subscription
    subscription_path: str  # projects/P/subscriptions/S
    topic_path: str  # projects/P/topics/T


def attempts(trigger: Trigger) -> int:
    """The dead-letter policy's maximum delivery attempts for ``trigger``, within 5-100."""
    return min(max(trigger.retry.max_attempts, MIN_ATTEMPTS), MAX_ATTEMPTS)


def ack_deadline(triggers: list[Trigger], timeout: float) -> int:
    """An ack deadline that outlasts one POST and the longest backoff before its nack, so a
    lease never runs out while the mesh still holds the message (10-600 s)."""
    longest = max((t.retry.max_backoff_seconds for t in triggers), default=0.0)
    return min(max(math.ceil(timeout + longest) + 10, pubsub.MIN_ACK_DEADLINE), MAX_ACK_DEADLINE)


def unavailable() -> str | None:
    """Why the official emulator cannot serve the mesh here, or None if it can."""
    if importlib.util.find_spec("google.cloud.pubsub_v1") is None:
        return "google-cloud-pubsub is not installed (pip install -e '.[dev]')"
    return pubsub.available()


class MeshPubSub:
    """The mesh's topics and subscriptions, on the emulator or in process."""

    def __init__(
        self,
        settings: Settings,
        triggers: list[Trigger],
        log_dir: Path,
        *,
        timeout: float = 60.0,
        emulator: bool | None = None,
    ) -> None:
        """``timeout`` is the delivery's POST timeout (it sets the ack deadline); ``emulator``
        False forces the fallback, None picks the emulator when the machine has it."""
        self.settings = settings
        self.project = settings.project
        self.triggers = [t for t in triggers if t.event_type == PUBSUB_PUBLISHED]
        self.kind = ""
        self.why: str | None = None  # why the fallback runs, if it does
        self.routes: list[Route] = []
        self.dead_letters: list[Subscription] = []  # one per topic role
        self.emulator: pubsub.PubSubEmulator | None = None
        self.server: PublishServer | None = None
        self._topics: dict[str, Topic] = {}
        self._clients: tuple[Any, Any] | None = None
        self._log_dir = log_dir
        self._ack_deadline = ack_deadline(self.triggers, timeout)
        self._want_emulator = emulator

    def start(self) -> None:
        """Start the emulator (or the fallback and its publish server) and create everything."""
        self.why = "forced by the caller" if self._want_emulator is False else unavailable()
        if self.why is None:
            try:
                self._start_emulator()
                self.kind = EMULATOR
                return
            except pubsub.PubSubEmulatorError as exc:
                # a broken emulator install must not stop the mesh: say so, and fall back
                log.warning("the Pub/Sub emulator did not start, using the fallback: %s", exc)
                self.why = f"the emulator did not start: {exc}"
                self.stop()
                self.routes, self.dead_letters, self._topics = [], [], {}
        self.kind = IN_PROCESS
        self._start_in_process()

    def _start_emulator(self) -> None:
        from salesmesh.backends.gcp_pubsub import PubSubSubscription, PubSubTopic

        emulator = self.emulator = pubsub.PubSubEmulator(self._log_dir)
        emulator.start()
        publisher, subscriber = self._clients = pubsub.clients(emulator.host)
        for role in TOPIC_ROLES:
            topic, dead = self.settings.topic(role), self.settings.dead_letter_topic(role)
            self._topics[role] = PubSubTopic(self.project, topic, client=publisher)
            wired = [t for t in self.triggers if t.source_role == role]
            if not wired:  # as on Pub/Sub, what a topic without subscriptions gets is dropped
                publisher.create_topic(request={"name": self._topic_path(topic)})
                continue
            for trigger in wired:
                name = self.settings.subscription(role, trigger.function)
                emulator.setup(
                    self.project,
                    topic,
                    name,
                    dead,
                    attempts(trigger),
                    ack_deadline_seconds=self._ack_deadline,
                )
                pull = PubSubSubscription(self.project, name, client=subscriber)
                self.routes.append(Route(trigger, pull, pull.path, self._topic_path(topic)))
            drain = PubSubSubscription(self.project, f"{dead}-sub", client=subscriber)
            self.dead_letters.append(drain)

    def _start_in_process(self) -> None:
        published: dict[tuple[str, str], Topic] = {}
        for role in TOPIC_ROLES:
            topic = self.settings.topic(role)
            wired = [t for t in self.triggers if t.source_role == role]
            if len(wired) > 1:
                names = [t.function for t in wired]
                raise MeshError(
                    f"the in-process Pub/Sub has one subscription per topic, and {names} all "
                    f"listen to {topic}: install the gcloud CLI's pubsub-emulator ({self.why})"
                )
            dead = InProcessPubSub(ack_deadline_seconds=self._ack_deadline)
            memory = InProcessPubSub(ack_deadline_seconds=self._ack_deadline)  # nobody listens
            for trigger in wired:
                name = self.settings.subscription(role, trigger.function)
                memory = InProcessPubSub(
                    ack_deadline_seconds=self._ack_deadline,
                    max_delivery_attempts=attempts(trigger),
                    dead_letter_topic=dead,
                    subscription=name,
                )
                path = f"projects/{self.project}/subscriptions/{name}"
                self.routes.append(Route(trigger, memory, path, self._topic_path(topic)))
            self._topics[role] = memory
            self.dead_letters.append(dead)
            published[(self.project, topic)] = memory
        self.server = PublishServer(published).start()

    def _topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    @property
    def pull_timeout(self) -> float:
        """Seconds one pull of this Pub/Sub may wait for a message (see LONG_PULL)."""
        return LONG_PULL[self.kind]

    def interrupt(self) -> None:
        """End the pulls in flight now (they fail; only call it to shut down)."""
        if self._clients is not None:
            self._clients[1].close()

    def topic(self, role: str = "alerts") -> Topic:
        """The topic of ``role`` for publishers inside the mesh's process."""
        return self._topics[role]

    @property
    def publish_url(self) -> str:
        """Where Pub/Sub's REST ``publish`` reaches this mesh's topics ("" before start)."""
        if self.emulator is not None:
            return f"http://{self.emulator.host}"
        return self.server.url if self.server is not None else ""

    def describe(self) -> dict[str, Any]:
        """What runs, for ``mesh.json`` and ``salesmesh up``."""
        return {
            "kind": self.kind,
            "why": self.why,
            "emulator_host": self.emulator.host if self.emulator is not None else None,
            "publish_url": self.publish_url,
            "project": self.project,
            "topics": {role: self.settings.topic(role) for role in TOPIC_ROLES},
            "subscriptions": {r.trigger.function: r.subscription_path for r in self.routes},
            "dead_letter_topics": {
                role: self.settings.dead_letter_topic(role) for role in TOPIC_ROLES
            },
        }

    def summary(self) -> str:
        """One line: which Pub/Sub runs, and where or why."""
        if self.emulator is not None:
            return f"official emulator on {self.emulator.host}"
        return f"in-process fallback on {self.publish_url} (why: {self.why})"

    def env(self) -> dict[str, str]:
        """What points a google-cloud-pubsub client in a child process at this mesh."""
        return self.emulator.env() if self.emulator is not None else {}

    def stop(self) -> None:
        """Stop the publish server, close the clients and stop the emulator (java with it)."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._clients is not None:
            publisher, subscriber = self._clients
            self._clients = None
            publisher.stop()  # flushes and ends its batching thread
            publisher.transport.close()
            subscriber.close()
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None


def running_topic(settings: Settings, role: str = "alerts") -> Topic:
    """The topic of the local mesh running on ``settings.state_dir``, from any process.

    MeshError when no mesh runs (no readable ``mesh.json`` with a ``pubsub`` entry).
    """
    from salesmesh import runtime

    path = settings.state_dir / runtime.MESH_FILE
    try:
        described = json.loads(path.read_text())["pubsub"]
        url = str(described["publish_url"])
        project = str(described["project"])
        topic = str(described["topics"][role])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MeshError(
            f"no local mesh with Pub/Sub is running ({path}: {exc!r}): start one with "
            "`salesmesh up`"
        ) from exc
    return RestTopic(url, project, topic)
