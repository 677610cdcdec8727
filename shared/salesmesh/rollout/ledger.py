"""The rollout ledger: one durable JSON record per endpoint, written by compare-and-swap.

``gs://<state bucket>/rollout/<endpoint>.json`` holds everything the mesh decided about the
endpoint: the rollout in progress (its state machine, :mod:`salesmesh.rollout.steps`), the
queue of versions waiting for one, the state of every version, and the history of every
traffic split the endpoint ever had (who, why, when, from which versions to which). It is the
single source for ``salesmesh versions`` and ``salesmesh history``; model labels are only a
searchable copy (Vertex AI merges model-level labels into every version it returns).

Writes are compare-and-swap on the object's generation (:mod:`salesmesh.cas`, with its file
lock where the local emulator ignores preconditions): of two writers that read the same record
exactly one wins and the other gets :class:`LedgerConflictError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from salesmesh.cas import CasConflictError, CasObject
from salesmesh.errors import SourceError

SCHEMA = 1
PREFIX = "rollout/"


class LedgerConflictError(CasConflictError):
    """The ledger changed between this reader's read and its write; nothing was written."""


@dataclass(frozen=True)
class Snapshot:
    """The ledger as read: the document (a private copy) and its object generation."""

    document: dict[str, Any]
    generation: int  # 0 when there is no record yet


def empty(endpoint: str) -> dict[str, Any]:
    """The record of an endpoint nothing has been decided about yet."""
    return {
        "schema": SCHEMA,
        "id": uuid.uuid4().hex[:12],  # names this record's step tasks: never reused
        "endpoint": endpoint,
        "seq": 0,
        "split": {},
        "undeploy": [],
        "rollout": None,
        "queue": [],
        "versions": {},
        "runs": {},
        "rollouts": [],
        "history": [],
    }


class LedgerStore:
    """Reads and compare-and-swap writes of one endpoint's ledger in a bucket."""

    def __init__(
        self,
        client: Callable[[], Any],
        bucket: str,
        endpoint: str,
        *,
        guard: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """``client`` builds a google-cloud-storage client on first use; ``guard`` serialises
        readers and writers where the storage ignores preconditions (the local emulator)."""
        self.bucket = bucket
        self.endpoint = endpoint
        self.name = f"{PREFIX}{endpoint}.json"
        self._object = CasObject(client, bucket, self.name, guard=guard)

    @property
    def uri(self) -> str:
        """Where the record lives."""
        return self._object.uri

    def read(self) -> Snapshot:
        """The record and its generation (an empty record at generation 0 if there is none)."""
        found = self._object.read()
        if found.document is None:
            return Snapshot(empty(self.endpoint), 0)
        if found.document.get("schema") != SCHEMA:
            raise SourceError(f"{self.uri} is not a salesmesh ledger of schema {SCHEMA}")
        return Snapshot(found.document, found.generation)

    def write(self, document: dict[str, Any], expected: int) -> Snapshot:
        """Store ``document`` if the record is still at generation ``expected``; the new
        snapshot, or LedgerConflictError (nothing written) if someone wrote in between."""
        try:
            written = self._object.write(document, expected)
        except LedgerConflictError:
            raise
        except CasConflictError as exc:
            raise LedgerConflictError(str(exc)) from None
        assert written.document is not None  # a write always stores one
        return Snapshot(written.document, written.generation)

    def update(
        self, change: Callable[[dict[str, Any]], bool | None], attempts: int = 20
    ) -> Snapshot:
        """Apply ``change`` to the latest record and store it, re-reading on conflict; a
        ``change`` that returns False changed nothing, and nothing is written.

        For changes that do not depend on the world outside the ledger (queueing a version,
        recording a verdict), so re-applying them to a newer record is right.
        """
        for _ in range(attempts):
            snapshot = self.read()
            document = snapshot.document
            if change(document) is False:
                return snapshot
            document["seq"] = int(document.get("seq", 0)) + 1
            try:
                return self.write(document, snapshot.generation)
            except LedgerConflictError:
                continue
        raise LedgerConflictError(f"{self.uri} kept changing: gave up after {attempts} attempts")
