"""Pub/Sub backends of the ``Topic`` and ``Subscription`` ports, over ``google-cloud-pubsub``.

The same code talks to Google Cloud and to the official emulator: the client library itself
switches to an unauthenticated plain-text channel when ``PUBSUB_EMULATOR_HOST`` is set, so the
local mesh points this backend at its emulator through the environment and nothing else.

The SDK is imported when a client is first needed, never at module import.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from salesmesh.errors import MeshError
from salesmesh.ports import ReceivedMessage, rfc3339

PUBLISH_TIMEOUT = 30.0  # seconds to wait for the server to store a published message
# Pub/Sub (and the emulator) may answer a pull at once with nothing; pull() asks again this
# often until a message comes or its timeout passes.
_PULL_INTERVAL = 0.1


class PubSubError(MeshError):
    """A Pub/Sub call failed; the message names the topic or subscription and the cause."""


class PubSubNotFoundError(PubSubError):
    """The topic or subscription does not exist: create it (``terraform apply``, or the local
    mesh's ``PubSubEmulator.setup``) or fix its name."""


def _pubsub() -> Any:
    return importlib.import_module("google.cloud.pubsub_v1")


@contextmanager
def _calling(what: str) -> Iterator[None]:
    """Turn the SDK's errors into the mesh's, naming ``what`` was being done."""
    exceptions = importlib.import_module("google.api_core.exceptions")
    try:
        yield
    except exceptions.NotFound as exc:
        raise PubSubNotFoundError(f"{what}: not found ({exc.message})") from exc
    except (exceptions.GoogleAPIError, TimeoutError) as exc:
        raise PubSubError(f"{what} failed: {exc}") from exc


class PubSubTopic:
    """Publishes to ``projects/<project>/topics/<topic>`` (the ``Topic`` port)."""

    def __init__(self, project: str, topic: str, *, client: Any = None) -> None:
        """``client`` is a ``pubsub_v1.PublisherClient``; None makes one on first publish."""
        self.path = f"projects/{project}/topics/{topic}"
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _pubsub().PublisherClient()
        return self._client

    def publish(self, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
        """Publish one message; returns its server-assigned id once the topic stored it."""
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        with _calling(f"publishing to {self.path}"):
            future = self.client.publish(self.path, data, **dict(attributes or {}))
            message_id: str = future.result(timeout=PUBLISH_TIMEOUT)
        return message_id


class PubSubSubscription:
    """Pulls from ``projects/<project>/subscriptions/<subscription>`` (the ``Subscription``
    port): synchronous unary pull, ack, and nack as an ack deadline of 0."""

    def __init__(self, project: str, subscription: str, *, client: Any = None) -> None:
        """``client`` is a ``pubsub_v1.SubscriberClient``; None makes one on first use."""
        self.path = f"projects/{project}/subscriptions/{subscription}"
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _pubsub().SubscriberClient()
        return self._client

    def pull(self, max_messages: int, timeout: float) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages, as soon as any is there; ``[]`` after ``timeout``."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1: {max_messages}")
        exceptions = importlib.import_module("google.api_core.exceptions")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            request = {"subscription": self.path, "max_messages": max_messages}
            with _calling(f"pulling from {self.path}"):
                try:
                    response = self.client.pull(request=request, timeout=max(left, 0.5))
                except exceptions.DeadlineExceeded:
                    response = None  # a long pull that found nothing, on Google Cloud
            if response is not None and response.received_messages:
                return [_received(item) for item in response.received_messages]
            if time.monotonic() + _PULL_INTERVAL >= deadline:
                return []
            time.sleep(_PULL_INTERVAL)

    def ack(self, ack_ids: Sequence[str]) -> None:
        """Acknowledge these deliveries; their messages are not delivered again."""
        if ack_ids:
            with _calling(f"acknowledging on {self.path}"):
                self.client.acknowledge(
                    request={"subscription": self.path, "ack_ids": list(ack_ids)}
                )

    def nack(self, ack_ids: Sequence[str]) -> None:
        """Give these deliveries back for redelivery now (Pub/Sub's own nack: deadline 0)."""
        if ack_ids:
            with _calling(f"nacking on {self.path}"):
                self.client.modify_ack_deadline(
                    request={
                        "subscription": self.path,
                        "ack_ids": list(ack_ids),
                        "ack_deadline_seconds": 0,
                    }
                )


def _received(item: Any) -> ReceivedMessage:
    """A ``ReceivedMessage`` proto as the port's dataclass."""
    message = item.message
    return ReceivedMessage(
        ack_id=item.ack_id,
        message_id=message.message_id,
        data=bytes(message.data),
        attributes=dict(message.attributes),
        publish_time=rfc3339(message.publish_time),
        delivery_attempt=int(item.delivery_attempt),
    )
