"""The Pub/Sub contract against the gcp backend on the real emulator, and the in-process fallback.

The emulator starts once per session (about 2 s); each test gets its own topic, subscription
and dead-letter topic on it. The gcp backend reaches it only through ``PUBSUB_EMULATOR_HOST``,
as the local mesh will. Where this machine lacks the emulator, its parametrization is skipped
with :func:`salesmesh.local.pubsub.available`'s reason and the fallback still runs the contract.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from contract_pubsub import MAX_ATTEMPTS, PubSub, PubSubContract

from salesmesh.backends.gcp_pubsub import PubSubNotFoundError, PubSubSubscription, PubSubTopic
from salesmesh.local.pubsub import InProcessPubSub, PubSubEmulator, available
from salesmesh.ports import ReceivedMessage

PROJECT = "salesmesh-test"


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """The official emulator on 127.0.0.1 for the whole session, or a skip saying why not."""
    reason = available()
    if reason is not None:
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    emulator = PubSubEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _on_emulator(emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    name = f"alerts-{uuid.uuid4().hex[:8]}"
    emulator.setup(PROJECT, name, f"{name}-sub", f"{name}-dead", MAX_ATTEMPTS)
    topic = PubSubTopic(PROJECT, name)
    subscription = PubSubSubscription(PROJECT, f"{name}-sub")
    dead = PubSubSubscription(PROJECT, f"{name}-dead-sub")

    def dead_letters() -> list[ReceivedMessage]:
        found = dead.pull(max_messages=10, timeout=0.2)
        dead.ack([m.ack_id for m in found])
        return found

    yield PubSub(topic, subscription, dead_letters)
    topic.client.stop()
    for sub in (subscription, dead):
        sub.client.close()


@pytest.fixture(params=["emulator", "in-process"])
def pubsub(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    if request.param == "emulator":
        emulator = request.getfixturevalue("pubsub_emulator")
        yield from _on_emulator(emulator, monkeypatch)
        return
    # dead letters go to a topic with its own subscription, as the emulator's do
    dead = InProcessPubSub()
    memory = InProcessPubSub(max_delivery_attempts=MAX_ATTEMPTS, dead_letter_topic=dead)

    def dead_letters() -> list[ReceivedMessage]:
        found = dead.pull(max_messages=10, timeout=0.2)
        dead.ack([m.ack_id for m in found])
        return found

    yield PubSub(memory, memory, dead_letters)


class TestPubSub(PubSubContract):
    pass


def test_a_missing_topic_is_a_clear_error(
    pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishing to a topic that does not exist raises PubSubNotFoundError naming it."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    topic = PubSubTopic(PROJECT, "never-created")
    try:
        with pytest.raises(PubSubNotFoundError, match="projects/salesmesh-test/topics/never"):
            topic.publish(b"x")
    finally:
        topic.client.stop()


def test_a_missing_subscription_is_a_clear_error(
    pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pulling from a subscription that does not exist raises PubSubNotFoundError naming it."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    subscription = PubSubSubscription(PROJECT, "never-created")
    try:
        with pytest.raises(PubSubNotFoundError, match="subscriptions/never-created"):
            subscription.pull(max_messages=1, timeout=0.5)
    finally:
        subscription.client.close()
