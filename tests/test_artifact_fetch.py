"""artifact.fetch: a verified local copy of a run folder, from the real GCS emulator or on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from run_folders import upload_folder

from salesmesh.artifact import MANIFEST, fetch, read_files, sha256_file
from salesmesh.data.source import storage_client
from salesmesh.errors import ArtifactIntegrityError, SourceError

REQUIRED = ("model.lgb.txt", "series.csv")


@pytest.fixture
def uploaded(bucket: Any, model_artifact: Path) -> str:
    """The session's trained run, uploaded to a fresh bucket; returns its gs:// URI."""
    return upload_folder(storage_client(), model_artifact, f"gs://{bucket.name}/runs/r1")


def _manifest_listing(tmp_path: Path, model_artifact: Path, name: str) -> Path:
    """A copy of the run whose manifest also lists ``name`` (as a hostile manifest would)."""
    copy = tmp_path / "hostile"
    shutil.copytree(model_artifact, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    return copy


def test_gcs_copy_is_complete_and_verified(uploaded: str, model_artifact: Path, tmp_path: Path):
    """Every listed file arrives byte-identical under the workdir, with the manifest returned."""
    folder, manifest = fetch(uploaded, tmp_path / "work", REQUIRED)
    assert folder.parent == tmp_path / "work"
    assert manifest == json.loads((model_artifact / MANIFEST).read_text())
    copied = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert copied == sorted([*manifest["files"], MANIFEST])
    for name in manifest["files"]:
        assert sha256_file(folder / name) == sha256_file(model_artifact / name)


def test_only_listed_files_are_downloaded(bucket: Any, uploaded: str, tmp_path: Path):
    """An object beside the run that its manifest does not list is left in the bucket."""
    bucket.blob("runs/r1/stray.txt").upload_from_string("not part of the run")
    folder, _ = fetch(uploaded, tmp_path, REQUIRED)
    assert not (folder / "stray.txt").exists()


def test_tampered_object_is_refused(bucket: Any, uploaded: str, tmp_path: Path):
    """An object replaced after upload fails its sha256: the error names the URI and the file."""
    bucket.blob("runs/r1/series.csv").upload_from_string("series_id,store_id,product_id\n")
    with pytest.raises(ArtifactIntegrityError) as caught:
        fetch(uploaded, tmp_path, REQUIRED)
    message = str(caught.value)
    assert uploaded in message
    assert "series.csv: sha256 differs from the manifest" in message
    assert str(tmp_path) not in message  # the temporary copy means nothing to an operator


def test_missing_manifest_is_an_unfinished_run(bucket: Any, uploaded: str, tmp_path: Path):
    """Without manifest.json nothing is downloaded and the error says the run is unfinished."""
    bucket.blob(f"runs/r1/{MANIFEST}").delete()
    with pytest.raises(ArtifactIntegrityError, match=r"has no manifest\.json: the run is unfin"):
        fetch(uploaded, tmp_path, REQUIRED)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_malformed_manifest_is_refused(bucket: Any, uploaded: str, tmp_path: Path):
    """A manifest that is not JSON is an integrity error naming the URI."""
    bucket.blob(f"runs/r1/{MANIFEST}").upload_from_string("{not json")
    with pytest.raises(ArtifactIntegrityError, match=f"{uploaded}: manifest.json is not a manif"):
        fetch(uploaded, tmp_path, REQUIRED)


@pytest.mark.parametrize("hostile", ["../outside.txt", "nested/../../outside.txt", "/etc/passwd"])
def test_names_escaping_the_folder_are_refused(
    bucket: Any, model_artifact: Path, tmp_path: Path, hostile: str
):
    """A manifest entry that is absolute or climbs with '..' is refused before any download."""
    uri = upload_folder(
        storage_client(),
        _manifest_listing(tmp_path, model_artifact, hostile),
        f"gs://{bucket.name}/runs/evil",
    )
    work = tmp_path / "deep" / "work"
    with pytest.raises(ArtifactIntegrityError, match="not a plain relative file name") as caught:
        fetch(uri, work, REQUIRED)
    assert repr(hostile) in str(caught.value)
    assert not (tmp_path / "deep" / "outside.txt").exists()
    assert not (tmp_path / "outside.txt").exists()


def test_listed_file_missing_in_bucket(bucket: Any, model_artifact: Path, tmp_path: Path) -> None:
    """A manifest listing a file the bucket lacks is refused, naming the missing object."""
    uri = upload_folder(
        storage_client(),
        _manifest_listing(tmp_path, model_artifact, "plots/extra.png"),
        f"gs://{bucket.name}/runs/gap",
    )
    with pytest.raises(ArtifactIntegrityError) as caught:
        fetch(uri, tmp_path / "work", REQUIRED)
    assert f"lists plots/extra.png but {uri}/plots/extra.png is missing" in str(caught.value)


def test_required_file_not_in_manifest(uploaded: str, tmp_path: Path):
    """A file the caller requires but the manifest does not cover is an integrity error."""
    with pytest.raises(ArtifactIntegrityError, match=r"required file\(s\) \['weights.bin'\]"):
        fetch(uploaded, tmp_path, ("weights.bin",))


def test_missing_bucket_is_a_source_error(bucket: Any, tmp_path: Path):
    """A bucket that does not exist cannot be read: SourceError naming the URI and bucket."""
    uri = f"gs://{bucket.name}-gone/runs/r1"
    with pytest.raises(SourceError, match=f"artifact {uri}: bucket {bucket.name}-gone not found"):
        fetch(uri, tmp_path, REQUIRED)


def test_local_folder_is_verified_in_place(model_artifact: Path, tmp_path: Path):
    """A local run folder is returned as it is, nothing copied, its manifest checked."""
    folder, manifest = fetch(str(model_artifact), tmp_path, REQUIRED)
    assert folder == model_artifact
    assert manifest["files"]["series.csv"]["sha256"] == sha256_file(model_artifact / "series.csv")
    assert list(tmp_path.iterdir()) == []


def test_tampered_local_folder_is_refused(model_artifact: Path, tmp_path: Path):
    """A local file that no longer matches the manifest is refused."""
    copy = tmp_path / "run"
    shutil.copytree(model_artifact, copy)
    (copy / "state.npz").write_bytes(b"altered")
    with pytest.raises(ArtifactIntegrityError, match=r"state\.npz: sha256 differs"):
        fetch(str(copy), tmp_path / "work", REQUIRED)


def test_missing_local_folder_is_a_source_error(tmp_path: Path):
    """A local path that is not a folder is a SourceError naming it."""
    with pytest.raises(SourceError, match=f"artifact {tmp_path / 'nope'} is not a folder"):
        fetch(str(tmp_path / "nope"), tmp_path, REQUIRED)


def test_read_files_checks_each_file_it_reads_against_the_manifest(
    bucket: Any, uploaded: str, model_artifact: Path
):
    """A few files of a run, from the bucket or a folder, each verified; a file the manifest
    does not list reads as None (an older run); a replaced one is refused by name."""
    for where in (uploaded, str(model_artifact)):
        found = read_files(where, ("gate.json", "series.csv", "not-in-this-run.json"))
        assert found["gate.json"] == (model_artifact / "gate.json").read_bytes()
        assert found["series.csv"] == (model_artifact / "series.csv").read_bytes()
        assert found["not-in-this-run.json"] is None
    bucket.blob("runs/r1/gate.json").upload_from_string("{}")
    with pytest.raises(ArtifactIntegrityError, match=r"gate\.json: sha256 differs"):
        read_files(uploaded, ("gate.json",))
    with pytest.raises(ArtifactIntegrityError, match=r"has no manifest\.json"):
        read_files(f"gs://{bucket.name}/runs/none", ("gate.json",))
