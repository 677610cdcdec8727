"""The Cloud Storage emulator, in-process, with object finalize notifications added.

``gcp-storage-emulator`` has no notifications, so Eventarc cannot be emulated by watching it.
Reading its source (``gcp_storage_emulator/storage.py`` and ``handlers/objects.py``, 2024.x/2025.x)
shows one choke point: every path that finalizes an object ends in ``Storage.create_file`` —

- ``objects.insert`` with ``uploadType=media`` and ``multipart`` (simple uploads);
- the last chunk of a resumable upload (``upload_partial`` / the ``bytes */N`` status query);
- ``copy`` (also inside a batch request), ``rewrite`` and ``compose``;
- the XML API ``PUT`` and ``Storage.restore_soft_deleted_file`` (a restore is a new generation).

So :class:`StorageEmulator` wraps ``create_file`` **on the server's one Storage instance** (an
instance attribute shadowing the method; the request handlers reach Storage only through that
instance). After the original returns — the bytes and metadata are stored, the bucket existed —
the wrapper puts a normalised copy of the object resource on :attr:`StorageEmulator.events`, a
``queue.Queue``: the delivery loop blocks on it, so an idle mesh spends no CPU. A create that
raises (missing bucket, checksum mismatch) enqueues nothing.

Facts a reader needs: the emulator serves one request at a time (``http.server.HTTPServer``);
it ignores generation preconditions; it starts metageneration at 2 for uploads that carry
metadata, and sizes are sometimes ints — :func:`finalized_data` fixes both for the event.
"""

from __future__ import annotations

import copy
import logging
import queue
import socket
import urllib.parse
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

from gcp_storage_emulator.server import create_server

from salesmesh.local.processes import free_port


def _not_a_miss(record: logging.LogRecord) -> bool:
    """False for the emulator's two ERROR lines about a read of a missing object.

    The client gets its 404, as from Cloud Storage; looking before creating (the registry's
    first read, ``exists()``) is a normal path, not an error worth a line on the console.
    """
    if record.msg == "Resource not found:":
        return False
    missing = isinstance(record.msg, FileNotFoundError | IsADirectoryError)
    return not (missing and record.levelno >= logging.ERROR)


logging.getLogger("gcp_storage_emulator.storage").addFilter(_not_a_miss)

# The int64 fields of StorageObjectData: Eventarc sends them as JSON strings.
_INT64_FIELDS = ("generation", "metageneration", "size")
_DROPPED = ("acl",)  # not part of the finalize event's data


def finalized_data(resource: dict[str, Any]) -> dict[str, Any]:
    """The emulator's object resource reshaped as the StorageObjectData Eventarc sends."""
    data = {k: copy.deepcopy(v) for k, v in resource.items() if v is not None and k not in _DROPPED}
    for key in _INT64_FIELDS:
        if key in data:
            data[key] = str(int(data[key]))
    # a finalize is always a new generation, and a new generation starts at metageneration 1 in
    # GCS; the emulator counts its own metadata patch at creation as a second one
    data["metageneration"] = "1"
    bucket, name = str(data["bucket"]), str(data["name"])
    data["id"] = f"{bucket}/{name}/{data['generation']}"
    data["selfLink"] = (
        f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}"
    )
    data.setdefault("contentType", "application/octet-stream")
    data.setdefault("kind", "storage#object")
    return data


class StorageEmulator:
    """gcp-storage-emulator on 127.0.0.1 in this process; finalized objects land in ``events``."""

    def __init__(self, data_dir: Path | None, port: int = 0, host: str = "127.0.0.1") -> None:
        """``data_dir`` keeps buckets and objects across restarts; None keeps them in memory."""
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._bind = host
        self._port = port or free_port(host)
        self._data_dir = None if data_dir is None else Path(data_dir).resolve()
        self._server: Any = None

    @property
    def host(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``STORAGE_EMULATOR_HOST``."""
        return f"http://{self._bind}:{self._port}"

    def start(self) -> None:
        """Bind and serve in a background thread; returns once the socket accepts requests."""
        if self._server is not None:
            return
        with socket.socket() as probe:
            # the emulator binds inside its thread and then hangs start() if the port is taken
            try:
                probe.bind((self._bind, self._port))
            except OSError as exc:
                raise OSError(f"cannot bind the storage emulator to {self.host}: {exc}") from exc
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
        server = create_server(
            self._bind,
            self._port,
            in_memory=self._data_dir is None,
            data_dir=None if self._data_dir is None else str(self._data_dir),
        )
        self._hook(server._storage)  # the Storage instance every request handler uses
        _rebase_media_links(server._storage, self.host)
        server.start()
        self._server = server

    def stop(self) -> None:
        """Stop serving (``HTTPServer.shutdown``); stored objects stay in ``data_dir``."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def ensure_buckets(self, names: Iterable[str]) -> None:
        """Create each bucket unless it exists (idempotent across restarts)."""
        from google.api_core.exceptions import Conflict

        client = self.client()
        for name in names:
            if client.lookup_bucket(name) is None:
                with suppress(Conflict):  # created between the lookup and here
                    client.create_bucket(name)

    def client(self, project: str = "local") -> Any:
        """An anonymous google-cloud-storage client talking to this emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]  # google-auth
            client_options={"api_endpoint": self.host},
        )

    def _hook(self, storage: Any) -> None:
        original = storage.create_file
        events = self.events

        def create_file(
            bucket_name: str,
            file_name: str,
            content: bytes,
            file_obj: dict[str, Any],
            file_id: str | None = None,
        ) -> Any:
            result = original(bucket_name, file_name, content, file_obj, file_id)
            # copied now: later metadata patches mutate the stored dict in place
            events.put(finalized_data(file_obj))
            return result

        storage.create_file = create_file

    def __enter__(self) -> StorageEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _rebase_media_links(storage: Any, host: str) -> None:
    """Point every stored object's ``mediaLink`` at this emulator's address.

    The emulator stores each object's absolute download URL as it was when the object was
    written, and google-cloud-storage downloads a blob fetched with its metadata from that URL.
    Restarted on another port (``salesmesh up`` takes a free one), the stored links name a dead
    port and every such download retries for minutes. Cloud Storage's links never move.
    """
    for bucket_objects in storage.objects.values():
        for resource in bucket_objects.values():
            link = resource.get("mediaLink")
            if isinstance(link, str):
                parts = urllib.parse.urlsplit(link)
                resource["mediaLink"] = urllib.parse.urlunsplit(
                    (*urllib.parse.urlsplit(host)[:2], *parts[2:])
                )
