"""Local training launcher: the real trainer as a detached subprocess, recorded on disk.

Each run owns ``<state_dir>/runs/<run_id>/`` holding ``run.json`` (the record) and ``job.log``
(the job's stdout and stderr). The job gets the command and environment a Vertex AI custom job
gets: ``python -m salesmesh.train --data URI --horizon N`` with ``AIP_MODEL_DIR`` naming the
output, plus ``CLOUD_ML_JOB_ID``; the caller's environment passes through, so
``STORAGE_EMULATOR_HOST`` points the job at the emulated buckets.

Idempotency across processes: ``mkdir`` of the run folder is the claim. It is atomic on every
local filesystem, so of any number of processes and threads launching one run id exactly one
creates the folder and starts the job; the others wait for its record and return it.

State: the launching process may be gone (or be another process) when someone asks, so the job
runs under a watcher, ``python -m salesmesh.backends.local RUN_DIR -- COMMAND...``, which marks
the record running, runs the job, and records its exit code. One writer at a time: the watcher
waits for EOF on its stdin, which the launcher closes only after writing the first record.
"""

from __future__ import annotations

import builtins
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from salesmesh.errors import LaunchError
from salesmesh.local.processes import alive, read_json, reap, start, write_json
from salesmesh.ports import RUN_ID, RunState, TrainingRequest, TrainingRun, rfc3339

RECORD = "run.json"
LOG = "job.log"


class LocalTrainingLauncher:
    """Runs ``python -m salesmesh.train`` locally the way Vertex AI would run it."""

    def __init__(
        self,
        state_dir: Path,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        claim_timeout: float = 10.0,
    ) -> None:
        self.runs_dir = Path(state_dir) / "runs"
        self._env = dict(os.environ if env is None else env)
        self._python = python
        self._claim_timeout = claim_timeout

    def launch(self, request: TrainingRequest) -> TrainingRun:
        """Start the run unless its folder already exists; either way return its record."""
        reap()
        run_dir = self.runs_dir / request.run_id
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
        except FileExistsError:
            return self._await_record(run_dir)
        return self._start(request, run_dir)

    def get(self, run_id: str) -> TrainingRun | None:
        """The run's record, or None if it was never launched (or is being claimed right now)."""
        if not RUN_ID.fullmatch(run_id):  # never let an id walk out of runs/
            return None
        reap()  # a killed watcher we started must not linger as a zombie that looks alive
        record = _read_record(self.runs_dir / run_id)
        return None if record is None else _to_run(record)

    def list(self) -> builtins.list[TrainingRun]:
        """Every recorded run, oldest first."""
        reap()
        records = [r for d in sorted(self.runs_dir.glob("*/")) if (r := _read_record(d))]
        return [_to_run(r) for r in sorted(records, key=lambda r: (r["created"], r["run_id"]))]

    def stop_unfinished(self) -> builtins.list[str]:
        """Terminate every queued or running job (the mesh is stopping); returns their ids.

        Each job runs in its own session led by its watcher, so one signal to that process
        group reaches the trainer too; the watcher survives it long enough to record the run
        as failed with the signal's exit code.
        """
        stopped = []
        for run in self.list():
            if run.state.finished or run.backend_id is None:
                continue
            try:
                os.killpg(int(run.backend_id), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                continue
            stopped.append(run.run_id)
        return stopped

    def _start(self, request: TrainingRequest, run_dir: Path) -> TrainingRun:
        log = run_dir / LOG
        record: dict[str, Any] = {
            "run_id": request.run_id,
            "state": RunState.QUEUED.value,
            "data_uri": request.data_uri,
            "output_uri": request.output_uri,
            "horizon": request.horizon,
            "labels": dict(request.labels),
            "created": rfc3339(),
            "exit_code": None,
            "log": str(log),
            "pid": None,
        }
        job = [self._python, "-m", "salesmesh.train"]
        job += ["--data", request.data_uri, "--horizon", str(request.horizon)]
        env = {
            **self._env,
            "AIP_MODEL_DIR": request.output_uri,
            "CLOUD_ML_JOB_ID": f"local-{request.run_id}",
        }
        watcher = [self._python, "-m", "salesmesh.backends.local", str(run_dir), "--", *job]
        try:  # detached: survives the function server's Ctrl-C
            child = start(watcher, log, env=env, stdin=subprocess.PIPE)
        except OSError as exc:
            # the claim stays: a redelivered event finds a failed run instead of a loop
            _write_record(run_dir, {**record, "state": RunState.FAILED.value})
            raise LaunchError(f"cannot start training run {request.run_id}: {exc}") from exc
        assert child.stdin is not None  # stdin=PIPE above
        try:
            record["pid"] = child.pid
            _write_record(run_dir, record)
        finally:
            child.stdin.close()  # the watcher's go signal, even if the record failed
        return _to_run(record)

    def _await_record(self, run_dir: Path) -> TrainingRun:
        """The claim winner's record; it appears within milliseconds unless the winner died."""
        deadline = time.monotonic() + self._claim_timeout
        while (record := _read_record(run_dir)) is None:
            if time.monotonic() > deadline:
                msg = f"{run_dir} was claimed but holds no {RECORD} after {self._claim_timeout}s"
                raise LaunchError(msg)
            time.sleep(0.01)
        return _to_run(record)


def _to_run(record: Mapping[str, Any]) -> TrainingRun:
    state = RunState(record["state"])
    pid = record.get("pid")
    if not state.finished and pid is not None and not alive(pid):
        state = RunState.FAILED  # the watcher was killed before it could record an exit code
    return TrainingRun(
        run_id=record["run_id"],
        state=state,
        data_uri=record["data_uri"],
        output_uri=record["output_uri"],
        created=record["created"],
        exit_code=record.get("exit_code"),
        log=record.get("log"),
        backend_id=None if pid is None else str(pid),
    )


def _read_record(run_dir: Path) -> dict[str, Any] | None:
    return read_json(run_dir / RECORD)


def _write_record(run_dir: Path, record: Mapping[str, Any]) -> None:
    """Replace run.json atomically, so a reader sees the old record or the new, never half."""
    write_json(run_dir / RECORD, record, indent=2)


def watch(run_dir: Path, command: Sequence[str]) -> int:
    """Run ``command`` as the run's job, recording running and then its exit code."""
    sys.stdin.buffer.read()  # EOF once the launcher has written the queued record
    record = _read_record(run_dir)
    if record is None:
        print(f"no {RECORD} in {run_dir}: the launcher failed; not starting", file=sys.stderr)
        return 1
    # A no-op handler, not SIG_IGN: exec resets handlers (the job still dies of SIGTERM) but
    # would inherit an ignore; the watcher lives on to record how the job ended.
    signal.signal(signal.SIGTERM, lambda *_: None)
    record = {**record, "state": RunState.RUNNING.value, "pid": os.getpid(), "started": rfc3339()}
    _write_record(run_dir, record)
    try:
        code = subprocess.call(list(command), stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"cannot run {command[0]}: {exc}", file=sys.stderr)
        code = 127
    state = RunState.SUCCEEDED if code == 0 else RunState.FAILED
    _write_record(run_dir, {**record, "state": state.value, "exit_code": code, "ended": rfc3339()})
    return code


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m salesmesh.backends.local RUN_DIR -- COMMAND...")
    sys.exit(watch(Path(sys.argv[1]), sys.argv[3:]))
