"""Artifact manifests: what write_manifest records and what verify lets through."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import pytest

from salesmesh.artifact import MANIFEST, sha256_file, verify, write_manifest
from salesmesh.errors import ArtifactIntegrityError


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A folder with a top-level file, a nested file and a leftover staging file."""
    root = tmp_path / "run"
    (root / "plots").mkdir(parents=True)
    (root / "model.txt").write_text("weights\n")
    (root / "plots" / "error.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (root / "half-written.tmp").write_text("ignored")
    return root


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    """Hashing in 1 MiB chunks gives the same digest as hashing the whole file at once."""
    data = bytes(range(256)) * 9000  # ~2.2 MiB: three chunks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_manifest_lists_every_file_with_sha256_and_size(run_dir):
    """Every file, nested ones as posix paths, is listed with its sha256 and byte count."""
    manifest = write_manifest(run_dir)
    assert manifest["files"] == {
        "model.txt": {
            "sha256": hashlib.sha256(b"weights\n").hexdigest(),
            "bytes": 8,
        },
        "plots/error.png": {
            "sha256": sha256_file(run_dir / "plots" / "error.png"),
            "bytes": 264,
        },
    }
    assert json.loads((run_dir / MANIFEST).read_text()) == manifest


def test_manifest_records_format_versions_and_extra_fields(run_dir):
    """The manifest names its format, the library versions and any extra fields given."""
    manifest = write_manifest(run_dir, {"data": {"uri": "gs://b/sales.csv", "rows": 10}})
    assert manifest["format"] == "salesmesh-manifest/1"
    assert manifest["data"] == {"uri": "gs://b/sales.csv", "rows": 10}
    assert manifest["libraries"]["lightgbm"] == metadata.version("lightgbm")
    assert manifest["libraries"]["numpy"] == metadata.version("numpy")
    assert manifest["code_version"].startswith(metadata.version("salesmesh"))


def test_rewriting_the_manifest_does_not_list_itself(run_dir):
    """A second write_manifest does not hash the previous manifest.json."""
    write_manifest(run_dir)
    assert MANIFEST not in write_manifest(run_dir)["files"]
    assert not (run_dir / f"{MANIFEST}.tmp").exists()


def test_verify_returns_the_manifest_of_an_intact_folder(run_dir):
    """An untouched folder verifies, required files included, and verify returns the manifest."""
    written = write_manifest(run_dir)
    assert verify(run_dir, required=("model.txt", "plots/error.png")) == written


def test_verify_reports_every_problem_at_once(run_dir):
    """An altered and a missing file are both named in one error."""
    write_manifest(run_dir)
    (run_dir / "model.txt").write_text("weights, retrained\n")
    (run_dir / "plots" / "error.png").unlink()
    with pytest.raises(ArtifactIntegrityError) as error:
        verify(run_dir)
    assert "model.txt: sha256 differs" in str(error.value)
    assert "plots/error.png: missing" in str(error.value)


def test_verify_ignores_files_the_manifest_does_not_list(run_dir):
    """A file added after the run (not listed, not required) does not fail verification."""
    write_manifest(run_dir)
    (run_dir / "notes.txt").write_text("added later")
    assert "notes.txt" not in verify(run_dir)["files"]


def test_symlink_leading_outside_is_refused(run_dir, tmp_path):
    """A listed symlink to a file outside the folder is refused, though its hash matches."""
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (run_dir / "link.txt").symlink_to(secret)
    write_manifest(run_dir)
    with pytest.raises(ArtifactIntegrityError, match=r"link\.txt: points outside the artifact"):
        verify(run_dir)


def test_absolute_path_in_manifest_is_refused(run_dir, tmp_path):
    """An absolute path listed in the manifest is outside the artifact."""
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    write_manifest(run_dir)
    manifest = json.loads((run_dir / MANIFEST).read_text())
    manifest["files"][str(secret)] = {"sha256": sha256_file(secret), "bytes": 7}
    (run_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="points outside the artifact"):
        verify(run_dir)


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"model.txt": "0" * 64}, "are not objects with a sha256"),
        (["model.txt"], "'files' is not a mapping"),
    ],
    ids=["entry-not-an-object", "files-not-a-mapping"],
)
def test_malformed_file_entries_are_integrity_errors(run_dir, files, fragment):
    """Odd shapes inside a manifest raise ArtifactIntegrityError, never AttributeError."""
    manifest = {"format": "salesmesh-manifest/1", "files": files}
    (run_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match=fragment):
        verify(run_dir)


def test_manifest_that_is_not_utf8_is_refused(run_dir):
    """Binary garbage in manifest.json is refused as not a manifest."""
    (run_dir / MANIFEST).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ArtifactIntegrityError, match="is not a salesmesh manifest"):
        verify(run_dir)
