"""Trigger wiring: which function listens to which bucket or topic, with its retry policy.

One declarative file, ``triggers.json`` beside this module, is the single source of truth: the
local mesh delivers events by it and Terraform reads the same file with ``jsondecode``. Buckets
and topics are named by role (``data``, ``model``, ``alerts``), resolved to real names from
:class:`salesmesh.settings.Settings` at the edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from salesmesh.errors import WiringError

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
_EVENT_SOURCES = {STORAGE_FINALIZED: "bucket", PUBSUB_PUBLISHED: "topic"}
BUCKET_ROLES = ("data", "model", "state")
TOPIC_ROLES = ("alerts",)


@dataclass(frozen=True)
class Retry:
    """Redelivery of failed events: exponential backoff, then the dead-letter record."""

    max_attempts: int
    initial_backoff_seconds: float
    max_backoff_seconds: float

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before delivery ``attempt`` + 1 (``attempt`` counts from 1)."""
        delay: float = self.initial_backoff_seconds * 2.0 ** (attempt - 1)
        return min(delay, self.max_backoff_seconds)


@dataclass(frozen=True)
class Trigger:
    """One function subscribed to one event source."""

    function: str
    entry_point: str
    event_type: str
    source_role: str  # a bucket role for storage events, a topic role for Pub/Sub ones
    retry: Retry

    @property
    def is_storage(self) -> bool:
        """True when the trigger listens to a bucket rather than a topic."""
        return self.event_type == STORAGE_FINALIZED


def load(text: str | None = None) -> list[Trigger]:
    """The triggers in ``text`` (default: the packaged ``triggers.json``), validated."""
    if text is None:
        text = resources.files("salesmesh").joinpath("triggers.json").read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WiringError(f"triggers.json is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != 1:
        raise WiringError('triggers.json must be an object with "version": 1')
    entries = document.get("triggers")
    if not isinstance(entries, list) or not entries:
        raise WiringError('triggers.json needs a non-empty "triggers" list')
    triggers = [_trigger(i, entry) for i, entry in enumerate(entries)]
    names = [t.function for t in triggers]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise WiringError(f"functions wired twice: {duplicated}")
    return triggers


def _trigger(index: int, entry: Any) -> Trigger:
    where = f"trigger #{index + 1}"
    if not isinstance(entry, dict):
        raise WiringError(f"{where} is not an object")
    function = _text(entry, "function", where)
    where = f"trigger {function!r}"
    event_type = _text(entry, "event_type", where)
    if event_type not in _EVENT_SOURCES:
        raise WiringError(
            f"{where}: event_type {event_type!r} is not one of {sorted(_EVENT_SOURCES)}"
        )
    key = _EVENT_SOURCES[event_type]
    role = _text(entry, key, where)
    allowed = BUCKET_ROLES if key == "bucket" else TOPIC_ROLES
    if role not in allowed:
        raise WiringError(f"{where}: {key} {role!r} is not one of {list(allowed)}")
    retry = entry.get("retry")
    if not isinstance(retry, dict):
        raise WiringError(f'{where}: "retry" must be an object')
    attempts = retry.get("max_attempts")
    initial = retry.get("initial_backoff_seconds")
    ceiling = retry.get("max_backoff_seconds")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise WiringError(f"{where}: retry.max_attempts must be an integer >= 1, got {attempts!r}")
    for name, value in (("initial_backoff_seconds", initial), ("max_backoff_seconds", ceiling)):
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise WiringError(f"{where}: retry.{name} must be a positive number, got {value!r}")
    assert isinstance(initial, int | float) and isinstance(ceiling, int | float)  # for mypy
    if ceiling < initial:
        raise WiringError(f"{where}: retry.max_backoff_seconds is below initial_backoff_seconds")
    return Trigger(
        function=function,
        entry_point=_text(entry, "entry_point", where),
        event_type=event_type,
        source_role=role,
        retry=Retry(attempts, float(initial), float(ceiling)),
    )


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise WiringError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def subscribers(triggers: list[Trigger], event_type: str, role: str) -> list[Trigger]:
    """The triggers an event of ``event_type`` from the bucket or topic ``role`` goes to."""
    return [t for t in triggers if t.event_type == event_type and t.source_role == role]
