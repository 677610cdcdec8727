"""Training claims: one object per run id in Cloud Storage, so one launch submits each run.

Vertex AI assigns custom job ids itself, so "is there a job for this run?" and "create it" are
two steps, and two deliveries of one upload can both find none. The launch that creates the
claim object ``<prefix><run_id>`` submits; the others wait for its job.

- **Create-only.** ``if_generation_match=0`` makes Cloud Storage accept the write only if the
  object does not exist, atomically: of any number of concurrent writers one gets 200, the rest
  412 PreconditionFailed.
- **Our own retried write.** The client retries a write whose response was lost; if the first
  attempt landed, the retry gets 412 though the claim is ours. Each acquisition writes a fresh
  token, so on 412 the object is read back: our token means we hold it.
- **Released on failure.** A launch that holds the claim but could not submit (no actAs
  permission, quota, a bad image URI) deletes it, with ``if_generation_match`` set to its own
  claim's generation so it can never delete a later holder's, and a redelivery can try again.

A launch that dies between the claim and the submit leaves the claim; the waiting launches then
fail with a message naming the object to delete.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any, Protocol

from salesmesh.ports import rfc3339

PREFIX = "salesmesh/claims/"


class RunClaims(Protocol):
    """Who may submit a run: at most one holder per run id at a time."""

    def acquire(self, run_id: str) -> int | None:
        """A handle (the claim's generation) if this caller now holds ``run_id``, else None."""
        ...

    def release(self, run_id: str, handle: int) -> None:
        """Give up the claim ``acquire`` returned ``handle`` for; a later holder's stays."""
        ...

    def where(self, run_id: str) -> str:
        """Where the claim on ``run_id`` lives, for messages that tell a person what to delete."""
        ...


class GcsClaims:
    """:class:`RunClaims` as create-only objects ``gs://<bucket>/<prefix><run_id>``."""

    def __init__(self, client: Any, bucket: str, prefix: str = PREFIX) -> None:
        """``client``: a google-cloud-storage Client; ``bucket``: the state bucket."""
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def where(self, run_id: str) -> str:
        """The claim object's gs:// URI."""
        return f"gs://{self.bucket}/{self.prefix}{run_id}"

    def acquire(self, run_id: str) -> int | None:
        """The generation of the claim object this call created, or None if another holds it."""
        from google.api_core import exceptions

        name = f"{self.prefix}{run_id}"
        mine = json.dumps({"run_id": run_id, "token": uuid.uuid4().hex, "claimed": rfc3339()})
        # a claim released between our 412 and our read is free again: one more try
        for _ in range(2):
            blob = self.client.bucket(self.bucket).blob(name)
            try:
                blob.upload_from_string(
                    mine, content_type="application/json", if_generation_match=0
                )
                return int(blob.generation)
            except exceptions.PreconditionFailed:
                held = self._read(name)
            if held is not None:
                content, generation = held
                return generation if content == mine.encode() else None
        return None

    def _read(self, name: str) -> tuple[bytes, int] | None:
        """The claim's content and generation, or None if it is gone (or changed as we read)."""
        from google.api_core import exceptions

        blob = self.client.bucket(self.bucket).get_blob(name)
        if blob is None:
            return None
        generation = int(blob.generation)  # read first: a download resets it from its headers
        try:
            # the content must be the generation's we report, not a successor's
            return blob.download_as_bytes(if_generation_match=generation), generation
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return None

    def release(self, run_id: str, handle: int) -> None:
        """Delete the claim if it is still generation ``handle``; anything else stays."""
        from google.api_core import exceptions

        blob = self.client.bucket(self.bucket).blob(f"{self.prefix}{run_id}")
        # NotFound: gone already (a retried delete); PreconditionFailed: a later launch's claim
        with contextlib.suppress(exceptions.NotFound, exceptions.PreconditionFailed):
            blob.delete(if_generation_match=handle)
