"""Upload -> train -> deploy -> predict through real processes: `salesmesh up`, its function
servers, trainer jobs, prediction servers and router, driven by the `salesmesh` CLI."""

from __future__ import annotations

import json
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mesh_cli import cli, cli_json, leftover_processes, settled_versions, start_mesh
from mesh_waits import wait_for
from run_folders import variant

from salesmesh.local.binary import finalized_event, post
from salesmesh.sample import write_sample

pytestmark = pytest.mark.slow


# a short canary: the wait is what it costs, the path is the same
EXTRA = {"SALESMESH_CANARY_SECONDS": "0.5"}
QUANTILES = ["p10", "p25", "p50", "p75", "p90"]


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(state, *args, extra=EXTRA)


def _versions(state: Path) -> dict[str, Any]:
    return cli_json(state, "versions", extra=EXTRA)


def _settled(state: Path, count: int) -> list[dict[str, Any]]:
    return settled_versions(state, count, EXTRA)


def _split(state: Path) -> dict[str, int]:
    return {t["version_id"]: t["percent"] for t in _versions(state)["traffic"]}


def _upload_run(emulator: str, folder: Path, prefix: str, monkeypatch: Any) -> None:
    """Publish a run folder to the mesh's model bucket as a trainer would, manifest last."""
    from run_folders import upload_folder

    from salesmesh.data.source import storage_client

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)  # the client reads it from os.environ
    upload_folder(storage_client(), folder, f"gs://salesmesh-models/{prefix}")


def test_upload_train_deploy_predict_gate_and_failed_health(
    tmp_path: Path, model_artifact: Path, broken_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A good upload serves a 28-day forecast; duplicates, a worse model and a broken one
    change nothing; an equal one takes over with the old champion as warm standby; all of it
    is served again after the mesh restarts."""
    state = tmp_path / "state"
    mesh = start_mesh(state, EXTRA)
    try:
        wait_for(lambda: (state / "mesh.json").exists(), 60, "mesh.json")
        info = json.loads((state / "mesh.json").read_text())
        assert info["endpoint_url"].startswith("http://127.0.0.1:")

        good = tmp_path / "sales.csv"
        write_sample(good, stores=2, products=3, days=300, seed=7)
        assert _cli(state, "upload", str(good)).returncode == 0
        (first,) = _settled(state, 1)
        assert (first["state"], first["aliases"], first["traffic"]) == (
            "deployed",
            ["champion"],
            100,
        )
        assert first["run_id"].startswith("r-") and first["correlation_id"].startswith("c-")

        predicted = _cli(state, "predict", "--store", "S01", "--product", "P001", "--json")
        assert predicted.returncode == 0, predicted.stderr
        response = json.loads(predicted.stdout)
        (forecast,) = response["predictions"]
        assert len(forecast["forecast"]) == 28
        assert forecast["forecast"][0]["date"] == "2024-10-27"  # the day after the data ends
        assert response["deployedModelId"] == first["deployed_model_id"]
        table = _cli(state, "predict", "--store", "S01", "--product", "P001", "--horizon", "7")
        # a title, the columns (the point forecast and the trained quantiles), 7 days
        assert table.returncode == 0 and len(table.stdout.splitlines()) == 9, table.stdout
        assert table.stdout.splitlines()[1].split() == ["date", "sales", *QUANTILES]
        unknown = _cli(state, "predict", "--store", "S99", "--product", "P001")
        assert unknown.returncode == 1 and "S99" in unknown.stderr, unknown.stderr
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"promo": [1] * 7}))
        ask = ("predict", "--store", "S01", "--product", "P001", "--horizon", "7")
        planned = _cli(state, *ask, "--future-json", str(plan), "--json")
        assert planned.returncode == 0, planned.stderr
        planned_days = json.loads(planned.stdout)["predictions"][0]["forecast"]
        assert [list(day) for day in planned_days] == [["date", "sales", *QUANTILES]] * 7
        plan.write_text(json.dumps({"promo": [1] * 3}))
        short = _cli(state, *ask, "--future-json", str(plan))
        assert short.returncode == 1 and "future.promo has 3 value(s)" in short.stderr, short.stderr

        # Eventarc may deliver the same manifest many times at once: still one version
        manifest = f"runs/{first['run_id']}/manifest.json"
        event = finalized_event(
            {
                "bucket": "salesmesh-models",
                "name": manifest,
                "generation": "1",
                "metageneration": "1",
            }
        )
        url = info["functions"]["deploy_model"]
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: post(url, event, 90.0)[0], range(20)))
        assert answers == [200] * 20
        assert [v["version_id"] for v in _settled(state, 1)] == [first["version_id"]]
        assert _split(state) == {first["version_id"]: 100}

        # a run of the same data whose model errs twice as much on every backtest point (the
        # session's model_artifact was trained on this very sample) is kept out
        worse = variant(model_artifact, tmp_path / "worse", 2 * first["metrics"]["mase"])
        _upload_run(info["storage_emulator_host"], worse, "runs/r-worse", monkeypatch)
        gated = _settled(state, 2)[1]
        assert (gated["state"], gated["deployed_model_id"], gated["aliases"]) == ("gated", None, [])
        assert _split(state) == {first["version_id"]: 100}
        reasons = (state / "logs" / "mesh.jsonl").read_text()
        assert "credibly worse" in reasons and gated["gate"]["mode"] == "naive_relative"

        _upload_run(info["storage_emulator_host"], broken_artifact, "runs/r-broken", monkeypatch)
        failed = _settled(state, 3)[2]
        assert (failed["state"], failed["deployed_model_id"]) == ("failed", None)
        assert _split(state) == {first["version_id"]: 100}
        again = _cli(state, "predict", "--store", "S01", "--product", "P001", "--json")
        assert json.loads(again.stdout)["deployedModelId"] == first["deployed_model_id"]

        # the same data uploaded again is a new run whose model ties with the champion: it
        # passes the gate (within tolerance) and takes over
        again_name = "uploads/sales-again.csv"
        assert _cli(state, "upload", str(good), "--name", again_name).returncode == 0
        versions = _settled(state, 4)
        newest = versions[3]
        assert (newest["state"], newest["aliases"]) == ("deployed", ["champion"])
        assert (versions[0]["aliases"], versions[0]["state"]) == (["previous"], "standby")
        assert _split(state) == {first["version_id"]: 0, newest["version_id"]: 100}
        listing = _cli(state, "versions")
        assert "champion" in listing.stdout and "gated" in listing.stdout, listing.stdout
    finally:
        _stop(mesh, state)

    # deployed models outlive the mesh: the next `up` serves them again, same split and ids
    mesh = start_mesh(state, EXTRA)
    try:
        wait_for(lambda: (state / "mesh.json").exists(), 90, "mesh.json after a restart")
        served = _cli(state, "predict", "--store", "S02", "--product", "P003", "--json")
        assert served.returncode == 0, served.stderr
        assert json.loads(served.stdout)["deployedModelId"] == newest["deployed_model_id"]
        assert _split(state) == {first["version_id"]: 0, newest["version_id"]: 100}
    finally:
        _stop(mesh, state)


def _stop(mesh: subprocess.Popen[str], state: Path) -> None:
    """Ctrl-C the mesh; it must exit cleanly and leave no server, router or function behind."""
    mesh.send_signal(signal.SIGINT)
    output, _ = mesh.communicate(timeout=60)
    assert mesh.returncode == 0, output
    assert leftover_processes(state) == []
