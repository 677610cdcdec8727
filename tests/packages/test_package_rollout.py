"""deploy_model's package, alone in its own venv, rolls a real finished run out on gcp.

Everything the function does runs as deployed: the package's salesmesh, its pinned SDKs, the
run verified on Cloud Storage (the emulator) and the ledger written there. Only what cannot run
here is faked, at the generated clients inside the probe (``probe_cloud``): Vertex AI (the
deployment an operation that stays running until the test ends it), Resource Manager and Cloud
Tasks, whose tasks the probe POSTs back to the function as Cloud Tasks would.
"""

from __future__ import annotations

import base64
import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from probe_runner import serve, storage_event, summary, without
from run_folders import upload_folder

PROJECT = "demo-project"
# where the probe's fake Vertex AI serves (tests/backends/fake_vertex_models.LOCATION)
REGION = "europe-west4"
ENDPOINT = "4281973650921684992"  # numeric: what Terraform's google_vertex_ai_endpoint gets
SERVING_IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/salesmesh/serve:1"
DEPLOY_URL = "https://deploy-model-abc123-ez.a.run.app"
INVOKER = f"salesmesh-tasks@{PROJECT}.iam.gserviceaccount.com"
QUEUE = f"projects/{PROJECT}/locations/{REGION}/queues/salesmesh-rollout"
MODEL = f"projects/{PROJECT}/locations/{REGION}/models/salesmesh-demand"
STEP_EVENT = "dev.salesmesh.rollout.v1.step"
RUN_ID = "r-20261103-pkg"


def gcp_env(cloud: dict[str, Any]) -> dict[str, str]:
    """The settings deploy_model needs on gcp, as Terraform would set them."""
    return {
        **cloud["env"],
        "SALESMESH_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SALESMESH_REGION": REGION,
        "SALESMESH_SERVING_IMAGE": SERVING_IMAGE,
        "SALESMESH_DEPLOY_URL": DEPLOY_URL,
        "SALESMESH_TASKS_SERVICE_ACCOUNT": INVOKER,
        "SALESMESH_ENDPOINT": ENDPOINT,
    }


def requests(report: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """The requests of ``method`` the fakes received, in order, as JSON."""
    return [call["request"] for call in report["vertex"] if call["method"] == method]


def body(task: dict[str, Any]) -> Any:
    """A task's JSON body (bytes travel as base64 in a proto's JSON)."""
    return json.loads(base64.b64decode(task["httpRequest"]["body"]))


def outcomes(logs: list[dict[str, Any]]) -> list[str]:
    """What each rollout step did, from its closing log line."""
    return [
        line["message"].split(": ")[1].split(" in ")[0]
        for line in logs
        if line["message"].startswith("rollout ") and " (ledger at " in line["message"]
    ]


def first_series(run: Path) -> dict[str, Any]:
    """The probe deploy_model makes of a run: its first series, a week ahead."""
    with (run / "series.csv").open(newline="") as handle:
        row = next(csv.DictReader(handle))
    return {"store_id": row["store_id"], "product_id": row["product_id"], "horizon": 7}


def test_deploy_model_rolls_a_finished_run_out_on_gcp(venv_of, built, cloud, model_artifact):
    """A run's manifest registers version 1, records it in the ledger, starts its deployment and
    queues a Cloud Tasks step; replayed steps poll the operation, probe the model and promote
    it: the ledger ends with version 1 deployed at 100 %, ignored events never load the SDK."""
    package = built["deploy_model"].folder
    models = cloud["models"]
    # where a Vertex AI training job's trainer writes: AIP_MODEL_DIR, <base output>/model/
    folder = f"gs://{models.name}/runs/{RUN_ID}/model"
    artifact_uri = upload_folder(cloud["client"], model_artifact, folder)
    manifest = models.blob(f"runs/{RUN_ID}/model/manifest.json")
    manifest.reload()
    finished = storage_event(models.name, manifest.name, manifest.generation)
    model_file = storage_event(models.name, f"runs/{RUN_ID}/model/model.lgb.txt")
    probe = first_series(model_artifact)
    cold = [model_file, without(model_file, "bucket")]
    steps = [finished, {"dispatch": "task"}, {"finish": "deployments"}, {"dispatch": "task"}]
    fakes = {"endpoint": ENDPOINT, "serves": [probe], "queues": [QUEUE]}
    python = venv_of("deploy_model")
    report, logs = serve(python, package, "deploy_model", gcp_env(cloud), cold, steps, fakes)

    ignored, malformed, queued, polled, ended, promoted = report["results"]
    assert [ignored, malformed] == [{"status": 200, "heavy": []}] * 2
    assert summary(logs)[:2] == [
        ("DEBUG", "ignored gs"),
        ("ERROR", "malformed event 8340823419254938"),
    ]
    for delivered in (queued, polled, promoted):
        # the Vertex SDK, never the forecaster's libraries
        assert delivered["status"] == 200 and delivered["heavy"] == ["google.cloud.aiplatform"]
    assert [line["severity"] for line in logs[2:]] == ["INFO"] * (len(logs) - 2)
    assert outcomes(logs) == ["deploying", "deploying", "promoted"]

    check_registration(report, artifact_uri, model_artifact)
    deployment = check_deployment(report)
    check_steps(report, [polled["task"], promoted["task"]])
    (done,) = ended["finished"]
    assert done["operation"] == deployment
    check_promotion(report, done["deployed_model_id"], probe)

    ledger = json.loads(cloud["state"].blob(f"rollout/{ENDPOINT}.json").download_as_text())
    assert ledger["endpoint"] == ENDPOINT
    assert ledger["versions"]["1"]["state"] == "deployed"
    assert ledger["versions"]["1"]["run_id"] == RUN_ID
    assert ledger["rollout"] is None and ledger["rollouts"][-1]["state"] == "done"
    assert ledger["history"][-1]["to"] == {"1": 100}
    assert ledger["split"] == {done["deployed_model_id"]: 100}


def check_registration(report: dict[str, Any], artifact_uri: str, run: Path) -> None:
    """One UploadModel creating the model: the run's folder, the serving image, its labels and
    its backtest summary."""
    assert requests(report, "list_model_versions")  # looked for the run's version first
    (upload,) = requests(report, "upload_model")
    assert upload["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    assert upload["modelId"] == "salesmesh-demand"
    model = upload["model"]
    assert model["artifactUri"] == artifact_uri
    assert model["containerSpec"]["imageUri"] == SERVING_IMAGE
    assert model["containerSpec"]["healthRoute"] == "/health"
    assert model["containerSpec"]["predictRoute"] == "/predict"
    assert model["versionAliases"] == ["default"]  # version 1 holds Vertex AI's default
    assert model["labels"] == {
        "salesmesh-run": RUN_ID,
        "salesmesh-correlation": f"c-{RUN_ID.removeprefix('r-')}",  # its data is a local file
        "salesmesh-deploy": "registered",
    }
    registered = json.loads(model["versionDescription"])
    source = json.loads((run / "manifest.json").read_text())["data"]
    assert registered.pop("source") == {
        k: source.get(k) for k in ("uri", "generation", "md5", "rows")
    }
    assert registered == summary_of(json.loads((run / "metrics.json").read_text()))


def summary_of(metrics: dict[str, Any]) -> dict[str, Any]:
    from salesmesh.rollout.policy import summary as backtest_summary

    return backtest_summary(metrics)


def check_deployment(report: dict[str, Any]) -> str:
    """One DeployModel of version 1 on dedicated resources, taking the empty endpoint's whole
    traffic; the name of its operation, as the ledger recorded it."""
    (deploy,) = requests(report, "deploy_model")
    assert deploy["endpoint"] == f"projects/{PROJECT}/locations/{REGION}/endpoints/{ENDPOINT}"
    assert deploy["deployedModel"]["model"] == f"{MODEL}@1"
    resources = deploy["deployedModel"]["dedicatedResources"]
    assert resources["machineSpec"]["machineType"] and resources["minReplicaCount"] >= 1
    assert deploy["trafficSplit"] == {"0": 100}  # the first model on an empty endpoint
    polls = {r["name"] for r in requests(report, "get_operation")}
    assert len(requests(report, "get_operation")) == 2 and len(polls) == 1  # running, then done
    return polls.pop()


def check_steps(report: dict[str, Any], dispatched: list[str]) -> None:
    """Two step tasks, each for the ledger sequence its step wrote, POSTed to deploy_model by
    an OIDC-authenticated Cloud Tasks at Vertex AI's polling pace; the ones dispatched."""
    tasks = report["tasks"]
    assert [t["name"] for t in tasks] == [f"{QUEUE}/tasks/{name}" for name in dispatched]
    for task in tasks:
        http = task["httpRequest"]
        assert http["url"] == DEPLOY_URL and http["httpMethod"] == "POST"
        assert http["headers"]["ce-type"] == STEP_EVENT
        assert http["headers"]["Content-Type"] == "application/json"
        assert http["oidcToken"] == {"serviceAccountEmail": INVOKER, "audience": DEPLOY_URL}
        delay = parse_time(task["scheduleTime"]) - parse_time(task["createTime"])
        assert 25 <= delay.total_seconds() <= 35  # a deployment is looked at every 30 s
    seqs = [body(t)["seq"] for t in tasks]
    assert [body(t) for t in tasks] == [{"endpoint": ENDPOINT, "seq": seq} for seq in seqs]
    assert seqs[1] == seqs[0] + 1  # the poll wrote once and re-armed for its own sequence


def check_promotion(report: dict[str, Any], deployed_id: str, probe: dict[str, Any]) -> None:
    """The model answered the probe before it was promoted: champion alias, label copy; its
    traffic was already whole, so the endpoint's split was left alone."""
    (predict,) = requests(report, "predict")
    assert predict["instances"] == [probe]  # 7 arrives as 7.0: the SDK sends doubles
    (aliased,) = requests(report, "merge_version_aliases")
    assert aliased == {"name": f"{MODEL}@1", "versionAliases": ["champion"]}
    (labelled,) = requests(report, "update_model")
    assert labelled["model"]["name"] == f"{MODEL}@1"  # the version's labels, not the model's
    assert labelled["model"]["labels"]["salesmesh-deploy"] == "deployed"
    assert labelled["updateMask"] == "labels"  # a FieldMask in JSON: its paths, joined
    assert requests(report, "update_endpoint") == []  # it took 100 % when it was deployed
    assert report["endpoint"]["trafficSplit"] == {deployed_id: 100}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
