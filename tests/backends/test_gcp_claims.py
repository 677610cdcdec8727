"""Training claims on the real GCS emulator, preconditions supplied where the emulator lacks them.

gcp-storage-emulator ignores ``if_generation_match``, so where Cloud Storage's answer to a
precondition matters (412 on a create-only write that finds the object, 412 on a delete of a
later generation) the storage client's ``Blob`` methods are patched with ``autospec=True`` to
answer as Cloud Storage would; everything else is real reads and writes on the emulator.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from google.api_core.exceptions import PreconditionFailed
from google.cloud import storage

from salesmesh.backends.gcp_claims import PREFIX, GcsClaims

REAL_UPLOAD = storage.Blob.upload_from_string


@pytest.fixture
def claims(bucket: Any) -> GcsClaims:
    return GcsClaims(bucket.client, bucket.name)


def stored(bucket: Any, run_id: str) -> tuple[dict[str, Any], int] | None:
    """The claim object's JSON and generation as the emulator holds them, or None."""
    blob = bucket.get_blob(f"{PREFIX}{run_id}")
    if blob is None:
        return None
    generation = blob.generation  # before the download, which resets it from its headers
    return json.loads(blob.download_as_bytes()), generation


def test_first_acquire_creates_the_claim_and_returns_its_generation(claims, bucket):
    """A free run id is claimed with a create-only write; the handle is the object's generation."""
    with mock.patch.object(
        storage.Blob, "upload_from_string", autospec=True, side_effect=REAL_UPLOAD
    ) as upload:
        handle = claims.acquire("r-1")
    content, generation = stored(bucket, "r-1")
    assert handle == generation
    assert (content["run_id"], len(content["token"])) == ("r-1", 32)
    assert upload.call_args.kwargs["if_generation_match"] == 0


def test_a_claim_held_by_another_launch_is_not_acquired(claims, bucket):
    """Cloud Storage's 412 for an existing object, and another's token in it: not ours."""
    holder = claims.acquire("r-1")
    before = stored(bucket, "r-1")

    def exists(blob: Any, data: Any, **kwargs: Any) -> None:
        raise PreconditionFailed("At least one of the pre-conditions you specified did not hold.")

    with mock.patch.object(storage.Blob, "upload_from_string", autospec=True, side_effect=exists):
        assert GcsClaims(bucket.client, bucket.name).acquire("r-1") is None
    assert holder is not None
    assert stored(bucket, "r-1") == before


def test_our_own_write_retried_into_a_412_still_holds_the_claim(claims, bucket):
    """The first attempt landed, its response was lost, the retry got 412: the token says ours."""

    def landed_then_412(blob: Any, data: Any, **kwargs: Any) -> None:
        REAL_UPLOAD(blob, data, **kwargs)
        raise PreconditionFailed("At least one of the pre-conditions you specified did not hold.")

    with mock.patch.object(
        storage.Blob, "upload_from_string", autospec=True, side_effect=landed_then_412
    ):
        handle = claims.acquire("r-1")
    assert handle is not None
    assert handle == stored(bucket, "r-1")[1]


def test_release_deletes_only_our_generation_and_frees_the_run(claims, bucket):
    """Release deletes with if_generation_match=our generation; the next acquire succeeds."""
    handle = claims.acquire("r-1")
    with mock.patch.object(
        storage.Blob, "delete", autospec=True, side_effect=storage.Blob.delete
    ) as delete:
        claims.release("r-1", handle)
    assert delete.call_args.kwargs == {"if_generation_match": handle}
    assert stored(bucket, "r-1") is None
    again = GcsClaims(bucket.client, bucket.name).acquire("r-1")
    assert again is not None
    assert again == stored(bucket, "r-1")[1]


def test_release_leaves_a_later_holders_claim_alone(claims, bucket):
    """A stale handle meets Cloud Storage's 412 on delete: no error, the object stays."""
    claims.acquire("r-1")
    before = stored(bucket, "r-1")

    def later_generation(blob: Any, **kwargs: Any) -> None:
        raise PreconditionFailed("At least one of the pre-conditions you specified did not hold.")

    with mock.patch.object(storage.Blob, "delete", autospec=True, side_effect=later_generation):
        claims.release("r-1", 1)
    assert stored(bucket, "r-1") == before


def test_release_of_a_claim_already_gone_is_quiet(claims, bucket):
    """A retried delete that already succeeded finds nothing, and that is fine."""
    handle = claims.acquire("r-1")
    claims.release("r-1", handle)
    claims.release("r-1", handle)  # the emulator answers 404 for real
    assert stored(bucket, "r-1") is None


def test_a_claim_released_between_412_and_read_is_tried_again(claims, bucket):
    """412, then the holder released it before we read: the claim is free, and we take it."""
    attempts: list[int] = []

    def released_meanwhile(blob: Any, data: Any, **kwargs: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:  # the holder's claim was there a moment ago; gone by the read
            raise PreconditionFailed(
                "At least one of the pre-conditions you specified did not hold."
            )
        REAL_UPLOAD(blob, data, **kwargs)

    with mock.patch.object(
        storage.Blob, "upload_from_string", autospec=True, side_effect=released_meanwhile
    ):
        handle = claims.acquire("r-1")
    assert len(attempts) == 2
    assert handle == stored(bucket, "r-1")[1]


def test_where_names_the_object_to_delete(claims, bucket):
    """The claim's URI, for the message that tells a person what to delete."""
    assert claims.where("r-1") == f"gs://{bucket.name}/salesmesh/claims/r-1"
