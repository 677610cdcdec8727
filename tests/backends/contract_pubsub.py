"""The Topic and Subscription contract, run against every Pub/Sub backend (fsspec's style).

A backend's test module subclasses :class:`PubSubContract` and provides one fixture,
``pubsub``: a fresh :class:`PubSub` whose subscription is the topic's only one, with a
dead-letter policy of :data:`MAX_ATTEMPTS` deliveries, and a way to read what was dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from salesmesh.ports import ReceivedMessage, Subscription, Topic

MAX_ATTEMPTS = 5  # Pub/Sub's smallest max_delivery_attempts
WAIT = 5.0  # seconds a pull may wait for a message that was published


@dataclass
class PubSub:
    topic: Topic
    subscription: Subscription
    dead_letters: Callable[[], list[ReceivedMessage]]


def pull_one(pubsub: PubSub) -> ReceivedMessage:
    """The one message the subscription hands out next (fails if none comes, or several)."""
    [message] = pubsub.subscription.pull(max_messages=10, timeout=WAIT)
    return message


class PubSubContract:
    """What every Pub/Sub backend must do."""

    def test_a_published_message_is_pulled(self, pubsub: PubSub) -> None:
        """pull() hands out the published data, attributes and message id, first attempt."""
        before = datetime.now(UTC) - timedelta(seconds=1)
        message_id = pubsub.topic.publish(b'{"incident": 1}', {"kind": "incident", "n": "1"})
        assert isinstance(message_id, str) and message_id
        message = pull_one(pubsub)
        assert message.message_id == message_id
        assert message.data == b'{"incident": 1}'
        assert dict(message.attributes) == {"kind": "incident", "n": "1"}
        assert message.delivery_attempt == 1
        assert message.ack_id
        published = datetime.fromisoformat(message.publish_time.replace("Z", "+00:00"))
        assert before <= published <= datetime.now(UTC) + timedelta(seconds=1)
        assert message.publish_time.endswith("Z")

    def test_no_attributes_is_an_empty_mapping(self, pubsub: PubSub) -> None:
        """A message published without attributes arrives with none, its bytes intact."""
        data = bytes(range(256))
        pubsub.topic.publish(data)
        message = pull_one(pubsub)
        assert (message.data, dict(message.attributes)) == (data, {})

    def test_message_ids_differ(self, pubsub: PubSub) -> None:
        """Each published message gets its own id."""
        ids = {pubsub.topic.publish(f"m{i}".encode()) for i in range(3)}
        assert len(ids) == 3

    def test_acked_message_is_not_delivered_again(self, pubsub: PubSub) -> None:
        """After ack the message is gone: the next pull gets only a later one, then nothing."""
        pubsub.topic.publish(b"first")
        first = pull_one(pubsub)
        pubsub.subscription.ack([first.ack_id])
        pubsub.topic.publish(b"second")
        second = pull_one(pubsub)
        assert second.data == b"second"
        pubsub.subscription.ack([second.ack_id])
        assert pubsub.subscription.pull(max_messages=10, timeout=0.5) == []

    def test_nack_redelivers_with_a_higher_attempt(self, pubsub: PubSub) -> None:
        """A nacked message comes back at once: same id and data, new ack id, attempt + 1."""
        message_id = pubsub.topic.publish(b"retry me", {"k": "v"})
        first = pull_one(pubsub)
        pubsub.subscription.nack([first.ack_id])
        again = pull_one(pubsub)
        assert (again.message_id, again.data, dict(again.attributes)) == (
            message_id,
            b"retry me",
            {"k": "v"},
        )
        assert again.ack_id != first.ack_id
        assert again.delivery_attempt == first.delivery_attempt + 1 == 2

    def test_dead_letter_after_max_attempts(self, pubsub: PubSub) -> None:
        """Nacked on its last allowed attempt, a message leaves the subscription for the
        dead-letter topic, with its data, its attributes and Pub/Sub's source attributes."""
        message_id = pubsub.topic.publish(b"poison", {"kind": "incident"})
        for attempt in range(1, MAX_ATTEMPTS + 1):
            message = pull_one(pubsub)
            assert (message.message_id, message.delivery_attempt) == (message_id, attempt)
            pubsub.subscription.nack([message.ack_id])
        assert pubsub.subscription.pull(max_messages=10, timeout=0.5) == []
        deadline = time.monotonic() + WAIT
        while not (dead := pubsub.dead_letters()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [d.data for d in dead] == [b"poison"]
        attributes = dict(dead[0].attributes)
        assert attributes["kind"] == "incident"
        assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == str(MAX_ATTEMPTS)
        assert attributes["CloudPubSubDeadLetterSourceSubscription"]

    def test_pull_without_messages_returns_empty_in_time(self, pubsub: PubSub) -> None:
        """Nothing published: pull() returns [] after about its timeout, not much later."""
        started = time.monotonic()
        assert pubsub.subscription.pull(max_messages=10, timeout=0.6) == []
        assert 0.4 <= time.monotonic() - started < 2.0

    def test_pull_waits_for_a_message(self, pubsub: PubSub) -> None:
        """A message published while pull() waits is handed out before the timeout."""
        import threading

        later = threading.Timer(0.3, pubsub.topic.publish, args=(b"late",))
        later.start()
        try:
            started = time.monotonic()
            [message] = pubsub.subscription.pull(max_messages=10, timeout=WAIT)
            assert message.data == b"late"
            assert time.monotonic() - started < WAIT
        finally:
            later.join()

    def test_max_messages_is_respected(self, pubsub: PubSub) -> None:
        """pull(max_messages=2) hands out at most two; every message arrives exactly once."""
        sent = {pubsub.topic.publish(f"m{i}".encode()) for i in range(3)}
        got: list[ReceivedMessage] = []
        deadline = time.monotonic() + WAIT
        while len(got) < 3 and time.monotonic() < deadline:
            batch = pubsub.subscription.pull(max_messages=2, timeout=1.0)
            assert len(batch) <= 2
            pubsub.subscription.ack([m.ack_id for m in batch])
            got.extend(batch)
        assert sorted(m.message_id for m in got) == sorted(sent)
