"""The rollout ledger: one durable JSON record per endpoint, written by compare-and-swap.

``gs://<state bucket>/rollout/<endpoint>.json`` holds everything the mesh decided about the
endpoint: the rollout in progress (its state machine, :mod:`salesmesh.rollout.steps`), the
queue of versions waiting for one, the state of every version, and the history of every
traffic split the endpoint ever had (who, why, when, from which versions to which). It is the
single source for ``salesmesh versions`` and ``salesmesh history``; model labels are only a
searchable copy (Vertex AI merges model-level labels into every version it returns).

Every write names the generation it read (``if_generation_match``; 0 = "must not exist yet"),
so of two writers that read the same record exactly one wins and the other gets
:class:`LedgerConflictError`. The local storage emulator ignores preconditions, so there the
store also holds a file lock around each read and each check-and-write (``guard``). A write the
storage client retried after it had in fact succeeded comes back as 412 too; every write carries
a fresh ``write_id``, and a 412 whose record holds ours is our own success.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from salesmesh.errors import MeshError, SourceError

SCHEMA = 1
PREFIX = "rollout/"


class LedgerConflictError(MeshError):
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
        self._client_factory = client
        self._client: Any = None
        self.bucket = bucket
        self.endpoint = endpoint
        self.name = f"{PREFIX}{endpoint}.json"
        self._guard = guard or nullcontext

    @property
    def uri(self) -> str:
        """Where the record lives."""
        return f"gs://{self.bucket}/{self.name}"

    def _blob(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client.bucket(self.bucket).blob(self.name)

    def read(self) -> Snapshot:
        """The record and its generation (an empty record at generation 0 if there is none)."""
        with self._guard(), self._errors("read"):
            return self._read()

    def _read(self) -> Snapshot:
        from google.api_core import exceptions

        blob = self._blob()
        try:
            data = blob.download_as_bytes()
        except exceptions.NotFound:
            return Snapshot(empty(self.endpoint), 0)
        if blob.generation is None:  # the emulator sends no generation header: ask for it
            blob.reload()
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("schema") != SCHEMA:
            raise SourceError(f"{self.uri} is not a salesmesh ledger of schema {SCHEMA}")
        return Snapshot(document, int(blob.generation))

    def write(self, document: dict[str, Any], expected: int) -> Snapshot:
        """Store ``document`` if the record is still at generation ``expected``; the new
        snapshot, or LedgerConflictError (nothing written) if someone wrote in between."""
        from google.api_core import exceptions

        stored = {**copy.deepcopy(document), "write_id": uuid.uuid4().hex}
        text = json.dumps(stored, indent=1, sort_keys=True) + "\n"
        with self._guard(), self._errors("write"):
            blob = self._blob()
            if self._guard is not nullcontext:  # preconditions are not enforced here
                current = self._read().generation
                if current != expected:
                    raise self._conflict(expected, current)
            try:
                blob.upload_from_string(
                    text, content_type="application/json", if_generation_match=expected
                )
            except exceptions.PreconditionFailed:
                mine = self._read()
                if mine.document.get("write_id") != stored["write_id"]:
                    raise self._conflict(expected, mine.generation) from None
                return mine  # a retried request whose first attempt had succeeded
            return Snapshot(stored, int(blob.generation))

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

    def _conflict(self, expected: int, current: int) -> LedgerConflictError:
        return LedgerConflictError(
            f"{self.uri} changed since it was read (generation {expected}, now {current})"
        )

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        from google.api_core import exceptions
        from requests import RequestException

        try:
            yield
        except (LedgerConflictError, SourceError):
            raise
        except exceptions.NotFound as exc:
            raise SourceError(
                f"cannot {what} the rollout ledger {self.uri}: bucket {self.bucket} does not "
                "exist (start the mesh with `salesmesh up`, or create the state bucket)"
            ) from exc
        except (exceptions.GoogleAPIError, RequestException, ValueError) as exc:
            raise SourceError(f"cannot {what} the rollout ledger {self.uri}: {exc}") from exc
