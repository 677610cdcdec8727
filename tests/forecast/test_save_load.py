"""Saving and loading a forecaster: identical forecasts, no pickle, nothing read if tampered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from salesmesh import artifact
from salesmesh.errors import ArtifactIntegrityError
from salesmesh.forecast import Forecaster, load

FILES = {"model.lgb.txt", "state.npz", "forecaster.json"}


@pytest.fixture(scope="module")
def saved(fitted: Forecaster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample forecaster saved once for this module."""
    return fitted.save(tmp_path_factory.mktemp("model"))


@pytest.fixture
def copy(saved: Path, tmp_path: Path) -> Path:
    """A private copy of the saved model that a test may damage."""
    return Path(shutil.copytree(saved, tmp_path / "model"))


def _flip_byte(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def _refused(directory: Path, match: str) -> None:
    """Assert load refuses ``directory`` before parsing any file of it."""
    with (
        mock.patch("lightgbm.Booster", autospec=True) as booster,
        mock.patch("numpy.load", autospec=True) as np_load,
        pytest.raises(ArtifactIntegrityError, match=match),
    ):
        load(directory)
    booster.assert_not_called()
    np_load.assert_not_called()


def test_round_trip_gives_identical_forecasts(fitted, saved):
    """A loaded model forecasts exactly what the saved one did, for any horizon."""
    loaded = load(saved)
    pd.testing.assert_frame_equal(loaded.predict(), fitted.predict())
    pd.testing.assert_frame_equal(loaded.predict(horizon=30), fitted.predict(horizon=30))
    assert (loaded.freq, loaded.horizon, loaded.series, loaded.blend_weight) == (
        fitted.freq,
        fitted.horizon,
        fitted.series,
        fitted.blend_weight,
    )


def test_round_trip_keeps_regressors(fitted, saved):
    """Future promotions move a loaded model's forecasts exactly as the original's."""
    first = fitted.predict()
    future = first[["series_id", "date"]].assign(promo=1)
    pd.testing.assert_frame_equal(load(saved).predict(future=future), fitted.predict(future=future))


def test_saved_folder_holds_the_model_files_and_a_manifest_of_them(saved):
    """save writes the booster, state, config and a manifest listing exactly those three."""
    assert {p.name for p in saved.iterdir()} == FILES | {"manifest.json"}
    manifest = json.loads((saved / "manifest.json").read_text())
    assert set(manifest["files"]) == FILES
    for name in FILES:
        assert manifest["files"][name]["sha256"] == artifact.sha256_file(saved / name)


def test_saved_folder_contains_no_pickle(saved):
    """Arrays load with allow_pickle=False, the booster is LightGBM text, the config JSON."""
    with np.load(saved / "state.npz", allow_pickle=False) as arrays:
        for key in arrays.files:
            assert arrays[key].dtype != object, key
        assert {"series", "values", "floor", "starts", "local"} <= set(arrays.files)
    booster = (saved / "model.lgb.txt").read_text()
    assert booster.startswith("tree\nversion=")
    config = json.loads((saved / "forecaster.json").read_text())
    assert config["freq"] == "D"
    for path in saved.iterdir():
        assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"


@pytest.mark.parametrize("name", ["model.lgb.txt", "state.npz", "forecaster.json"])
def test_one_changed_byte_is_refused_before_anything_is_read(copy, name):
    """Flipping one byte of any model file makes load raise, naming the file, unparsed."""
    _flip_byte(copy / name, (copy / name).stat().st_size // 2)
    _refused(copy, rf"{name}: sha256 differs from the manifest")


def test_missing_listed_file_is_refused(copy):
    """A file the manifest lists but the folder lacks is reported as missing."""
    (copy / "state.npz").unlink()
    _refused(copy, "state.npz: missing")


def test_folder_without_manifest_is_incomplete(copy):
    """No manifest.json means the run never finished: refused as incomplete."""
    (copy / "manifest.json").unlink()
    _refused(copy, "has no manifest.json: the artifact is incomplete")


def _edit_manifest(directory: Path, edit) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_manifest_entry_outside_the_folder_is_refused(copy):
    """A listed "../x" is refused even when x exists and matches its sha256."""
    outside = copy.parent / "x"
    outside.write_text("not part of the model")
    entry = {"sha256": artifact.sha256_file(outside), "bytes": outside.stat().st_size}
    _edit_manifest(copy, lambda m: m["files"].update({"../x": entry}))
    _refused(copy, r"\.\./x: points outside the artifact")


def test_manifest_that_omits_a_required_file_is_refused(copy):
    """A manifest not covering forecaster.json cannot vouch for it: refused."""
    _edit_manifest(copy, lambda m: m["files"].pop("forecaster.json"))
    _refused(copy, r"does not cover required file\(s\) \['forecaster.json'\]")


@pytest.mark.parametrize(
    "text",
    ['{"format": "salesmesh-manifest/1", "files": {', "[]", '{"files": {}}'],
    ids=["truncated-json", "not-an-object", "no-format"],
)
def test_malformed_manifest_is_refused(copy, text):
    """Broken or foreign manifest JSON raises ArtifactIntegrityError, not a JSON error."""
    (copy / "manifest.json").write_text(text)
    _refused(copy, "is not a salesmesh manifest")


def test_unknown_format_version_is_refused(copy):
    """A forecaster.json from another format version is refused even with a valid manifest."""
    config = json.loads((copy / "forecaster.json").read_text())
    (copy / "forecaster.json").write_text(json.dumps({**config, "format_version": 99}))
    artifact.write_manifest(copy)
    with pytest.raises(ArtifactIntegrityError, match="forecaster format 99"):
        load(copy)
