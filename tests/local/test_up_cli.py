"""`salesmesh up` end to end through real processes: upload, train, quarantine, stop cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mesh_cli import ROOT, cli, cli_json, leftover_processes, start_mesh
from mesh_waits import wait_for

from salesmesh.local.binary import finalized_event, post
from salesmesh.sample import write_sample

# the horizon the small samples support
EXTRA = {"SALESMESH_HORIZON": "7", "SALESMESH_HISTORY_QUIET": "1"}


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(state, *args, extra=EXTRA)


def _status(state: Path) -> dict[str, Any]:
    return cli_json(state, "status", extra=EXTRA)


def test_up_trains_an_upload_quarantines_a_bad_one_and_stops_clean(tmp_path):
    """Upload -> one succeeded run (even with 20 more deliveries); bad file -> quarantine."""
    state = tmp_path / "state"
    mesh = start_mesh(state, EXTRA)
    try:
        wait_for(lambda: (state / "mesh.json").exists(), 60, "mesh.json")
        info = json.loads((state / "mesh.json").read_text())

        good = tmp_path / "sales.csv"
        write_sample(good, stores=1, products=2, days=120, seed=2)
        uploaded = _cli(state, "upload", str(good))
        assert uploaded.returncode == 0, uploaded.stderr
        runs = wait_for(
            lambda: [r for r in _status(state)["runs"] if r["state"] in ("succeeded", "failed")],
            120,
            "a finished run",
        )
        assert [(r["state"], r["exit_code"]) for r in runs] == [("succeeded", 0)], runs
        story = _cli(state, "logs", "--run", runs[0]["run_id"]).stdout.splitlines()
        components = {line.split()[2] for line in story}
        # one id from upload to artifact, and on into deployment when deploy_model got there
        assert {"train_trigger", "trainer"} <= components, story
        assert components <= {"train_trigger", "trainer", "deploy_model"}, story
        assert f"trainer [{runs[0]['run_id']}]: done" in "\n".join(story)

        # the run trained on the history, which `salesmesh data` shows holding the upload
        generation = re.search(r"\(generation (\d+),", uploaded.stdout).group(1)
        history = cli_json(state, "data", extra=EXTRA)
        [snapshot] = history["snapshots"]
        assert snapshot["head"] and snapshot["runs"] == [runs[0]["run_id"]]
        assert [u["uri"] for u in snapshot["uploads"]] == [
            f"gs://salesmesh-data/uploads/sales.csv#{generation}"
        ]

        # Eventarc may deliver the same finalize many times at once: still one run
        event = finalized_event(
            {
                "bucket": "salesmesh-data",
                "name": "uploads/sales.csv",
                "generation": generation,
                "metageneration": "1",
            }
        )
        url = info["functions"]["train_trigger"]
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: post(url, event, 60.0)[0], range(20)))
        assert answers == [200] * 20
        assert len(_status(state)["runs"]) == 1
        assert len(cli_json(state, "data", extra=EXTRA)["snapshots"]) == 1  # merged once

        bad = tmp_path / "bad.csv"
        bad.write_text(
            good.read_text().replace("\n2024-01-05,S01,P001,", "\n2024-01-05,S01,P001,-", 1)
        )
        assert _cli(state, "upload", str(bad)).returncode == 0
        quarantined = wait_for(lambda: _status(state)["quarantine"], 120, "quarantine")
        assert quarantined[0]["name"] == "quarantine/bad.csv"
        assert "sales_negative" in quarantined[0]["reason"]
        assert len(_status(state)["runs"]) == 1 and _status(state)["dead_letters"] == []
    finally:
        mesh.send_signal(signal.SIGINT)
        output, _ = mesh.communicate(timeout=30)
    assert mesh.returncode == 0, output
    assert "stopped" in output and not (state / "mesh.json").exists()
    assert leftover_processes(state) == []


def _logged(state: Path, text: str) -> list[str]:
    log = state / "logs" / "mesh.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return [json.loads(line)["message"] for line in lines if text in line]


def _retrain_on_schedule_and_by_hand(state: Path, pid: int, printed: str, tmp_path: Path) -> None:
    assert "background" in printed and str(pid) in printed
    assert _cli(state, "up", "--detach", "--root", str(ROOT)).returncode == 1  # one at a time
    assert _status(state)["notes"] == []  # status found the running emulator

    empty = wait_for(lambda: _logged(state, "scheduled retrain (schedule)"), 30, "a retrain")
    assert "the sales history of salesmesh-demand is empty" in empty[0]
    sales = tmp_path / "sales.csv"
    write_sample(sales, stores=1, products=2, days=120, seed=3)
    assert _cli(state, "upload", str(sales)).returncode == 0
    runs = wait_for(
        lambda: [r for r in _status(state)["runs"] if r["state"] == "succeeded"], 120, "the run"
    )
    trained = f"was trained by run {runs[0]['run_id']}"
    wait_for(lambda: [m for m in _logged(state, "scheduled retrain") if trained in m], 30, trained)
    by_hand = cli_json(state, "train", extra=EXTRA)
    assert (by_hand["action"], by_hand["run_id"]) == ("current", runs[0]["run_id"])
    assert len(_status(state)["runs"]) == 1  # the schedule and the hand launched nothing more


def test_up_detach_runs_in_the_background_until_down(tmp_path):
    """--detach returns once the mesh is ready; its retrain schedule posts to train_trigger
    (nothing to train before the first upload, then nothing new after the upload's run);
    `salesmesh train` says the same; down stops it all and leaves nothing behind."""
    state = tmp_path / "state"
    started = _cli(state, "up", "--detach", "--root", str(ROOT), "--retrain-every", "2s")
    assert started.returncode == 0, started.stderr
    pid = json.loads((state / "mesh.json").read_text())["pid"]
    try:
        _retrain_on_schedule_and_by_hand(state, pid, started.stdout, tmp_path)
    finally:  # a failed assertion must not leave a background mesh behind
        stopped = _cli(state, "down")
    assert stopped.returncode == 0 and "mesh stopped" in stopped.stdout
    assert not (state / "mesh.json").exists()
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 15, "the mesh process to exit")
    assert "no mesh is running" in _cli(state, "down").stdout
    refused = _cli(state, "train")
    assert refused.returncode != 0 and "no local mesh is running to train in" in refused.stderr
