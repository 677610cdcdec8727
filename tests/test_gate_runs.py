"""The gate on two registered versions: evidence read from their runs (real run folders)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_folders import variant

from salesmesh.artifact import MANIFEST, read_files, write_manifest
from salesmesh.gate import FILE, GateSettings
from salesmesh.gate.runs import judge_versions
from salesmesh.ports import ModelVersion
from salesmesh.rollout import policy

SETTINGS = GateSettings()


def version(folder: Path, version_id: str = "1") -> ModelVersion:
    """A registered version of the run in ``folder``, as the registry holds it."""
    metrics = policy.summary(json.loads((folder / "metrics.json").read_text()))
    return ModelVersion(version_id, str(folder), "2026-12-01T00:00:00Z", metrics=metrics)


def rewritten(source: Path, target: Path, **changes: str | None) -> Path:
    """A copy of a run with files replaced (text) or removed (None), manifest rewritten."""
    shutil.copytree(source, target)
    for name, text in changes.items():
        path = target / name.replace("__", ".")
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
    extra = json.loads((target / MANIFEST).read_text())
    (target / MANIFEST).unlink()
    write_manifest(target, {k: extra[k] for k in ("data", "model", "metrics")})
    return target


def test_a_run_twice_as_wrong_is_gated_on_its_evidence(model_artifact: Path, tmp_path: Path):
    """Both runs' gate.json are read: the same model passes, one twice as wrong is kept out."""
    champion = version(model_artifact)
    mase = champion.metrics["models"]["salesmesh"]["mase"]
    same = judge_versions(
        version(variant(model_artifact, tmp_path / "same", mase)), champion, SETTINGS
    )
    assert same.passed and same.evidence and same.evidence["mode"] == "naive_relative"
    worse = version(variant(model_artifact, tmp_path / "worse", 2 * mase), "2")
    decision = judge_versions(worse, champion, SETTINGS)
    assert not decision.passed and "credibly worse" in decision.reason


def test_coverage_comes_from_series_csv_even_for_runs_without_evidence(
    model_artifact: Path, tmp_path: Path
):
    """A run older than gate.json is gated by the pooled rule, after the coverage rule: a run
    that forecasts two series fewer is kept out, naming them."""
    table = (model_artifact / "series.csv").read_text().splitlines()
    partial = "\n".join(table[:-2]) + "\n"
    dropped = sorted(line.split(",")[0] for line in table[-2:])
    older = rewritten(model_artifact, tmp_path / "older", gate__json=None, series__csv=partial)
    decision = judge_versions(version(older, "2"), version(model_artifact), SETTINGS)
    assert not decision.passed and decision.evidence and decision.evidence["mode"] == "legacy"
    assert decision.reason.endswith(", ".join(dropped)), decision.reason


def test_an_unreadable_run_is_named_and_never_promoted_blind(model_artifact: Path, tmp_path: Path):
    """A challenger whose gate.json differs from its manifest is kept out; a champion whose
    run is gone is ignored, the note says why, and the challenger is judged on its own."""
    broken = tmp_path / "broken"
    shutil.copytree(model_artifact, broken)
    (broken / FILE).write_text("{}")
    decision = judge_versions(version(broken, "2"), version(model_artifact), SETTINGS)
    assert not decision.passed
    assert decision.reason.startswith("the challenger's run cannot be read: ")
    assert "sha256 differs" in decision.reason
    gone = ModelVersion("1", str(tmp_path / "gone"), "2026-12-01", metrics=version(broken).metrics)
    decision = judge_versions(version(model_artifact, "2"), gone, SETTINGS)
    assert decision.evidence and "the champion's run cannot be read" in decision.evidence["note"]


@pytest.mark.parametrize("text", ["not json", '{"format": 99}'])
def test_evidence_that_cannot_be_read_falls_back_and_says_why(
    model_artifact: Path, tmp_path: Path, text: str
):
    """A gate.json that is not JSON keeps the challenger out; one of another format is not
    trusted, and the pooled rule decides."""
    odd = rewritten(model_artifact, tmp_path / "odd", gate__json=text)
    decision = judge_versions(version(odd, "2"), version(model_artifact), SETTINGS)
    if text == "not json":
        assert not decision.passed and "gate.json is not JSON" in decision.reason
    else:
        assert decision.evidence and decision.evidence["mode"] == "legacy"
        assert "is not format 2" in decision.evidence["note"]
    assert read_files(str(odd), (FILE,))[FILE] == text.encode()
