"""Cloud Storage's generation preconditions, which the local emulator ignores, for tests.

:func:`cloud_storage_rules` patches ``Blob.upload_from_string`` and ``Blob.download_as_bytes``
with ``autospec=True`` (a wrong argument fails as it would against the client) over
:class:`CloudStorageRules`, an in-memory store that enforces ``if_generation_match`` as Cloud
Storage does. What the rollout ledger's Google Cloud path relies on, and nothing more.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

from google.api_core import exceptions
from google.cloud.storage import Blob


class CloudStorageRules:
    """Objects with generations, honouring ``if_generation_match`` as Cloud Storage does."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.generation = 1000
        self.lock = threading.Lock()
        self.replay_next_write = False  # the client re-sends a write that had succeeded

    def upload_from_string(self, blob: Blob, data: Any, **kwargs: Any) -> None:
        key = (blob.bucket.name, blob.name)
        with self.lock:
            expected = kwargs.get("if_generation_match")
            current = self.objects.get(key, (b"", 0))[1]
            if expected is not None and expected != current:
                raise exceptions.PreconditionFailed("conditionNotMet")
            self.generation += 1
            raw = data.encode() if isinstance(data, str) else data
            self.objects[key] = (raw, self.generation)
            blob._properties["generation"] = str(self.generation)
            if self.replay_next_write:
                self.replay_next_write = False
                raise exceptions.PreconditionFailed("conditionNotMet (a retried request)")

    def download_as_bytes(self, blob: Blob, **_: Any) -> bytes:
        with self.lock:
            if (blob.bucket.name, blob.name) not in self.objects:
                raise exceptions.NotFound("No such object")
            data, generation = self.objects[blob.bucket.name, blob.name]
        blob._properties["generation"] = str(generation)
        return data


@contextlib.contextmanager
def cloud_storage_rules() -> Iterator[CloudStorageRules]:
    """Route the two Blob methods the ledger uses to a fresh :class:`CloudStorageRules`."""
    rules = CloudStorageRules()
    with (
        mock.patch.object(Blob, "upload_from_string", autospec=True) as upload,
        mock.patch.object(Blob, "download_as_bytes", autospec=True) as download,
    ):
        upload.side_effect = rules.upload_from_string
        download.side_effect = rules.download_as_bytes
        yield rules
