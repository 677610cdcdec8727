"""`salesmesh status` and `salesmesh logs` read back what the mesh recorded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from salesmesh import status
from salesmesh.backends.local import LocalTrainingLauncher
from salesmesh.logs import Logger
from salesmesh.ports import TrainingRequest
from salesmesh.settings import Settings


def _cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESMESH_", "STORAGE_"))}
    return subprocess.run(
        [sys.executable, "-m", "salesmesh.cli", *args],
        env={**env, "SALESMESH_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _failed_run(state: Path) -> str:
    """Launch a real run on a missing file and wait for it to fail."""
    launcher = LocalTrainingLauncher(state)
    request = TrainingRequest("r-status", str(state / "absent.csv"), str(state / "out"), 7)
    launcher.launch(request)
    deadline = time.monotonic() + 60
    while (run := launcher.get("r-status")) is None or not run.state.finished:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    return request.data_uri


def test_status_json_lists_runs_and_dead_letters(tmp_path):
    """--json has runs with id, state and source, and every dead letter, damaged ones marked."""
    source = _failed_run(tmp_path)
    letter = {"function": "train_trigger", "event_id": "e1", "attempts": 5}
    (tmp_path / status.DEAD_LETTERS).write_text(json.dumps(letter) + "\n{broken\n")
    result = _cli("status", "--json", state=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert [(r["run_id"], r["state"], r["source"]) for r in shown["runs"]] == [
        ("r-status", "failed", source)
    ]
    assert shown["dead_letters"] == [letter, {"damaged_line": 2}]
    assert shown["quarantine"] == [] and "quarantine not listed" in shown["notes"][0]


def test_status_lists_quarantined_files_with_their_reasons(bucket, tmp_path):
    """Each <name>.error.json under quarantine/ becomes a name and its first reasons."""
    report = {
        "object": "gs://b/uploads/x.csv",
        "report": {
            "errors": [
                {"rule": "sales_negative", "message": "column 'sales' is negative at line 3"}
            ]
        },
    }
    bucket.blob("quarantine/x.csv").upload_from_string("data")
    bucket.blob("quarantine/x.csv.error.json").upload_from_string(json.dumps(report))
    settings = Settings(state_bucket=bucket.name, state_dir=tmp_path)
    gathered: dict[str, Any] = status.gather(settings, lambda: bucket.client)
    assert gathered["quarantine"] == [
        {
            "name": "quarantine/x.csv",
            "reason": "[sales_negative] column 'sales' is negative at line 3",
            "source": "gs://b/uploads/x.csv",
        }
    ]
    assert "quarantine (1):" in status.render(gathered)


def test_logs_prints_the_lines_of_one_run(tmp_path):
    """--run keeps only the lines labelled with that run id, in order."""
    log = Logger("train_trigger", stream=None, path=tmp_path / "logs" / "mesh.jsonl")
    log.bind(labels={"run_id": "r-one"}).info("launched r-one")
    log.bind(labels={"run_id": "r-two"}).info("launched r-two")
    log.bind(labels={"run_id": "r-one"}).error("r-one failed")
    result = _cli("logs", "--run", "r-one", state=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "INFO" in lines[0] and "[r-one]: launched r-one" in lines[0]
    assert "ERROR" in lines[1] and lines[1].endswith("r-one failed")


def _upload_cli(path: Path, bucket: Any, emulator_host: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALESMESH_")}
    env |= {"STORAGE_EMULATOR_HOST": emulator_host, "SALESMESH_DATA_BUCKET": bucket.name}
    return subprocess.run(
        [sys.executable, "-m", "salesmesh.cli", "upload", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upload_puts_the_file_under_the_upload_prefix(bucket, emulator_host, tmp_path):
    """The file lands byte for byte at uploads/<name> and its generation is printed."""
    path = tmp_path / "sales.csv"
    path.write_text("date,store,item,qty\n2024-01-01,S1,P1,3\n")
    result = _upload_cli(path, bucket, emulator_host)
    assert result.returncode == 0, result.stderr
    assert bucket.blob("uploads/sales.csv").download_as_bytes() == path.read_bytes()
    assert re.search(r"uploads/sales\.csv \(generation \d+, 39 bytes\)", result.stdout)
    assert f"100% of {path.stat().st_size} bytes" in result.stderr


def test_upload_without_a_mesh_or_project_says_how_to_get_one(tmp_path):
    """No emulator and no --project: exit 1 with what to do, no traceback."""
    path = tmp_path / "sales.csv"
    path.write_text("x")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESMESH_", "STORAGE_"))}
    result = subprocess.run(
        [sys.executable, "-m", "salesmesh.cli", "upload", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "salesmesh up" in result.stderr and "Traceback" not in result.stderr
