"""Each built package, installed from its own requirements.txt into a fresh virtualenv, serves
real events on both backends with only the package on sys.path.

Local backend: for real, against the GCS emulator. gcp backend: the same, with the generated
clients of Vertex AI (and of Cloud Tasks) patched by ``autospec`` inside that venv
(``serve_probe``, ``probe_cloud``); a whole rollout is ``test_package_rollout``. The first run on a
machine installs each venv (see ``package_venv``); later runs reuse them. A requirement missing
from a package fails here too: its import fails in the fresh venv.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from probe_runner import TRAINING_IMAGE as IMAGE
from probe_runner import parse, run_probe, serve, storage_event, summary, without

from salesmesh.artifact import write_manifest
from salesmesh.sample import generate

ROOT = Path(__file__).resolve().parents[2]
VALID = generate(stores=1, products=2, days=120, seed=5).to_csv(index=False)
NEGATIVE = VALID.replace("\n2024-01-05,S01,P001,", "\n2024-01-05,S01,P001,-", 1)


def upload(bucket: Any, name: str, text: str) -> dict[str, Any]:
    blob = bucket.blob(name)
    blob.upload_from_string(text, content_type="text/csv")
    blob.reload()
    return storage_event(bucket.name, name, blob.generation)


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
    """gcp backend: ignored and malformed events stay cold (no Vertex SDK); a valid upload is
    merged into the sales history and becomes one CustomJob naming the training image and the
    history, which the trainer resolves when it starts."""
    package = built["train_trigger"].folder
    env = {**cloud["env"], "SALESMESH_BACKEND": "gcp"}
    good = upload(cloud["data"], "uploads/good.csv", VALID)
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
    run_id = job["labels"]["salesmesh-run"]
    data_uri = f"salesmesh-history://{cloud['state'].name}/salesmesh-demand?run={run_id}&quiet=5"
    assert pool["containerSpec"]["args"] == ["--data", data_uri, "--horizon", "28"]
    assert job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] == (
        f"gs://{cloud['models'].name}/runs/{run_id}"
    )
    assert summary(logs)[-1] == ("INFO", f"training run {run_id} queued on the history")
    state = {b.name for b in cloud["client"].list_blobs(cloud["state"].name)}
    assert f"salesmesh/claims/{run_id}" in state  # the create-only claim, on real storage
    history = {name for name in state if name.startswith("sales/salesmesh-demand/")}
    assert {n.rsplit("/", 1)[0] for n in history} == {
        "sales/salesmesh-demand",  # HEAD.json and the pending run's claim
        "sales/salesmesh-demand/snapshots",
        "sales/salesmesh-demand/uploads",
    }


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


def pubsub_event(data: bytes | None, message: dict[str, Any] | None = None) -> dict[str, Any]:
    """The binary-mode messagePublished CloudEvent Eventarc POSTs for one Pub/Sub message."""
    body = {
        "message": message
        or {
            "data": base64.b64encode(data or b"").decode(),
            "attributes": {},
            "messageId": "7",
            "publishTime": "2026-12-01T12:00:00Z",
        },
        "subscription": "projects/demo-project/subscriptions/salesmesh-alerts-alert-handler",
    }
    headers = {
        "Content-Type": "application/json",
        "ce-id": "7",
        "ce-source": "//pubsub.googleapis.com/projects/demo-project/topics/salesmesh-alerts",
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-time": "2026-12-01T12:00:00Z",
    }
    return {"headers": headers, "data": body}


@pytest.mark.parametrize("backend", ["local", "gcp"])
def test_alert_handler_logs_and_acknowledges_what_it_cannot_act_on(venv_of, built, cloud, backend):
    """From its own package and venv, alert_handler acknowledges (2xx) a malformed message at
    ERROR, the console's test notification and an incident about another endpoint at WARNING,
    with the whole incident in the log line, and writes nothing; none of that loads the
    Vertex SDK (seconds of a cold start) on either backend."""
    package = built["alert_handler"].folder
    env = {**cloud["env"], "SALESMESH_BACKEND": backend}
    sample = json.loads((ROOT / "tests" / "alerts" / "incident_1_2.json").read_text())
    sample["incident"]["resource"]["labels"]["endpoint_id"] = "another-endpoint"
    events = [
        pubsub_event(None, {"data": "not base64!", "messageId": "7"}),
        pubsub_event((ROOT / "tests" / "alerts" / "incident_test.json").read_bytes()),
        pubsub_event(json.dumps(sample).encode()),
    ]
    report, logs = serve(venv_of("alert_handler"), package, "alert_handler", env, events)
    assert report["results"] == [{"status": 200, "heavy": []}] * 3
    assert [line["severity"] for line in logs] == ["ERROR", "WARNING", "INFO", "WARNING", "INFO"]
    assert "not base64" in logs[0]["message"]
    assert logs[1]["incident"]["version"] == "test"
    assert "test notification" in logs[2]["message"]
    assert logs[3]["incident"]["incident"]["resource"]["labels"]["endpoint_id"] == (
        "another-endpoint"
    )
    assert "about endpoint 'another-endpoint'" in logs[4]["message"]
    assert list(cloud["client"].list_blobs(cloud["state"].name)) == []
