"""Each built package, installed from its own requirements.txt into a fresh virtualenv, serves
real events on both backends with only the package on sys.path.

Local backend: for real, against the GCS emulator. gcp backend: the same, with Vertex AI's
generated clients patched by ``autospec`` inside that venv (``serve_probe``). The first run on a
machine installs each venv (see ``package_venv``); later runs reuse them. A requirement missing
from a package fails here too: its import fails in the fresh venv.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import package_venv
import pytest

from salesmesh.artifact import write_manifest
from salesmesh.sample import generate

EVENTS = Path(__file__).parent.parent / "events"
PROBE = Path(__file__).parent / "serve_probe.py"
IMAGE = "europe-docker.pkg.dev/demo-project/salesmesh/train:1"
VALID = generate(stores=1, products=2, days=120, seed=5).to_csv(index=False)
NEGATIVE = VALID.replace("\n2024-01-05,S01,P001,", "\n2024-01-05,S01,P001,-", 1)


@pytest.fixture(scope="session")
def venv_of(built: dict[str, Any]) -> Callable[[str], Path]:
    """The python of a function's own venv (installed on first use, cached per machine)."""
    pythons: dict[str, Path] = {}

    def python(name: str) -> Path:
        if name not in pythons:
            requirements = Path(built[name].folder) / "requirements.txt"
            pythons[name] = package_venv.ensure(requirements, name).python
        return pythons[name]

    return python


@pytest.fixture
def cloud(emulator_host: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Fresh data, model and state buckets on the emulator, and the settings naming them."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_host)
    from salesmesh.data.source import storage_client

    client = storage_client()
    stem = uuid.uuid4().hex[:10]
    buckets = {kind: client.create_bucket(f"{kind}-{stem}") for kind in ("data", "models", "state")}
    env = {
        "PATH": "/usr/bin:/bin",
        "STORAGE_EMULATOR_HOST": emulator_host,
        "GOOGLE_CLOUD_PROJECT": "demo-project",
        "SALESMESH_DATA_BUCKET": buckets["data"].name,
        "SALESMESH_MODEL_BUCKET": buckets["models"].name,
        "SALESMESH_STATE_BUCKET": buckets["state"].name,
        "SALESMESH_STATE_DIR": str(tmp_path / "state"),
        "SALESMESH_TRAINING_IMAGE": IMAGE,
    }
    return {"client": client, "env": env, **buckets}


def run_probe(
    python: Path,
    package: str,
    target: str,
    env: dict[str, str],
    cold: Sequence[dict[str, Any]],
    faked: Sequence[dict[str, Any]] = (),
) -> subprocess.CompletedProcess[str]:
    """``serve_probe`` in the package's venv, isolated (-I), delivering ``cold`` then ``faked``."""
    plan = Path(env["SALESMESH_STATE_DIR"]).parent / f"plan-{uuid.uuid4().hex[:6]}.json"
    plan.write_text(json.dumps({"cold": list(cold), "faked": list(faked)}))
    return subprocess.run(
        [str(python), "-I", str(PROBE), package, target, str(plan)],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def serve(
    python: Path,
    package: str,
    target: str,
    env: dict[str, str],
    cold: Sequence[dict[str, Any]],
    faked: Sequence[dict[str, Any]] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Deliver events from the package: (the probe's report, the JSON log lines it printed)."""
    result = run_probe(python, package, target, env, cold, faked)
    assert result.returncode == 0, result.stderr[-5000:]
    return parse(result, package)


def parse(
    result: subprocess.CompletedProcess[str], package: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The probe's report, checked for isolation, and the function's JSON log lines."""
    lines = result.stdout.splitlines()
    assert lines and lines[-1].startswith("PROBE "), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("PROBE "))
    assert report["salesmesh"].startswith(package), report["salesmesh"]
    assert report["foreign_paths"] == []  # nothing of the project, only package and venv
    logs = [json.loads(line) for line in lines[:-1] if line.startswith('{"severity"')]
    return report, logs


def storage_event(
    bucket: str, name: str, generation: int | str = "1793697267318412"
) -> dict[str, Any]:
    event = json.loads((EVENTS / "storage_finalized.json").read_text())
    event["headers"]["ce-source"] = f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    event["headers"]["ce-subject"] = f"objects/{name}"
    event["data"] |= {"bucket": bucket, "name": name, "generation": str(generation)}
    return event


def without(event: dict[str, Any], field: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    del broken["data"][field]
    return broken


def upload(bucket: Any, name: str, text: str) -> dict[str, Any]:
    blob = bucket.blob(name)
    blob.upload_from_string(text, content_type="text/csv")
    blob.reload()
    return storage_event(bucket.name, name, blob.generation)


def summary(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(line["severity"], line["message"].split(":")[0]) for line in logs]


def test_train_trigger_quarantines_and_ignores_locally(venv_of, built, cloud):
    """Local backend: an object outside uploads/ is ignored, a malformed event logged, a bad
    CSV quarantined with its .error.json in the state bucket; nothing heavy is imported."""
    package = built["train_trigger"].folder
    env = {**cloud["env"], "SALESMESH_BACKEND": "local"}
    bad = upload(cloud["data"], "uploads/2026/bad.csv", NEGATIVE)
    outside = storage_event(cloud["data"].name, "exports/elsewhere.csv")
    events = [outside, without(outside, "generation"), bad]
    report, logs = serve(venv_of("train_trigger"), package, "train_trigger", env, events)
    assert report["results"] == [{"status": 200, "heavy": []}] * 3
    assert [line["severity"] for line in logs] == ["INFO", "ERROR", "ERROR"]
    assert "outside the upload prefix" in logs[0]["message"]
    assert "malformed event" in logs[1]["message"] and "generation" in logs[1]["message"]
    assert logs[2]["message"].startswith(f"rejected gs://{cloud['data'].name}/uploads/2026/bad.csv")
    state = cloud["client"].bucket(cloud["state"].name)
    assert sorted(b.name for b in cloud["client"].list_blobs(state)) == [
        "quarantine/2026/bad.csv",
        "quarantine/2026/bad.csv.error.json",
    ]
    reason = json.loads(state.blob("quarantine/2026/bad.csv.error.json").download_as_text())
    assert reason["object"] == f"gs://{cloud['data'].name}/uploads/2026/bad.csv"
    assert not reason["report"]["ok"]
    assert state.blob("quarantine/2026/bad.csv").download_as_text() == NEGATIVE


def test_train_trigger_submits_a_vertex_job_on_gcp(venv_of, built, cloud):
    """gcp backend: ignored and malformed events stay cold (no Vertex SDK); a valid upload
    becomes one CustomJob naming the training image and the exact data version."""
    package = built["train_trigger"].folder
    env = {**cloud["env"], "SALESMESH_BACKEND": "gcp"}
    good = upload(cloud["data"], "uploads/good.csv", VALID)
    data_uri = f"gs://{cloud['data'].name}/uploads/good.csv#{good['data']['generation']}"
    outside = storage_event(cloud["data"].name, "exports/elsewhere.csv")
    cold = [outside, without(outside, "bucket")]
    report, logs = serve(venv_of("train_trigger"), package, "train_trigger", env, cold, [good])
    statuses = [(r["status"], r["heavy"]) for r in report["results"]]
    assert statuses == [(200, []), (200, []), (200, ["google.cloud.aiplatform"])]
    created = [
        call["request"] for call in report["vertex"] if call["method"] == "create_custom_job"
    ]
    assert len(created) == 1, report["vertex"]
    assert created[0]["parent"] == "projects/demo-project/locations/europe-west1"
    job = created[0]["customJob"]
    (pool,) = job["jobSpec"]["workerPoolSpecs"]
    assert pool["containerSpec"]["imageUri"] == IMAGE
    assert pool["containerSpec"]["command"] == ["python", "-m", "salesmesh.train"]
    assert pool["containerSpec"]["args"] == ["--data", data_uri, "--horizon", "28"]
    run_id = job["labels"]["salesmesh-run"]
    assert job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == (
        f"gs://{cloud['models'].name}/runs/{run_id}"
    )
    assert summary(logs)[-1] == ("INFO", f"training run {run_id} queued for gs")
    claims = [b.name for b in cloud["client"].list_blobs(cloud["state"].name)]
    assert claims == [f"salesmesh/claims/{run_id}"]  # the create-only claim, on real storage


def tampered_run(models: Any, run_id: str, folder: Path) -> dict[str, Any]:
    """A run folder in the model bucket whose series.csv changed after its manifest was written."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text('{"model": {"mase": 0.8}}\n')
    (folder / "series.csv").write_text("series,store_id,product_id\n0,S01,P001\n")
    (folder / "forecaster.json").write_text('{"horizon": 28}\n')
    write_manifest(folder, {"data": {}, "model": {"horizon": 28}})
    (folder / "series.csv").write_text("series,store_id,product_id\n0,S01,P999\n")
    for path in sorted(folder.iterdir()):
        models.blob(f"runs/{run_id}/{path.name}").upload_from_filename(str(path))
    return storage_event(models.name, f"runs/{run_id}/manifest.json")


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_deploy_model_refuses_what_it_must_not_deploy(venv_of, built, cloud, tmp_path, backend):
    """A run's non-manifest file is ignored and a malformed event logged without loading the
    Vertex SDK or the forecaster; a tampered run is refused at ERROR before registration."""
    package = built["deploy_model"].folder
    env = {**cloud["env"], "SALESMESH_BACKEND": backend}
    model_file = storage_event(cloud["models"].name, "runs/r-1/model.lgb.txt")
    tampered = tampered_run(cloud["models"], "r-tampered", tmp_path / "run")
    cold = [model_file, without(model_file, "bucket")]
    # locally nothing needs faking; on gcp Vertex AI is faked, though a refused run never calls it
    cold, faked = ([*cold, tampered], []) if backend == "local" else (cold, [tampered])
    report, logs = serve(venv_of("deploy_model"), package, "deploy_model", env, cold, faked)
    assert [r["status"] for r in report["results"]] == [200, 200, 200]
    assert [r["heavy"] for r in report["results"][:2]] == [[], []]
    assert summary(logs) == [
        ("DEBUG", "ignored gs"),
        ("ERROR", "malformed event 8340823419254938"),
        ("ERROR", "refusing to deploy run r-tampered"),
    ]
    assert "not a run's manifest.json" in logs[0]["message"]
    assert "series.csv" in logs[2]["message"] and "sha256" in logs[2]["message"]
    if backend == "gcp":
        # the artifact is verified before anything asks Vertex AI: a bad run costs no API call
        assert [c["method"] for c in report["vertex"]] == []
    else:
        assert report["results"][2]["heavy"] == []


def test_a_distribution_missing_from_the_venv_fails_the_function(venv_of, built, cloud, tmp_path):
    """The same venv without google-cloud-aiplatform: a valid upload on gcp crashes the
    function (500) with ModuleNotFoundError, so a missing requirement cannot pass unseen."""
    python = without_distribution(venv_of("train_trigger"), "google-cloud-aiplatform", tmp_path)
    package = built["train_trigger"].folder
    env = {**cloud["env"], "SALESMESH_BACKEND": "gcp"}
    good = upload(cloud["data"], "uploads/good.csv", VALID)
    result = run_probe(python, package, "train_trigger", env, [good])
    report, _ = parse(result, package)
    assert report["results"] == [{"status": 500, "heavy": []}]
    assert "ModuleNotFoundError: No module named 'google.cloud.aiplatform'" in result.stderr


def without_distribution(python: Path, distribution: str, tmp_path: Path) -> Path:
    """A copy of ``python``'s venv (hard links: instant, the cached venv stays untouched) with
    ``distribution`` uninstalled, as if requirements.txt had not listed it."""
    source = python.parent.parent
    copy_ = tmp_path / "venv"
    shutil.copytree(source, copy_, symlinks=True, copy_function=os.link)
    pip = [str(copy_ / "bin" / "python"), "-I", "-m", "pip", "--disable-pip-version-check"]
    removed = subprocess.run(
        [*pip, "uninstall", "--yes", distribution], capture_output=True, text=True, check=False
    )
    assert removed.returncode == 0, removed.stderr
    return copy_ / "bin" / "python"
