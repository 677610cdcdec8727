"""Local model registry: versions of one model as one JSON document in the state bucket.

The document ``gs://<bucket>/registry/<model>.json`` holds every version (ids "1", "2", ... as
Vertex AI numbers them) with its artifact, creation time, aliases, labels and metrics. It lives
in the mesh's state bucket (the real GCS emulator locally), so the deploy function, the CLI and
the alert handler all see one registry.

Writers are several processes, and the emulator ignores generation preconditions, so every
read-modify-write holds an exclusive ``fcntl`` lock on ``<lock_dir>/registry-<model>.lock``
(:func:`salesmesh.locks.file_lock`). Readers take no lock: an object upload replaces the
document whole.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from salesmesh.errors import SourceError
from salesmesh.locks import file_lock
from salesmesh.ports import ModelVersion, check_alias, check_labels, rfc3339

PREFIX = "registry/"
# the model name becomes an object name and a lock file name: keep it to a Vertex AI model id
_MODEL = re.compile(r"[a-z][a-z0-9-]{0,62}")
# A writer holds the lock for one download and one upload, each of which the storage client
# may retry for minutes against a busy emulator: only a holder this late is stuck.
_LOCK_SECONDS = 600.0


class LocalModelRegistry:
    """The versions of ``model``, stored in ``bucket`` and locked through ``lock_dir``."""

    def __init__(
        self,
        bucket: str,
        model: str = "salesmesh-demand",
        *,
        lock_dir: Path,
        client: Any | None = None,
    ) -> None:
        if not _MODEL.fullmatch(model):
            raise ValueError(f"model name {model!r} must match {_MODEL.pattern}")
        self.bucket = bucket
        self.model = model
        self.lock_path = Path(lock_dir) / f"registry-{model}.lock"
        self._client = client

    @property
    def uri(self) -> str:
        """Where the registry document lives."""
        return f"gs://{self.bucket}/{PREFIX}{self.model}.json"

    def register(
        self,
        artifact_uri: str,
        *,
        labels: Mapping[str, str],
        metrics: Mapping[str, Any],
        aliases: Sequence[str] = (),
    ) -> ModelVersion:
        """Add the next version; ``aliases`` move to it from whichever versions held them."""
        checked = check_labels(labels)
        names = [check_alias(name) for name in dict.fromkeys(aliases)]
        try:  # stored as JSON, so what comes back must equal what was returned
            plain_metrics = json.loads(json.dumps(dict(metrics), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metrics must be plain JSON (no NaN): {exc}") from exc
        with self._locked() as document:
            versions = document["versions"]
            for version in versions:
                version["aliases"] = [a for a in version["aliases"] if a not in names]
            record = {
                "version_id": str(max((int(v["version_id"]) for v in versions), default=0) + 1),
                "artifact_uri": artifact_uri,
                "created": rfc3339(),
                "aliases": names,
                "labels": checked,
                "metrics": plain_metrics,
            }
            versions.append(record)
        return _to_version(record)

    def get(self, version_id: str) -> ModelVersion | None:
        """The version with this id, or None."""
        found = _find(self._read(), version_id)
        return None if found is None else _to_version(found)

    def versions(self) -> builtins.list[ModelVersion]:
        """Every version, oldest first."""
        return [_to_version(v) for v in self._read()["versions"]]

    def find(self, labels: Mapping[str, str]) -> builtins.list[ModelVersion]:
        """Versions carrying every one of ``labels``, oldest first."""
        wanted = dict(labels).items()
        return [v for v in self.versions() if wanted <= dict(v.labels).items()]

    def alias(self, name: str) -> ModelVersion | None:
        """The version holding alias ``name``, or None."""
        return next((v for v in self.versions() if name in v.aliases), None)

    def set_alias(self, name: str, version_id: str) -> None:
        """Give alias ``name`` to ``version_id``, taking it from any version that held it."""
        check_alias(name)
        with self._locked() as document:
            target = _find(document, version_id)
            if target is None:
                raise KeyError(f"model {self.model} has no version {version_id!r} ({self.uri})")
            for version in document["versions"]:
                if version is not target and name in version["aliases"]:
                    version["aliases"].remove(name)
            if name not in target["aliases"]:
                target["aliases"].append(name)

    def remove_alias(self, name: str) -> None:
        """Take alias ``name`` from whichever version holds it."""
        check_alias(name)
        with self._locked() as document:
            for version in document["versions"]:
                if name in version["aliases"]:
                    version["aliases"].remove(name)

    def update_labels(self, version_id: str, labels: Mapping[str, str]) -> ModelVersion:
        """Merge ``labels`` into the version's labels (same key: new value) and return it."""
        checked = check_labels(labels)
        with self._locked() as document:
            target = _find(document, version_id)
            if target is None:
                raise KeyError(f"model {self.model} has no version {version_id!r} ({self.uri})")
            target["labels"] = {**target["labels"], **checked}
        return _to_version(target)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The document to change in place; written back when the block ends without error."""
        with file_lock(self.lock_path, _LOCK_SECONDS, poll=0.01):
            document = self._read()
            yield document
            self._write(document)

    def _blob(self) -> Any:
        if self._client is None:
            from salesmesh.data.source import storage_client

            self._client = storage_client()
        return self._client.bucket(self.bucket).blob(f"{PREFIX}{self.model}.json")

    def _read(self) -> dict[str, Any]:
        from google.api_core import exceptions
        from requests import RequestException

        try:
            document: dict[str, Any] = json.loads(self._blob().download_as_bytes())
        except exceptions.NotFound:
            # no document yet, or no bucket: the first write says which
            return {"model": self.model, "versions": []}
        except (exceptions.GoogleAPIError, RequestException) as exc:
            raise SourceError(f"cannot read the model registry {self.uri}: {exc}") from exc
        return document

    def _write(self, document: Mapping[str, Any]) -> None:
        from google.api_core import exceptions
        from requests import RequestException

        text = json.dumps(document, indent=1, sort_keys=True) + "\n"
        try:
            self._blob().upload_from_string(text, content_type="application/json")
        except exceptions.NotFound as exc:
            msg = (
                f"cannot write the model registry {self.uri}: bucket {self.bucket} does not "
                "exist (start the mesh with `salesmesh up`, or create the state bucket)"
            )
            raise SourceError(msg) from exc
        except (exceptions.GoogleAPIError, RequestException) as exc:
            raise SourceError(f"cannot write the model registry {self.uri}: {exc}") from exc


def _find(document: Mapping[str, Any], version_id: str) -> dict[str, Any] | None:
    return next((v for v in document["versions"] if v["version_id"] == version_id), None)


def _to_version(record: Mapping[str, Any]) -> ModelVersion:
    return ModelVersion(
        version_id=record["version_id"],
        artifact_uri=record["artifact_uri"],
        created=record["created"],
        aliases=tuple(record["aliases"]),
        labels=dict(record["labels"]),
        metrics=json.loads(json.dumps(record["metrics"])),  # a copy the caller cannot share
    )
