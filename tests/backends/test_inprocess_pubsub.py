"""What only the in-process fallback can show quickly: leases that expire, and many threads.

The emulator's shortest ack deadline is 10 s, so lease expiry is pinned here, on the fallback
whose deadline can be a fraction of a second; the shared behaviour is in contract_pubsub.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from salesmesh.local.inprocess_pubsub import InProcessPubSub


def test_an_expired_lease_redelivers() -> None:
    """A delivery neither acked nor nacked comes back after the ack deadline, attempt + 1."""
    memory = InProcessPubSub(ack_deadline_seconds=0.2)
    message_id = memory.publish(b"slow handler")
    [first] = memory.pull(max_messages=1, timeout=1.0)
    assert memory.pull(max_messages=1, timeout=0.05) == []  # still leased
    started = time.monotonic()
    [again] = memory.pull(max_messages=1, timeout=2.0)
    assert 0.05 < time.monotonic() - started < 1.0
    assert (again.message_id, again.delivery_attempt) == (message_id, 2)
    memory.ack([first.ack_id])  # too late: the old lease is gone, the new one stands
    memory.nack([again.ack_id])
    [third] = memory.pull(max_messages=1, timeout=1.0)
    assert third.delivery_attempt == 3


def test_an_expired_last_attempt_is_dead_lettered() -> None:
    """Expiry spends an attempt like a nack: on the last one the message is dead-lettered."""
    memory = InProcessPubSub(ack_deadline_seconds=0.1, max_delivery_attempts=2)
    memory.publish(b"never acked")
    for _ in range(2):
        assert len(memory.pull(max_messages=1, timeout=1.0)) == 1
    assert memory.pull(max_messages=1, timeout=0.3) == []
    assert [(m.data, m.delivery_attempt) for m in memory.dead_letters] == [(b"never acked", 2)]


def test_without_a_policy_nothing_is_dead_lettered() -> None:
    """With no max_delivery_attempts a message is redelivered however often it is nacked."""
    memory = InProcessPubSub()
    memory.publish(b"again and again")
    for attempt in range(1, 21):
        [message] = memory.pull(max_messages=1, timeout=1.0)
        assert message.delivery_attempt == attempt
        memory.nack([message.ack_id])
    assert memory.dead_letters == []


def test_concurrent_publishers_and_pullers_lose_nothing() -> None:
    """Eight publishing threads and four pulling ones: every message is received once."""
    memory = InProcessPubSub()
    sent: list[str] = []
    got: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def publish(worker: int) -> None:
        for i in range(50):
            message_id = memory.publish(f"{worker}-{i}".encode())
            with lock:
                sent.append(message_id)

    def pull() -> None:
        while not done.is_set() or len(got) < len(sent):
            batch = memory.pull(max_messages=7, timeout=0.05)
            memory.ack([m.ack_id for m in batch])
            with lock:
                got.extend(m.message_id for m in batch)

    pullers = [threading.Thread(target=pull) for _ in range(4)]
    publishers = [threading.Thread(target=publish, args=(w,)) for w in range(8)]
    for thread in pullers + publishers:
        thread.start()
    for thread in publishers:
        thread.join()
    done.set()
    for thread in pullers:
        thread.join(timeout=10)
    assert len(sent) == 400
    assert sorted(got) == sorted(sent)


def test_bad_arguments_are_refused() -> None:
    """Text instead of bytes, max_messages < 1 and a non-positive deadline are errors."""
    memory = InProcessPubSub()
    with pytest.raises(TypeError, match="bytes"):
        memory.publish("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_messages"):
        memory.pull(max_messages=0, timeout=0.1)
    with pytest.raises(ValueError, match="ack_deadline_seconds"):
        InProcessPubSub(ack_deadline_seconds=0)
