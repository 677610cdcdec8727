"""The local training launcher: real watcher and trainer subprocesses on a tiny sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from contract_launcher import LauncherContract, RequestFor, same_run

from salesmesh.backends import training_launcher
from salesmesh.backends.local import LocalTrainingLauncher
from salesmesh.ports import RunState, TrainingRequest, TrainingRun
from salesmesh.sample import write_sample

HORIZON = 7


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 store x 2 products x 120 days: the real trainer finishes it in a few seconds."""
    path = tmp_path_factory.mktemp("data") / "sales.csv"
    write_sample(path, stores=1, products=2, days=120)
    return path


@pytest.fixture
def launcher(state_dir: Path) -> LocalTrainingLauncher:
    return LocalTrainingLauncher(state_dir)


@pytest.fixture
def request_for(sample_csv: Path, tmp_path: Path) -> RequestFor:
    def build(run_id: str) -> TrainingRequest:
        return TrainingRequest(run_id, str(sample_csv), str(tmp_path / "models" / run_id), HORIZON)

    return build


def wait(launcher: LocalTrainingLauncher, run_id: str, timeout: float = 60.0) -> TrainingRun:
    """The run once it has finished."""
    deadline = time.monotonic() + timeout
    while (run := launcher.get(run_id)) is None or not run.state.finished:
        assert time.monotonic() < deadline, f"{run_id} still {run and run.state} after {timeout}s"
        time.sleep(0.05)
    return run


class TestLocalLauncherContract(LauncherContract):
    def job_inputs(self, launcher: Any, run: TrainingRun) -> dict[str, Any]:
        """Read back from the manifest the real trainer wrote."""
        assert wait(launcher, run.run_id).state is RunState.SUCCEEDED
        manifest = json.loads((Path(run.output_uri) / "manifest.json").read_text())
        return {
            "data": manifest["data"]["uri"],
            "horizon": manifest["model"]["horizon"],
            "model_dir": run.output_uri,
        }


@pytest.mark.slow
def test_run_succeeds_and_publishes(
    launcher: LocalTrainingLauncher, request_for: RequestFor
) -> None:
    """A run on good data goes queued -> succeeded, exit 0, manifest in its output, log kept."""
    run = launcher.launch(request_for("good"))
    assert run.state is RunState.QUEUED
    done = wait(launcher, "good")
    assert (done.state, done.exit_code) == (RunState.SUCCEEDED, 0)
    assert (Path(done.output_uri) / "manifest.json").is_file()
    assert done.log is not None
    assert "done" in Path(done.log).read_text()


def test_rejected_data_fails_with_exit_code_1(
    launcher: LocalTrainingLauncher, sample_csv: Path, tmp_path: Path
) -> None:
    """A run on data with negative sales ends failed with the trainer's exit code 1."""
    bad = tmp_path / "negative.csv"
    lines = sample_csv.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("sales")] = "-5"
    bad.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    launcher.launch(TrainingRequest("bad", str(bad), str(tmp_path / "out"), HORIZON))
    done = wait(launcher, "bad")
    assert (done.state, done.exit_code) == (RunState.FAILED, 1)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_job_gets_vertex_environment(tmp_path: Path) -> None:
    """The job sees AIP_MODEL_DIR, CLOUD_ML_JOB_ID and the caller's env, and no --output flag."""
    script = tmp_path / "fake_python.sh"
    script.write_text(
        # stands in for the trainer only; the watcher (-m salesmesh.backends.local) runs for real
        f'#!/bin/sh\nif [ "$1 $2" = "-m salesmesh.train" ]; then env > "{tmp_path}/env.txt";'
        f' echo "$*" > "{tmp_path}/args.txt"; exit 0; fi\nexec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)
    env = {**os.environ, "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9"}
    launcher = LocalTrainingLauncher(tmp_path / "state", env=env, python=str(script))
    launcher.launch(TrainingRequest("env", "gs://data/in.csv", "gs://models/runs/env", 5))
    assert wait(launcher, "env").exit_code == 0
    seen = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert seen["AIP_MODEL_DIR"] == "gs://models/runs/env"
    assert seen["CLOUD_ML_JOB_ID"] == "local-env"
    assert seen["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:9"
    args = (tmp_path / "args.txt").read_text().split()
    assert args == ["-m", "salesmesh.train", "--data", "gs://data/in.csv", "--horizon", "5"]


def _counting_python(tmp_path: Path) -> tuple[Path, Path]:
    """A python that logs every invocation before running the real one."""
    calls = tmp_path / "calls.txt"
    script = tmp_path / "python.sh"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script, calls


def _assert_one_job(runs: list[TrainingRun], state: Path, calls: Path) -> None:
    assert all(same_run(runs[0], run) for run in runs)
    assert [p.name for p in (state / "runs").iterdir()] == ["same"]
    launcher = LocalTrainingLauncher(state)
    wait(launcher, "same")
    started = calls.read_text().splitlines()
    assert sum("salesmesh.backends.local" in line for line in started) == 1
    assert sum(line.startswith("-m salesmesh.train") for line in started) == 1


def test_concurrent_threads_start_one_job(tmp_path: Path) -> None:
    """20 threads launching one run id at the same moment start exactly one job."""
    python, calls = _counting_python(tmp_path)
    launcher = LocalTrainingLauncher(tmp_path / "state", python=str(python))
    request = TrainingRequest("same", str(tmp_path / "missing.csv"), str(tmp_path / "o"), HORIZON)
    barrier, runs = threading.Barrier(20), []

    def launch() -> None:
        barrier.wait()
        runs.append(launcher.launch(request))

    threads = [threading.Thread(target=launch) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == 20
    _assert_one_job(runs, tmp_path / "state", calls)


def test_concurrent_processes_start_one_job(tmp_path: Path) -> None:
    """4 processes x 5 threads launching one run id at the same moment start exactly one job."""
    python, calls = _counting_python(tmp_path)
    state = tmp_path / "state"
    code = textwrap.dedent(
        f"""
        import dataclasses, json, sys, threading, time
        from pathlib import Path
        from salesmesh.backends.local import LocalTrainingLauncher
        from salesmesh.ports import TrainingRequest
        launcher = LocalTrainingLauncher(Path({str(state)!r}), python={str(python)!r})
        request = TrainingRequest("same", {str(tmp_path / "missing.csv")!r}, "o", {HORIZON})
        runs = []
        def launch():
            time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
            runs.append(dataclasses.asdict(launcher.launch(request)))
        threads = [threading.Thread(target=launch) for _ in range(5)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(json.dumps(runs))
        """
    )
    go = str(time.time() + 1.5)
    procs = [
        subprocess.Popen([sys.executable, "-c", code, go], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=30)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0]
    runs = [TrainingRun(**r) for out in outputs for r in json.loads(out)]
    assert len(runs) == 20
    _assert_one_job(runs, state, calls)


def test_local_mode_never_imports_vertex_sdk(tmp_path: Path) -> None:
    """Building and using a local launcher by name leaves google.cloud.aiplatform unimported."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from salesmesh.backends import training_launcher
        from salesmesh.ports import TrainingRequest
        launcher = training_launcher("local", state_dir=Path({str(tmp_path / "state")!r}))
        launcher.launch(TrainingRequest("r1", "missing.csv", {str(tmp_path / "o")!r}, 7))
        assert launcher.get("r1") is not None and len(launcher.list()) == 1
        loaded = sorted(m for m in sys.modules if m.startswith("google.cloud.aiplatform"))
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "[]"
    wait(LocalTrainingLauncher(tmp_path / "state"), "r1")


def test_registry_builds_local_and_refuses_unknown_names(tmp_path: Path) -> None:
    """training_launcher('local') is a LocalTrainingLauncher; an unknown name says what exists."""
    assert isinstance(training_launcher("local", state_dir=tmp_path), LocalTrainingLauncher)
    with pytest.raises(ValueError, match="known backends: gcp, local"):
        training_launcher("azure")


def test_stopping_unfinished_runs_ends_their_jobs_and_records_failure(
    launcher: LocalTrainingLauncher, tmp_path: Path
) -> None:
    """stop_unfinished ends a running trainer's whole process group; the run reads failed."""
    big = tmp_path / "big.csv"
    write_sample(big, stores=10, products=10, days=1000, seed=9)
    request = TrainingRequest("r-stopped", str(big), str(tmp_path / "out"), 28)
    launcher.launch(request)
    deadline = time.monotonic() + 30
    while (run := launcher.get("r-stopped")) is None or run.state != RunState.RUNNING:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    assert launcher.stop_unfinished() == ["r-stopped"]
    ended = wait(launcher, "r-stopped", timeout=20)
    assert (ended.state, ended.exit_code) == (RunState.FAILED, -signal.SIGTERM)
    assert ended.backend_id is not None
    # nothing of the job's group is left: its last member (the wrapper that records the exit)
    # may take a few milliseconds more than the record; a process that outlived the stop would
    # still be there after seconds
    group = int(ended.backend_id)
    deadline = time.monotonic() + 5
    while _group_alive(group):
        assert time.monotonic() < deadline, f"process group {group} outlived its run"
        time.sleep(0.02)
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert launcher.stop_unfinished() == []  # finished runs are left alone


def _group_alive(group: int) -> bool:
    """True while any process of process group ``group`` exists."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
