"""The in-process Pub/Sub fallback: one topic and its one subscription, in memory.

For machines without the official emulator (no gcloud, no ``pubsub-emulator`` component, no
Java), so the local mesh still has an alerts topic. It keeps the semantics the delivery loop
relies on, pinned by the same contract suite as the emulator: at-least-once delivery, a lease
per delivery that expires after ``ack_deadline_seconds``, ``nack`` for an immediate redelivery,
``delivery_attempt`` counted from 1, and a dead-letter list after ``max_delivery_attempts``
(also published, as Pub/Sub does, to a dead-letter topic if one is given, with Pub/Sub's
``CloudPubSubDeadLetterSource*`` attributes added).

What it does not keep: messages live only as long as this process (a restarted mesh starts
empty), there is one subscription, and nothing outside the process can publish to it.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from salesmesh.ports import ReceivedMessage, Topic, rfc3339


@dataclass
class _Message:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: str
    attempts: int = 0


@dataclass
class _Lease:
    message: _Message
    expires: float  # time.monotonic()


@dataclass
class InProcessPubSub:
    """A thread-safe in-memory topic with one subscription: a ``Topic`` and a ``Subscription``.

    ``max_delivery_attempts`` None never dead-letters (a subscription without a dead-letter
    policy); otherwise a message nacked or expired on its last attempt moves to
    :attr:`dead_letters` instead of coming back, and is published to ``dead_letter_topic``
    when there is one (``subscription`` is the name its attributes give as the source).
    """

    ack_deadline_seconds: float = 10.0
    max_delivery_attempts: int | None = None
    dead_letters: list[ReceivedMessage] = field(default_factory=list)
    dead_letter_topic: Topic | None = None
    subscription: str = "subscription"

    def __post_init__(self) -> None:
        if self.ack_deadline_seconds <= 0:
            raise ValueError(f"ack_deadline_seconds must be positive: {self.ack_deadline_seconds}")
        if self.max_delivery_attempts is not None and self.max_delivery_attempts < 1:
            raise ValueError(f"max_delivery_attempts must be >= 1: {self.max_delivery_attempts}")
        self._ready: deque[_Message] = deque()
        self._leases: dict[str, _Lease] = {}
        self._ids = itertools.count(1)
        self._changed = threading.Condition()

    def publish(self, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Store one message for the subscription and return its id."""
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        message = _Message(
            message_id=str(next(self._ids)),
            data=data,
            attributes=dict(attributes or {}),
            publish_time=rfc3339(),
        )
        with self._changed:
            self._ready.append(message)
            self._changed.notify_all()
        return message.message_id

    def pull(self, max_messages: int, timeout: float) -> list[ReceivedMessage]:
        """Lease up to ``max_messages`` messages, waiting up to ``timeout`` s for the first."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1: {max_messages}")
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._expire(time.monotonic())
                if self._ready:
                    count = min(max_messages, len(self._ready))
                    return [self._lease(self._ready.popleft()) for _ in range(count)]
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                # a lease may expire before anyone publishes: wake up for it too
                soonest = min((lease.expires for lease in self._leases.values()), default=None)
                if soonest is not None:
                    left = min(left, max(soonest - time.monotonic(), 0.001))
                self._changed.wait(left)

    def ack(self, ack_ids: Sequence[str]) -> None:
        """Forget these deliveries' messages; unknown or expired ack ids are ignored, as on
        Pub/Sub (the message may come back if its lease ran out first)."""
        with self._changed:
            for ack_id in ack_ids:
                self._leases.pop(ack_id, None)

    def nack(self, ack_ids: Sequence[str]) -> None:
        """Redeliver these deliveries' messages now (or dead-letter them)."""
        with self._changed:
            for ack_id in ack_ids:
                lease = self._leases.pop(ack_id, None)
                if lease is not None:
                    self._give_back(lease.message)
            self._changed.notify_all()

    def _lease(self, message: _Message) -> ReceivedMessage:
        message.attempts += 1
        ack_id = uuid.uuid4().hex
        self._leases[ack_id] = _Lease(message, time.monotonic() + self.ack_deadline_seconds)
        return _received(message, ack_id)

    def _expire(self, now: float) -> None:
        for ack_id, lease in list(self._leases.items()):
            if lease.expires <= now:
                del self._leases[ack_id]
                self._give_back(lease.message)

    def _give_back(self, message: _Message) -> None:
        spent = self.max_delivery_attempts is not None
        if spent and message.attempts >= (self.max_delivery_attempts or 0):
            self.dead_letters.append(_received(message, ack_id=""))
            if self.dead_letter_topic is not None:
                self.dead_letter_topic.publish(message.data, self._dead_letter_attributes(message))
        else:
            self._ready.append(message)

    def _dead_letter_attributes(self, message: _Message) -> dict[str, str]:
        """The message's attributes plus those Pub/Sub adds when it dead-letters one."""
        return {
            **message.attributes,
            "CloudPubSubDeadLetterSourceDeliveryCount": str(message.attempts),
            "CloudPubSubDeadLetterSourceSubscription": self.subscription,
            "CloudPubSubDeadLetterSourceTopicPublishTime": message.publish_time,
        }


def _received(message: _Message, ack_id: str) -> ReceivedMessage:
    return ReceivedMessage(
        ack_id=ack_id,
        message_id=message.message_id,
        data=message.data,
        attributes=dict(message.attributes),
        publish_time=message.publish_time,
        delivery_attempt=message.attempts,
    )
