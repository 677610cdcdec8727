"""CloudEvents in, typed values out: the uploaded object, its run id and its correlation id.

Eventarc delivers a Cloud Storage finalize as a CloudEvent whose data is the object's JSON
resource (StorageObjectData). Everything downstream wants three facts from it — bucket, name,
generation — so this module checks them once, at the edge, and names exactly what is wrong
when they are missing. No cloud SDK is imported: the functions, the trainer and the local mesh
all share this.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from salesmesh.errors import BadEventError
from salesmesh.wiring import STORAGE_FINALIZED

DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
ERROR_REPORT_SUFFIX = ".error.json"
# What Vertex AI accepts as a label value and a job display name, and what GCS accepts in a path.
RUN_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_INT64 = re.compile(r"^[0-9]{1,19}$")  # int64 as JSON text, the way GCS sends it


class CloudEventLike(Protocol):
    """What is read from an event: attributes by key (``event["type"]``) and ``.data``."""

    def __getitem__(self, key: str) -> Any: ...

    @property
    def data(self) -> Any: ...


@dataclass(frozen=True)
class StorageObject:
    """One generation of a Cloud Storage object, as Eventarc describes it on finalize."""

    bucket: str
    name: str
    generation: str  # an int64 kept as text, as GCS sends it: it can exceed a JSON double
    metageneration: str = "1"
    content_type: str | None = None
    size: int | None = None
    md5_hash: str | None = None  # base64, as GCS reports it
    crc32c: str | None = None
    time_created: str | None = None  # RFC 3339, as sent
    updated: str | None = None

    @property
    def uri(self) -> str:
        """``gs://bucket/name``."""
        return f"gs://{self.bucket}/{self.name}"

    @property
    def identity(self) -> tuple[str, str, str]:
        """(bucket, name, generation): what makes an upload unique, and a redelivery not."""
        return (self.bucket, self.name, self.generation)

    @classmethod
    def from_cloud_event(cls, event: CloudEventLike) -> StorageObject:
        """The object of a ``google.cloud.storage.object.v1.finalized`` event."""
        try:
            event_type = event["type"]
        except (KeyError, TypeError) as exc:
            raise BadEventError("the CloudEvent has no 'type' attribute") from exc
        if event_type != STORAGE_FINALIZED:
            raise BadEventError(f"event type is {event_type!r}, expected {STORAGE_FINALIZED!r}")
        get_data = getattr(event, "get_data", None)
        data = get_data() if callable(get_data) else getattr(event, "data", None)
        if isinstance(data, bytes | str):
            # a binary-mode event whose content type was not JSON reaches us undecoded
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise BadEventError(f"event data is not JSON: {exc}") from exc
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> StorageObject:
        """The object described by a StorageObjectData dict (camelCase keys, as Eventarc sends)."""
        if not isinstance(data, Mapping):
            raise BadEventError(f"event data must be an object, got {type(data).__name__}")
        return cls(
            bucket=_required(_text(data, "bucket"), "bucket"),
            name=_required(_text(data, "name"), "name"),
            generation=_required(_int64(data, "generation"), "generation"),
            metageneration=_int64(data, "metageneration") or "1",
            content_type=_text(data, "contentType"),
            size=_size(data),
            md5_hash=_text(data, "md5Hash"),
            crc32c=_text(data, "crc32c"),
            time_created=_text(data, "timeCreated"),
            updated=_text(data, "updated"),
        )


def _required(value: str | None, key: str) -> str:
    if value is None:
        raise BadEventError(f"event data has no {key!r}")
    if not value:
        raise BadEventError(f"event data {key!r} is empty")
    return value


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise BadEventError(f"event data {key!r} must be a string, got {value!r}")
    return value


def _int64(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    # bool is an int to Python, never to GCS
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return str(value)
    if isinstance(value, str) and _INT64.match(value) and int(value) < 2**63:
        return str(int(value))  # "007" and "7" are one generation, so one run id
    raise BadEventError(f"event data {key!r} must be a non-negative int64, got {value!r}")


def _size(data: Mapping[str, Any]) -> int | None:
    text = _int64(data, "size")
    return None if text is None else int(text)


def _digest(obj: StorageObject) -> str:
    # generation is digits only, so '#' cannot be forged by an object name containing one
    key = f"{obj.bucket}/{obj.name}#{obj.generation}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def run_id(obj: StorageObject) -> str:
    """The one training run for this object generation: ``r-`` and 16 hex of a sha256.

    Deterministic, so a redelivered event finds the run it already started; usable as a Vertex
    AI display name, a label value and a path segment (``runs/<run_id>/``).
    """
    return f"r-{_digest(obj)}"


def correlation_id(obj: StorageObject) -> str:
    """The id every log line, label and record about this upload carries: ``c-`` + 16 hex.

    It names the upload where :func:`run_id` names the training run. Today one generation gets
    one run, so both share the digest and differ by prefix, which tells a reader which one a
    field holds; a later retrain of the same upload keeps the correlation id, not the run id.
    """
    return f"c-{_digest(obj)}"


def upload_from_uri(uri: str, generation: object = None) -> StorageObject | None:
    """The upload a training run's data URI names, so later steps recompute its ids.

    ``gs://b/x.csv#123`` (a pinned URI) or ``gs://b/x.csv`` with ``generation``; None for local
    files and unpinned URIs, which no upload event announced.
    """
    from salesmesh.data.source import split_gcs_uri, split_generation

    base, pinned = split_generation(uri)
    number = pinned if pinned is not None else generation
    if not base.startswith("gs://") or number is None or not str(number).isdigit():
        return None
    bucket, name = split_gcs_uri(base)
    return StorageObject(bucket=bucket, name=name, generation=str(number))


class DataFileCheck(NamedTuple):
    """Whether an object is an upload to train on and, when it is not, why."""

    accepted: bool
    reason: str

    def __bool__(self) -> bool:
        # a non-empty tuple is always truthy; `if is_data_file(...)` must mean accepted
        return self.accepted


def is_data_file(
    obj: StorageObject, prefix: str, quarantine_prefix: str = "quarantine/"
) -> DataFileCheck:
    """Accept sales files under ``prefix``; say why anything else is ignored."""
    name = obj.name
    if name.endswith("/"):
        return DataFileCheck(False, "a folder placeholder, not a file")
    if name.startswith(quarantine_prefix):
        # the function's own quarantine copies must never come back to it as uploads
        return DataFileCheck(False, f"inside the quarantine prefix {quarantine_prefix!r}")
    if name.lower().endswith(ERROR_REPORT_SUFFIX):
        return DataFileCheck(False, "a quarantine error report")
    if not name.startswith(prefix):
        return DataFileCheck(False, f"outside the upload prefix {prefix!r}")
    if not name.lower().endswith(DATA_SUFFIXES):
        return DataFileCheck(False, f"not a data file: the name must end with {DATA_SUFFIXES}")
    return DataFileCheck(True, "")
