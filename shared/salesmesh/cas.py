"""Objects in Cloud Storage written by compare-and-swap on their generation.

Every write names the generation it read (``if_generation_match``; 0 = "must not exist yet"),
so of two writers that read the same object exactly one wins and the other gets
:class:`CasConflictError`. The local storage emulator ignores preconditions, so there a
``guard`` (a file lock, :func:`salesmesh.locks.file_lock`) is held around each read and each
check-and-write. A write the storage client retried after it had in fact succeeded comes back as
412 too; every JSON write carries a fresh ``write_id``, and a 412 whose object holds ours is our
own success.

The rollout ledger (:mod:`salesmesh.rollout.ledger`) follows the same rules; the sales history's
pointer and its pending-run claim (:mod:`salesmesh.sales`) are built on this module.
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

Guard = Callable[[], AbstractContextManager[Any]]


class CasConflictError(MeshError):
    """The object changed between this reader's read and its write; nothing was written."""


@dataclass(frozen=True)
class Versioned:
    """A JSON object as read: the document (None if absent) and its generation (0 if absent)."""

    document: dict[str, Any] | None
    generation: int


class CasObject:
    """Reads and compare-and-swap writes of one JSON object ``gs://bucket/name``."""

    def __init__(
        self, client: Callable[[], Any], bucket: str, name: str, *, guard: Guard | None = None
    ) -> None:
        """``client`` builds a google-cloud-storage client on first use; ``guard`` serialises
        readers and writers where the storage ignores preconditions (the local emulator)."""
        self._client_factory = client
        self._client: Any = None
        self.bucket = bucket
        self.name = name
        self.guard: Guard = guard or nullcontext

    @property
    def uri(self) -> str:
        """Where the object lives."""
        return f"gs://{self.bucket}/{self.name}"

    @property
    def client(self) -> Any:
        """The storage client, built on first use."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _blob(self) -> Any:
        return self.client.bucket(self.bucket).blob(self.name)

    def read(self) -> Versioned:
        """The document and its generation; ``Versioned(None, 0)`` if there is none."""
        with self.guard(), storage_errors("read", self.uri):
            return self._read()

    def _read(self) -> Versioned:
        from google.api_core import exceptions

        blob = self._blob()
        try:
            data = blob.download_as_bytes()
        except exceptions.NotFound:
            return Versioned(None, 0)
        if blob.generation is None:  # the emulator sends no generation header: ask for it
            blob.reload()
        document = json.loads(data)
        if not isinstance(document, dict):
            raise SourceError(f"{self.uri} does not hold a JSON object")
        return Versioned(document, int(blob.generation))

    def write(self, document: dict[str, Any], expected: int) -> Versioned:
        """Store ``document`` if the object is still at generation ``expected`` (0: absent);
        the new version, or CasConflictError (nothing written) if someone wrote in between."""
        from google.api_core import exceptions

        stored = {**copy.deepcopy(document), "write_id": uuid.uuid4().hex}
        text = json.dumps(stored, indent=1, sort_keys=True) + "\n"
        with self.guard(), storage_errors("write", self.uri):
            blob = self._blob()
            if self.guard is not nullcontext:  # preconditions are not enforced here
                current = self._read().generation
                if current != expected:
                    raise self._conflict(expected, current)
            try:
                blob.upload_from_string(
                    text, content_type="application/json", if_generation_match=expected
                )
            except exceptions.PreconditionFailed:
                mine = self._read()
                if mine.document is None or mine.document.get("write_id") != stored["write_id"]:
                    raise self._conflict(expected, mine.generation) from None
                return mine  # a retried request whose first attempt had succeeded
            return Versioned(stored, int(blob.generation))

    def delete(self, expected: int) -> bool:
        """Delete the object if it is still generation ``expected``; False if it is gone or
        changed (a later writer's object always stays)."""
        from google.api_core import exceptions

        with self.guard(), storage_errors("delete", self.uri):
            if self.guard is not nullcontext and self._read().generation != expected:
                return False
            try:
                self._blob().delete(if_generation_match=expected)
            except (exceptions.NotFound, exceptions.PreconditionFailed):
                return False
            return True

    def _conflict(self, expected: int, current: int) -> CasConflictError:
        return CasConflictError(
            f"{self.uri} changed since it was read (generation {expected}, now {current})"
        )


def create_only(
    client: Any, bucket: str, name: str, data: bytes, content_type: str, guard: Guard
) -> bool:
    """Write ``data`` to ``gs://bucket/name`` unless an object is there; False if one was.

    For immutable objects: what is written once is never overwritten.
    """
    from google.api_core import exceptions

    blob = client.bucket(bucket).blob(name)
    with guard(), storage_errors("write", f"gs://{bucket}/{name}"):
        if guard is not nullcontext and blob.exists():  # the emulator ignores the precondition
            return False
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True


@contextmanager
def storage_errors(what: str, uri: str) -> Iterator[None]:
    """Storage failures as SourceError naming ``uri`` and what to do; MeshErrors pass."""
    from google.api_core import exceptions
    from requests import RequestException

    try:
        yield
    except MeshError:
        raise
    except exceptions.NotFound as exc:
        bucket = uri.removeprefix("gs://").split("/", 1)[0]
        raise SourceError(
            f"cannot {what} {uri}: bucket {bucket} does not exist (start the mesh with "
            "`salesmesh up`, or create the state bucket)"
        ) from exc
    except (exceptions.GoogleAPIError, RequestException, ValueError) as exc:
        raise SourceError(f"cannot {what} {uri}: {exc}") from exc
