"""Where a sales file comes from: a local path or a gs:// object, read with its identity.

The size is checked against `Contract.max_bytes` from metadata (os.stat or the blob's size)
before a single content byte is read, so an oversized upload costs one metadata call.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salesmesh.data.contract import Contract
from salesmesh.errors import SourceError

DEFAULT_CONTRACT = Contract()


@dataclass(frozen=True)
class SourceInfo:
    """Identity of the bytes that were read; `md5` is base64 like GCS's md5Hash."""

    uri: str
    size: int
    generation: str | None = None
    md5: str | None = None
    content_type: str | None = None


class SourceTooLargeError(SourceError):
    """The object is larger than Contract.max_bytes; nothing was downloaded."""

    def __init__(self, info: SourceInfo, limit: int) -> None:
        self.info = info
        self.limit = limit
        super().__init__(
            f"{info.uri} is {info.size:,} bytes, over the limit of {limit:,} bytes "
            "(raise Contract.max_bytes to accept it)"
        )


def md5_base64(data: bytes) -> str:
    """The md5 of `data` encoded the way GCS reports md5Hash."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def read_source(
    uri: str | os.PathLike[str],
    contract: Contract = DEFAULT_CONTRACT,
    *,
    client: Any | None = None,
) -> tuple[bytes, SourceInfo]:
    """Read a local file or a gs://bucket/name object whole, refusing it early when too large.

    `client` is an optional `google.cloud.storage.Client` to reuse; otherwise one is built
    from the environment (the emulator when STORAGE_EMULATOR_HOST is set).
    """
    text = os.fspath(uri)
    if text.startswith("gs://"):
        return _read_gcs(text, contract, client)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise SourceError(f"unsupported URI scheme {scheme!r} in {text!r}: use a path or gs://")
    return _read_local(Path(text.removeprefix("file://")), contract)


def _read_local(path: Path, contract: Contract) -> tuple[bytes, SourceInfo]:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise SourceError(f"{path} is a directory, not a sales file")
        info = SourceInfo(str(path), size, content_type=mimetypes.guess_type(path.name)[0])
        if size > contract.max_bytes:
            raise SourceTooLargeError(info, contract.max_bytes)
        with path.open("rb") as handle:
            # A file still being written could outgrow its stat; never read past the limit.
            data = handle.read(contract.max_bytes + 1)
    except FileNotFoundError as exc:
        raise SourceError(f"no such file: {path}") from exc
    except PermissionError as exc:
        raise SourceError(f"permission denied reading {path}") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    info = SourceInfo(str(path), len(data), md5=md5_base64(data), content_type=info.content_type)
    if len(data) > contract.max_bytes:
        raise SourceTooLargeError(info, contract.max_bytes)
    return data, info


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'path/name.csv') from 'gs://bucket/path/name.csv'."""
    uri, _ = split_generation(uri)
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not bucket or not name or name.endswith("/"):
        raise SourceError(f"bad GCS URI {uri!r}: expected gs://BUCKET/OBJECT")
    return bucket, name


def split_generation(uri: str) -> tuple[str, int | None]:
    """``gs://b/x.csv#1700000000000000`` -> (``gs://b/x.csv``, 1700000000000000).

    gsutil's notation for one version of an object: an upload event names a generation, and
    validating or training on a newer one would break the event -> run identity.
    """
    base, sep, generation = uri.rpartition("#")
    if sep and generation.isdigit():
        return base, int(generation)
    return uri, None


def storage_client(env: Mapping[str, str] = os.environ) -> Any:
    """A google-cloud-storage client; anonymous against the emulator when one is configured."""
    from google.cloud import storage  # imported here so local files never load the GCS SDK

    if env.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=env.get("GOOGLE_CLOUD_PROJECT", "local"),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]  # google-auth
        )
    return storage.Client()


def _read_gcs(uri: str, contract: Contract, client: Any | None) -> tuple[bytes, SourceInfo]:
    bucket_name, name = split_gcs_uri(uri)
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from requests import RequestException

    failures = (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, RequestException)
    try:
        client = client or storage_client()
        bucket = client.bucket(bucket_name)
        _, wanted = split_generation(uri)
        blob = bucket.get_blob(name, generation=wanted)
        if blob is None:
            exists = client.lookup_bucket(bucket_name) is not None
            where = f"bucket {bucket_name} exists" if exists else f"bucket {bucket_name} not found"
            version = "" if wanted is None else f" (generation {wanted} may have been replaced)"
            raise SourceError(f"object {uri} not found{version} ({where})")
        info = SourceInfo(
            uri,
            int(blob.size or 0),
            generation=None if blob.generation is None else str(blob.generation),
            md5=blob.md5_hash,
            content_type=blob.content_type,
        )
        if info.size > contract.max_bytes:
            raise SourceTooLargeError(info, contract.max_bytes)
        # Pin the generation so the bytes match the metadata even if the object is replaced;
        # raw_download keeps gzip-encoded objects compressed so our decompression cap applies.
        pinned = bucket.blob(name, generation=blob.generation)
        data: bytes = pinned.download_as_bytes(raw_download=True)
    except api_exceptions.NotFound as exc:
        raise SourceError(f"object {uri} not found: {exc}") from exc
    except api_exceptions.Forbidden as exc:
        raise SourceError(f"access to {uri} denied: {exc}") from exc
    except failures as exc:
        raise SourceError(f"cannot read {uri}: {exc}") from exc
    if len(data) > contract.max_bytes:
        raise SourceTooLargeError(info, contract.max_bytes)
    return data, info
