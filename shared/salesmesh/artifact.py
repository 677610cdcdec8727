"""Model artifact manifests: what a run wrote, with a sha256 per file, written last.

The manifest's arrival is what tells the rest of the mesh a run is complete, and :func:`verify`
is the only door into an artifact: nothing is read from a folder whose files do not match it.
:func:`fetch` brings a run folder from GCS through that door.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from salesmesh.errors import ArtifactIntegrityError, SourceError

MANIFEST = "manifest.json"
FORMAT = "salesmesh-manifest/1"
_LIBRARIES = ("salesmesh", "numpy", "pandas", "lightgbm", "matplotlib")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hash every file under ``directory`` and write ``manifest.json`` atomically, last."""
    files = {
        path.relative_to(directory).as_posix(): {
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
        }
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST and not path.name.endswith(".tmp")
    }
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": files,
        "code_version": code_version(),
        "libraries": library_versions(),
        **(extra or {}),
    }
    staging = directory / f"{MANIFEST}.tmp"
    staging.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    staging.replace(directory / MANIFEST)
    return manifest


def verify(directory: Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """Check every file listed in the manifest; raise :class:`ArtifactIntegrityError` if any
    file is missing, altered or unlisted among ``required``. Returns the manifest."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactIntegrityError(
            f"{directory} has no {MANIFEST}: the artifact is incomplete (a run writes it last)"
        )
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
        if not isinstance(files, dict):
            raise ValueError("'files' is not a mapping of file name to sha256 entry")
        malformed = sorted(name for name, entry in files.items() if not isinstance(entry, dict))
        if malformed:
            raise ValueError(f"entries for {malformed[:5]} are not objects with a sha256")
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactIntegrityError(f"{path} is not a salesmesh manifest: {exc}") from exc

    unlisted = sorted(set(required) - set(files))
    if unlisted:
        raise ArtifactIntegrityError(f"{path} does not cover required file(s) {unlisted}")
    problems: list[str] = []
    root = directory.resolve()
    for name, entry in sorted(files.items()):
        target = (directory / name).resolve()
        if root not in target.parents:
            problems.append(f"{name}: points outside the artifact")
        elif not target.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(target) != entry.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest (altered or corrupt)")
    if problems:
        raise ArtifactIntegrityError(f"refusing to load {directory}: " + "; ".join(problems[:10]))
    return dict(manifest)


def fetch(uri: str, workdir: Path, required: Iterable[str] = ()) -> tuple[Path, dict[str, Any]]:
    """A verified local copy of the run folder at ``uri``, and its manifest.

    For ``gs://bucket/prefix`` the manifest is downloaded first, then exactly the files it lists
    into a new folder under ``workdir``, which is then :func:`verify`-ed. A local folder is
    verified in place and returned as it is. Raises :class:`ArtifactIntegrityError` for a
    missing or bad manifest, a listed file that is missing or differs, and
    :class:`SourceError` when the location itself cannot be read.
    """
    if not uri.startswith("gs://"):
        folder = Path(uri.removeprefix("file://"))
        if not folder.is_dir():
            raise SourceError(f"artifact {uri} is not a folder: expected a run folder or gs:// URI")
        return folder, verify(folder, required)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="artifact-", dir=workdir))
    _download(uri, folder)
    try:
        return folder, verify(folder, required)
    except ArtifactIntegrityError as exc:
        # the message would name the temporary copy; the URI is what the operator can fix
        detail = str(exc).replace(str(folder), "the downloaded copy")
        raise ArtifactIntegrityError(f"artifact {uri}: {detail}") from exc


def _download(uri: str, folder: Path) -> None:
    """The manifest at ``uri``, then every file it lists, into ``folder``."""
    from google.api_core import exceptions as api_exceptions

    with _reading(uri):
        bucket, prefix = _manifest_blob(uri)
        bucket.blob(prefix + MANIFEST).download_to_filename(str(folder / MANIFEST))
        for name in _listed(uri, folder / MANIFEST):
            target = folder.joinpath(*PurePosixPath(name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                bucket.blob(prefix + name).download_to_filename(str(target))
            except api_exceptions.NotFound as exc:
                target.unlink(missing_ok=True)  # the client leaves an empty file behind
                raise ArtifactIntegrityError(
                    f"artifact {uri} lists {name} but gs://{bucket.name}/{prefix}{name} is missing"
                ) from exc


def read_files(uri: str, names: Iterable[str]) -> dict[str, bytes | None]:
    """Some files of the run at ``uri`` (gs:// or a local folder), each checked against the
    manifest's sha256 without fetching the rest; None for a file the manifest does not list
    (a run older than it). ArtifactIntegrityError for a file that differs or is missing."""
    from google.api_core import exceptions as api_exceptions

    read: Callable[[str], bytes]
    with tempfile.TemporaryDirectory(prefix="salesmesh-read-") as scratch, _reading(uri):
        if uri.startswith("gs://"):
            bucket, prefix = _manifest_blob(uri)
            manifest = Path(scratch) / MANIFEST
            manifest.write_bytes(bucket.blob(prefix + MANIFEST).download_as_bytes())

            def read(name: str) -> bytes:
                return bytes(bucket.blob(prefix + name).download_as_bytes())

        else:
            folder = Path(uri.removeprefix("file://"))
            manifest = folder / MANIFEST
            if not manifest.is_file():
                raise ArtifactIntegrityError(f"artifact {uri} has no {MANIFEST}")

            def read(name: str) -> bytes:
                return folder.joinpath(*PurePosixPath(name).parts).read_bytes()

        listed = set(_listed(uri, manifest))
        files = json.loads(manifest.read_text())["files"]
        found: dict[str, bytes | None] = {}
        for name in names:
            if name not in listed:
                found[name] = None
                continue
            try:
                data = read(name)
            except (api_exceptions.NotFound, FileNotFoundError) as exc:
                raise ArtifactIntegrityError(
                    f"artifact {uri} lists {name} but it is missing"
                ) from exc
            if hashlib.sha256(data).hexdigest() != files[name].get("sha256"):
                raise ArtifactIntegrityError(
                    f"artifact {uri}: {name}: sha256 differs from the manifest (altered or corrupt)"
                )
            found[name] = data
    return found


def _manifest_blob(uri: str) -> tuple[Any, str]:
    """(bucket, prefix) of the run at gs:// ``uri``, after checking its manifest is there."""
    from salesmesh.data.source import split_gcs_uri, storage_client

    bucket_name, manifest_name = split_gcs_uri(uri.rstrip("/") + "/" + MANIFEST)
    bucket = storage_client().bucket(bucket_name)
    if bucket.get_blob(manifest_name) is None:
        if bucket.client.lookup_bucket(bucket_name) is None:
            raise SourceError(f"artifact {uri}: bucket {bucket_name} not found")
        raise ArtifactIntegrityError(
            f"artifact {uri} has no {MANIFEST}: the run is unfinished (a run writes it "
            "last) or the URI names the wrong folder"
        )
    return bucket, manifest_name.removesuffix(MANIFEST)


@contextmanager
def _reading(uri: str) -> Iterator[None]:
    """Storage failures while reading the run at ``uri`` as SourceError, naming it."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from requests import RequestException

    unreadable = (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, RequestException)
    try:
        yield
    except api_exceptions.Forbidden as exc:
        raise SourceError(f"artifact {uri}: access denied: {exc}") from exc
    except unreadable as exc:
        raise SourceError(f"artifact {uri} cannot be read: {exc}") from exc
    except OSError as exc:
        raise SourceError(f"artifact {uri} cannot be read or copied: {exc}") from exc


def _listed(uri: str, manifest: Path) -> list[str]:
    """The file names a downloaded manifest lists, each one safe to join under the folder."""
    try:
        files = json.loads(manifest.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping of file name to sha256 entry")
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactIntegrityError(
            f"artifact {uri}: {MANIFEST} is not a manifest: {exc}"
        ) from exc
    for name in files:
        path = PurePosixPath(name)
        # a manifest is data from a bucket: it must not steer writes outside the copy
        if (
            not path.parts
            or path.is_absolute()
            or ".." in path.parts
            or "\\" in name
            or name == MANIFEST
        ):
            raise ArtifactIntegrityError(
                f"artifact {uri}: {MANIFEST} lists {name!r}, which is not a plain relative "
                "file name inside the run folder; refusing it"
            )
    return sorted(files)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a model's behaviour depends on."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_version() -> str:
    """The salesmesh version, plus the git commit when running from a checkout."""
    from salesmesh import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__
