"""The Pub/Sub contract against the gcp backend on the real emulator, and the in-process fallback.

The emulator starts once per session (about 2 s); each test gets its own topic, subscription
and dead-letter topic on it. The gcp backend reaches it only through ``PUBSUB_EMULATOR_HOST``.
Each backend also runs with :class:`RestTopic` publishing, the standard-library client other
processes use to reach a running mesh. Where this machine lacks the emulator, its
parametrizations are skipped with :func:`salesmesh.local.pubsub.available`'s reason and the
fallback still runs the contract.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from contract_pubsub import MAX_ATTEMPTS, PubSub, PubSubContract

from salesmesh.backends.gcp_pubsub import PubSubNotFoundError, PubSubSubscription, PubSubTopic
from salesmesh.local.pubsub import InProcessPubSub, PubSubEmulator, available
from salesmesh.local.pubsub_rest import PublishServer, RestTopic
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


@pytest.fixture(params=["emulator", "in-process", "emulator-rest", "in-process-rest"])
def pubsub(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSub]:
    """Each backend; ``-rest``: publishing through Pub/Sub's REST door (RestTopic), on the
    emulator's own REST API or the mesh's PublishServer in front of the fallback."""
    if request.param.startswith("emulator"):
        emulator = request.getfixturevalue("pubsub_emulator")
        for found in _on_emulator(emulator, monkeypatch):
            if request.param == "emulator-rest":
                name = found.topic.path.rsplit("/", 1)[-1]  # type: ignore[attr-defined]
                found = replace(found, topic=RestTopic(f"http://{emulator.host}", PROJECT, name))
            yield found
        return
    # dead letters go to a topic with its own subscription, as the emulator's do
    dead = InProcessPubSub()
    memory = InProcessPubSub(max_delivery_attempts=MAX_ATTEMPTS, dead_letter_topic=dead)

    def dead_letters() -> list[ReceivedMessage]:
        found = dead.pull(max_messages=10, timeout=0.2)
        dead.ack([m.ack_id for m in found])
        return found

    if request.param == "in-process":
        yield PubSub(memory, memory, dead_letters)
        return
    server = PublishServer({(PROJECT, "alerts"): memory}).start()
    try:
        yield PubSub(RestTopic(server.url, PROJECT, "alerts"), memory, dead_letters)
    finally:
        server.stop()


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


def test_the_rest_door_refuses_what_pubsub_refuses() -> None:
    """An unknown topic is PubSubNotFoundError; a malformed request a 400 INVALID_ARGUMENT."""
    import http.client
    import json

    server = PublishServer({(PROJECT, "alerts"): InProcessPubSub()}).start()
    try:
        with pytest.raises(PubSubNotFoundError, match="projects/salesmesh-test/topics/other"):
            RestTopic(server.url, PROJECT, "other").publish(b"x")
        connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        path = f"/v1/projects/{PROJECT}/topics/alerts:publish"
        connection.request("POST", path, b'{"messages": [{"data": "not base64!"}]}')
        answer = connection.getresponse()
        assert answer.status == 400
        assert json.loads(answer.read())["error"]["status"] == "INVALID_ARGUMENT"
        connection.close()
    finally:
        server.stop()
