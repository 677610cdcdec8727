"""End to end on the local mesh: emulator, train_trigger server, trainer subprocess."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mesh_waits import wait_for

from salesmesh.events import StorageObject, run_id
from salesmesh.local.delivery import read_dead_letters
from salesmesh.local.mesh import Mesh
from salesmesh.sample import write_sample
from salesmesh.settings import Settings

ROOT = Path(__file__).parents[2]


def runs(state_dir: Path) -> dict[str, dict[str, object]]:
    """Every recorded training run by id."""
    return {
        p.parent.name: json.loads(p.read_text()) for p in (state_dir / "runs").glob("*/run.json")
    }


def test_upload_trains_and_bad_upload_is_quarantined(tmp_path: Path, state_dir: Path) -> None:
    """A good upload ends in a manifest; a negative-sales upload is quarantined, no run."""
    settings = Settings(state_dir=state_dir, horizon=7, history_quiet=1.0)
    sample = tmp_path / "sales.csv"
    write_sample(sample, stores=1, products=2, days=120)
    with Mesh(settings, ROOT) as mesh:
        assert mesh.skipped == {} and "alert_handler" in mesh.servers
        client = mesh.storage_client()
        data = client.bucket(settings.data_bucket)
        blob = data.blob("uploads/sales.csv")
        blob.upload_from_filename(str(sample), content_type="text/csv")
        run = run_id(StorageObject(data.name, blob.name, str(blob.generation)))

        record = wait_for(
            lambda: (r := runs(state_dir).get(run)) and r["state"] in ("succeeded", "failed") and r,
            60,
            f"run {run} to finish",
        )
        assert record["state"] == "succeeded", Path(str(record["log"])).read_text()[-2000:]
        manifest = client.bucket(settings.model_bucket).get_blob(f"runs/{run}/manifest.json")
        assert manifest is not None
        # the run trained on the history's snapshot holding exactly this upload
        source = json.loads(manifest.download_as_bytes())["data"]
        uploads = [u["uri"] for u in source["snapshot"]["uploads"]]
        assert uploads == [f"gs://{data.name}/uploads/sales.csv#{blob.generation}"]

        bad = "date,store_id,product_id,sales\n2026-01-01,1,1,5\n2026-01-02,1,1,-3\n"
        data.blob("uploads/bad.csv").upload_from_string(bad, content_type="text/csv")
        state = client.bucket(settings.state_bucket)
        report = wait_for(
            lambda: state.get_blob("quarantine/bad.csv.error.json"), 20, "the quarantine report"
        )
        assert state.get_blob("quarantine/bad.csv") is not None
        assert "sales_negative" in report.download_as_text()
        # quarantining writes to the state bucket, which no function hears: two deliveries only
        time.sleep(1.0)
        assert mesh.delivery is not None
        uploads = [a.status for a in mesh.delivery.attempts if a.function == "train_trigger"]
        assert uploads == [200, 200], list(mesh.delivery.attempts)
        # the run's files went to deploy_model, which answered every one of them
        assert {a.status for a in mesh.delivery.attempts if a.function == "deploy_model"} == {200}
    assert list(runs(state_dir)) == [run]
    assert read_dead_letters(state_dir) == []


def test_a_model_that_cannot_be_restored_does_not_stop_the_mesh(state_dir: Path) -> None:
    """A deployed model whose run is gone is reported; the mesh still starts and stops."""
    from salesmesh.local.processes import write_json

    record = state_dir / "endpoints" / "salesmesh" / "endpoint.json"
    record.parent.mkdir(parents=True)
    gone = {
        "id": "1000000001",
        "version_id": "1",
        "artifact_uri": "gs://salesmesh-models/runs/r-gone",
        "created": "2026-11-28T00:00:00.000Z",
        "log": str(record.parent / "server-1000000001.log"),
        "port": 1,
        "predict_route": "/predict",
        "pid": None,
    }
    split = {gone["id"]: 100}
    document = {"endpoint": "salesmesh", "next_id": 2, "deployed_models": [gone], "traffic": split}
    write_json(record, document)
    with Mesh(Settings(state_dir=state_dir), ROOT) as mesh:
        assert mesh.restored == []
        assert "deployed model 1000000001" in mesh.restore_failures
        assert "r-gone" in mesh.restore_failures
        assert mesh.router is not None and "train_trigger" in mesh.servers
