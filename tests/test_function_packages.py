"""Each function's deploy package (its folder plus the library) imports and runs on its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).parent / "events"

# Runs inside the package folder with only that folder added to sys.path; site-packages keep
# the function's requirements, as they would on Cloud Functions.
_PROBE = """
import json, sys
package, target = sys.argv[1], sys.argv[2]
sys.path.insert(0, package)
import salesmesh, main
assert salesmesh.__file__.startswith(package), salesmesh.__file__
from functions_framework import create_app
client = create_app(target=target, source=package + "/main.py",
                    signature_type="cloudevent").test_client()
statuses = []
for payload in sys.argv[3:]:
    event = json.loads(payload)
    response = client.post("/", headers=event["headers"], data=json.dumps(event["data"]))
    statuses.append(response.status_code)
heavy = [m for m in ("google.cloud.aiplatform", "lightgbm", "sklearn", "matplotlib")
         if m in sys.modules]
print(json.dumps({"statuses": statuses, "heavy": heavy}))
"""


def build_package(function: str, target: Path) -> Path:
    """Lay out what gcloud would upload: main.py, requirements.txt and the salesmesh library."""
    package = target / function
    shutil.copytree(ROOT / "functions" / function, package)
    shutil.copytree(
        ROOT / "shared" / "salesmesh",
        package / "salesmesh",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return package


def serve_from(
    package: Path, target: str, events: list[dict[str, Any]], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Deliver ``events`` to ``target`` served from ``package`` alone, in an isolated Python."""
    return subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, str(package), target, *map(json.dumps, events)],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_train_trigger_package_imports_and_handles_events_on_its_own(tmp_path):
    """The built package serves events from its own copy of salesmesh, without heavy imports."""
    package = build_package("train_trigger", tmp_path)
    state = tmp_path / "state"
    outside = json.loads((EVENTS / "storage_finalized.json").read_text())
    outside["data"]["name"] = "exports/elsewhere.csv"
    malformed = json.loads((EVENTS / "storage_finalized.json").read_text())
    del malformed["data"]["generation"]
    env = {"SALESMESH_BACKEND": "local", "SALESMESH_STATE_DIR": str(state), "PATH": "/usr/bin"}
    result = serve_from(package, "train_trigger", [outside, malformed], env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"statuses": [200, 200], "heavy": []}
    lines = [json.loads(line) for line in (state / "logs" / "mesh.jsonl").read_text().splitlines()]
    assert [(line["severity"], line["component"]) for line in lines] == [
        ("INFO", "train_trigger"),
        ("ERROR", "train_trigger"),
    ]
    assert "outside the upload prefix" in lines[0]["message"]
    assert "malformed event" in lines[1]["message"] and "generation" in lines[1]["message"]


def test_deploy_model_package_imports_and_handles_events_on_its_own(tmp_path):
    """The deploy package ignores a run's non-manifest files and logs a malformed event, and
    its cold path imports neither the Vertex SDK nor the forecaster, on either backend."""
    package = build_package("deploy_model", tmp_path)
    model_file = json.loads((EVENTS / "storage_finalized.json").read_text())
    model_file["data"] |= {"bucket": "salesmesh-models", "name": "runs/r-1/model.lgb.txt"}
    malformed = json.loads((EVENTS / "storage_finalized.json").read_text())
    del malformed["data"]["bucket"]
    for backend in ("local", "gcp"):
        state = tmp_path / f"state-{backend}"
        env = {
            "SALESMESH_BACKEND": backend,
            "SALESMESH_STATE_DIR": str(state),
            "GOOGLE_CLOUD_PROJECT": "demo-project",
            "PATH": "/usr/bin",
        }
        result = serve_from(package, "deploy_model", [model_file, malformed], env)
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
        assert lines[-1] == {"statuses": [200, 200], "heavy": []}, backend
        logged = [(line["severity"], line["component"]) for line in lines[:-1]]
        assert logged == [("DEBUG", "deploy_model"), ("ERROR", "deploy_model")], backend
        assert "not a run's manifest.json" in lines[0]["message"]
        assert "malformed event" in lines[1]["message"] and "bucket" in lines[1]["message"]
