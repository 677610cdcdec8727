"""Latency and idle cost of the local mesh (`salesmesh up`), against the targets of issue 3.

    .venv/bin/python bench/mesh.py [--repeats 3] [--uploads 5] [--events 200] [--json PATH]

1. ``salesmesh up`` ready time: wall time from starting ``python -m salesmesh.cli up --root
   <repo>`` (fresh ``SALESMESH_STATE_DIR`` each time) until ``<state_dir>/mesh.json`` exists,
   polled every 10 ms; then SIGINT and the time until the process has exited, and whether any
   process of its tree outlived it. Target: ready <= 10 s.
2. Upload -> training started, on a fresh ``salesmesh up``: small sample CSVs (1 store x 2
   products x 120 days, a different seed each) uploaded one after another *in this process*
   with google-cloud-storage against the emulator named in mesh.json (so the ``salesmesh
   upload`` interpreter start is not counted; one CLI upload is timed separately for context).
   From the start of the upload until ``runs/<run_id>/run.json`` exists (the run is launched,
   state ``queued``), and until the record says ``running`` (the job's watcher has started);
   both polled every 10 ms and also read from the record's own ``created``/``started`` stamps.
   Each run is left to finish before the next upload, so training never competes with the
   next measurement. Target: <= 2 s. Also the idle CPU of the ``up`` process tree.
3. Delivery overhead per event, on an in-process :class:`salesmesh.local.mesh.Mesh` whose one
   trigger is a throwaway functions-framework function that returns at once: objects created in
   the data bucket one at a time (each waits for its delivery to be acknowledged) and then as
   one burst. Per event: ``Attempt.since_event`` as the mesh records it, and instrumented
   (``time.monotonic`` is system-wide on Linux, so the function process stamps its handler on
   the same clock): from the emulator queueing the finalize until the POST's answer, minus the
   handler's own time. Target: <= 50 ms (judged on the paced p95). Also the idle CPU of the
   mesh process and of the function server over 5 s.

Tables go to stdout, progress to stderr; ``--json`` writes every figure and raw sample.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from operator import contains
from pathlib import Path
from typing import Any

from machine import report_footer, report_header

ROOT = Path(__file__).resolve().parent.parent

UP_READY_TARGET_S = 10.0
TRAINING_STARTED_TARGET_S = 2.0
OVERHEAD_TARGET_MS = 50.0
IDLE_CPU_TARGET_PCT = 1.0  # "~0 %": below 1 % of one core

POLL_S = 0.010  # how often files are polled for
IDLE_S = 5.0  # the idle CPU window
READY_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

NOOP_FUNCTION = "bench_noop"
NOOP_SOURCE = textwrap.dedent(
    """
    import json, os, time
    import functions_framework

    SEEN = os.environ["SALESMESH_BENCH_SEEN"]

    @functions_framework.cloud_event
    def bench_noop(event):
        entered = time.monotonic()
        name = event.data.get("name")
        left = time.monotonic()
        with open(SEEN, "a") as out:
            out.write(json.dumps({"id": event["id"], "name": name,
                                  "entered": entered, "left": left}) + "\\n")
    """
)


# --------------------------------------------------------------------------------------------
# small helpers


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, median, p95 (nearest rank) and max of ``values``; None where there are none."""
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    rank = max(1, -(-95 * len(ordered) // 100))  # ceil(0.95 n), the nearest-rank percentile
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p95": ordered[rank - 1],
        "max": ordered[-1],
    }


def fmt(value: float | int | None, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value * scale:.{digits}f}{unit}"


def verdict(value: float | int | None, limit: float) -> str:
    return "n/a" if value is None else ("PASS" if value <= limit else "MISS")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A pipe table; every column after the first is right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * widths[0], *("-" * (w - 1) + ":" for w in widths[1:])]
    return "\n".join([line(headers), "| " + " | ".join(rule) + " |", *(line(r) for r in rows)])


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of ``2026-11-03T10:15:42.123Z``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()``'s first truthy result, polled every ``POLL_S``; TimeoutError after."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)
    return result


# --------------------------------------------------------------------------------------------
# machine information and process CPU


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is the state), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """True for a process that exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (found through the parent pid in /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far (0 if it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def idle_cpu_percent(pids: Sequence[int], seconds: float = IDLE_S) -> dict[int, float]:
    """Per-pid CPU use, in % of one core, over ``seconds`` of doing nothing here."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    return {pid: 100.0 * (cpu_seconds(pid) - before[pid]) / elapsed for pid in pids}


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# `salesmesh up` as a subprocess


def mesh_env(state_dir: Path) -> dict[str, str]:
    """This environment without SALESMESH_*/STORAGE_* settings, state under ``state_dir``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SALESMESH_", "STORAGE_"))}
    return {**base, "SALESMESH_STATE_DIR": str(state_dir)}


class UpProcess:
    """``python -m salesmesh.cli up --root ROOT``, its output in ``<workdir>/up.log``."""

    def __init__(self, workdir: Path) -> None:
        self.state_dir = workdir / "state"
        self.log_path = workdir / "up.log"
        self.mesh_file = self.state_dir / "mesh.json"
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.started = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "salesmesh.cli", "up", "--root", str(ROOT)],
                env=mesh_env(self.state_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds from Popen until mesh.json exists."""
        assert self.process is not None
        deadline = self.started + timeout
        while not self.mesh_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"salesmesh up exited early:\n{self.output()[-3000:]}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"salesmesh up not ready after {timeout:.0f} s")
            time.sleep(POLL_S)
        return time.perf_counter() - self.started

    def description(self) -> dict[str, Any]:
        description: dict[str, Any] = json.loads(self.mesh_file.read_text())
        return description

    def stop(self, timeout: float = 60.0) -> tuple[float, int | None]:
        """SIGINT (Ctrl-C); seconds until the process exited, and its exit code."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return 0.0, None if process is None else process.returncode
        started = time.perf_counter()
        process.send_signal(signal.SIGINT)
        try:
            code: int | None = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        return time.perf_counter() - started, code

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def reported_ready(self) -> float | None:
        """The ``ready in X s`` figure `salesmesh up` printed itself (after its imports)."""
        found = re.search(r"ready in ([0-9.]+) s", self.output())
        return float(found.group(1)) if found else None


@contextmanager
def running_up(workdir: Path) -> Iterator[UpProcess]:
    """An `up` process that is stopped (SIGINT, then SIGKILL) however the block ends."""
    up = UpProcess(workdir)
    up.start()
    try:
        yield up
    finally:
        up.stop()


def bench_up(repeats: int) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="salesmesh-bench-up-") as tmp:
            with running_up(Path(tmp)) as up:
                ready = up.wait_ready()
                assert up.process is not None
                tree = process_tree(up.process.pid)
                stop_s, code = up.stop()
            leftovers = [pid for pid in tree if alive(pid)]
            sample = {
                "ready_s": ready,
                "ready_reported_by_up_s": up.reported_ready(),
                "stop_s": stop_s,
                "exit_code": code,
                "processes": len(tree),
                "leftover_pids": leftovers,
                "printed_stopped": "stopped" in up.output().splitlines()[-1:],
                "mesh_json_removed": not up.mesh_file.exists(),
            }
        samples.append(sample)
        say(
            f"up #{i + 1}: ready {ready:.2f} s (up says {sample['ready_reported_by_up_s']} s), "
            f"stop {stop_s:.2f} s, exit {code}, {len(tree)} processes, leftovers {leftovers}"
        )
    return {
        "samples": samples,
        "ready_s": summarize([s["ready_s"] for s in samples]),
        "stop_s": summarize([s["stop_s"] for s in samples]),
    }


# --------------------------------------------------------------------------------------------
# upload -> training started


def _record(runs_dir: Path, run: str) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads((runs_dir / run / "run.json").read_text())
    except (OSError, ValueError):  # not yet, or (never, it is replaced atomically) half-written
        return None
    return record


def _started(runs_dir: Path, run: str) -> dict[str, Any] | None:
    """The record once the job's watcher has marked it running (or finished)."""
    record = _record(runs_dir, run)
    return record if record is not None and record["state"] != "queued" else None


def _finished(runs_dir: Path, run: str) -> dict[str, Any] | None:
    record = _record(runs_dir, run)
    return record if record is not None and record["state"] in ("succeeded", "failed") else None


def bench_upload(uploads: int) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from salesmesh.events import StorageObject, run_id
    from salesmesh.sample import write_sample
    from salesmesh.settings import Settings

    settings = Settings()
    samples: list[dict[str, Any]] = []
    result: dict[str, Any] = {"samples": samples}
    with (
        tempfile.TemporaryDirectory(prefix="salesmesh-bench-upload-") as tmp,
        running_up(Path(tmp)) as up,
    ):
        up.wait_ready()
        assert up.process is not None
        runs_dir = up.state_dir / "runs"
        host = up.description()["storage_emulator_host"]
        time.sleep(1.0)  # let start-up settle before calling it idle
        tree = process_tree(up.process.pid)
        idle = idle_cpu_percent(tree)
        result["idle_cpu_pct"] = {"total": sum(idle.values()), "per_pid": idle}
        say(f"idle `salesmesh up` tree ({len(tree)} processes): {sum(idle.values()):.2f} % CPU")

        client = storage.Client(
            project=settings.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": host},
        )
        bucket = client.bucket(settings.data_bucket)
        for i in range(uploads):
            path = Path(tmp) / f"sales_{i}.csv"
            write_sample(path, stores=1, products=2, days=120, seed=i)
            blob = bucket.blob(f"{settings.upload_prefix}bench_sales_{i}.csv")
            wall0, t0 = time.time(), time.perf_counter()
            blob.upload_from_filename(str(path), content_type="text/csv")
            uploaded = time.perf_counter() - t0
            run = run_id(StorageObject(bucket.name, blob.name, str(blob.generation)))
            wait_until(partial(_record, runs_dir, run), 60, f"run {run}")
            recorded = time.perf_counter() - t0
            wait_until(partial(_started, runs_dir, run), 60, f"run {run} to start")
            running = time.perf_counter() - t0
            final = wait_until(partial(_finished, runs_dir, run), RUN_TIMEOUT_S, f"{run} to end")
            sample = {
                "object": blob.name,
                "bytes": path.stat().st_size,
                "upload_s": uploaded,
                "record_s": recorded,
                "running_s": running,
                "record_stamp_s": parse_rfc3339(final["created"]) - wall0,
                "running_stamp_s": parse_rfc3339(final["started"]) - wall0,
                "final_state": final["state"],
                "training_s": parse_rfc3339(final["ended"]) - parse_rfc3339(final["started"]),
            }
            samples.append(sample)
            say(
                f"upload #{i + 1}: upload {uploaded * 1000:.0f} ms, record {recorded:.3f} s, "
                f"running {running:.3f} s; run {final['state']} after "
                f"{sample['training_s']:.1f} s of training"
            )
        result["cli_upload"] = cli_upload(up, Path(tmp), runs_dir)
        tree_at_end = process_tree(up.process.pid)
    stray = [pid for pid in tree_at_end if alive(pid)]
    result["leftover_pids"] = stray
    for key in ("upload_s", "record_s", "running_s", "record_stamp_s", "running_stamp_s"):
        result[key] = summarize([s[key] for s in samples])
    return result


def cli_upload(up: UpProcess, tmp: Path, runs_dir: Path) -> dict[str, Any]:
    """One ``salesmesh upload`` through the CLI: its wall time and until the run record."""
    from salesmesh.events import StorageObject, run_id
    from salesmesh.sample import write_sample

    path = tmp / "sales_cli.csv"
    write_sample(path, stores=1, products=2, days=120, seed=99)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "salesmesh.cli", "upload", str(path)],
        env=mesh_env(up.state_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    cli_s = time.perf_counter() - t0
    found = re.search(r"uploaded gs://([^/]+)/(\S+) \(generation (\d+)", done.stdout)
    if done.returncode != 0 or found is None:
        return {"error": (done.stdout + done.stderr)[-2000:], "cli_s": cli_s}
    run = run_id(StorageObject(found.group(1), found.group(2), found.group(3)))
    # the record usually exists before the CLI has even exited (it reloads the blob, exits)
    wait_until(partial(_record, runs_dir, run), 60, f"run {run}")
    record_s = time.perf_counter() - t0
    final = wait_until(partial(_finished, runs_dir, run), RUN_TIMEOUT_S, f"{run} to end")
    say(f"CLI upload: process {cli_s:.2f} s, record after {record_s:.2f} s ({final['state']})")
    return {"cli_s": cli_s, "record_s": record_s, "final_state": final["state"]}


# --------------------------------------------------------------------------------------------
# delivery overhead on an in-process Mesh


@dataclass
class Probe:
    """Monotonic stamps per object name: emulator queued it, POST started, POST answered."""

    queued: dict[str, float]
    posts: dict[str, tuple[float, float, float, str]]  # event created, start, end, event id
    answered: threading.Condition

    @classmethod
    def new(cls) -> Probe:
        return cls({}, {}, threading.Condition())


@contextmanager
def instrumented(events: queue.Queue[dict[str, Any]], probe: Probe) -> Iterator[None]:
    """Stamp the emulator's ``events.put`` and the delivery loop's ``post`` on the way through.

    Both are looked up at call time (an instance attribute on the queue; a module global in
    ``salesmesh.local.delivery``), so wrapping them here changes nothing else.
    """
    import salesmesh.local.delivery as delivery_module
    from salesmesh.local import binary
    from salesmesh.local.binary import Event

    original_put = events.put
    original_post = binary.post  # what salesmesh.local.delivery imported

    def put(item: dict[str, Any], block: bool = True, timeout: float | None = None) -> None:
        if item:
            probe.queued[str(item["name"])] = time.monotonic()
        original_put(item, block, timeout)

    def post(url: str, event: Event, timeout: float) -> tuple[int | None, str, str]:
        start = time.monotonic()
        answer = original_post(url, event, timeout)
        end = time.monotonic()
        with probe.answered:
            probe.posts[str(event.data["name"])] = (event.created, start, end, event.id)
            probe.answered.notify_all()
        return answer

    events.put = put  # type: ignore[method-assign]
    delivery_module.post = post  # type: ignore[attr-defined]
    try:
        yield
    finally:
        events.put = original_put  # type: ignore[method-assign]
        delivery_module.post = original_post  # type: ignore[attr-defined]


def bench_delivery(count: int) -> dict[str, Any]:
    from salesmesh.local.mesh import Mesh
    from salesmesh.settings import Settings
    from salesmesh.wiring import STORAGE_FINALIZED, Retry, Trigger

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="salesmesh-bench-delivery-") as tmp:
        root = Path(tmp) / "root"
        source = root / "functions" / NOOP_FUNCTION / "main.py"
        source.parent.mkdir(parents=True)
        source.write_text(NOOP_SOURCE)
        seen_path = Path(tmp) / "seen.jsonl"
        settings = Settings(state_dir=Path(tmp) / "state")
        trigger = Trigger(NOOP_FUNCTION, NOOP_FUNCTION, STORAGE_FINALIZED, "data", Retry(3, 1, 4))
        os.environ["SALESMESH_BENCH_SEEN"] = str(seen_path)  # inherited by the function server
        probe = Probe.new()
        try:
            mesh = Mesh(settings, root, triggers=[trigger])
            with mesh, instrumented(mesh.emulator.events, probe):
                assert mesh.delivery is not None
                bucket = mesh.storage_client().bucket(settings.data_bucket)
                bucket.blob("bench/warm-up").upload_from_string(b"x")  # first connection
                with probe.answered:
                    probe.answered.wait_for(lambda: "bench/warm-up" in probe.posts, 30)

                paced = [f"bench/paced-{i:04d}" for i in range(count)]
                for name in paced:
                    bucket.blob(name).upload_from_string(b"x", content_type="text/plain")
                    with probe.answered:
                        if not probe.answered.wait_for(partial(contains, probe.posts, name), 30):
                            raise TimeoutError(f"no delivery of {name} in 30 s")
                say(f"paced: {count} events delivered one at a time")

                burst = [f"bench/burst-{i:04d}" for i in range(count)]
                t0 = time.monotonic()
                for name in burst:
                    bucket.blob(name).upload_from_string(b"x", content_type="text/plain")
                created_s = time.monotonic() - t0
                with probe.answered:
                    if not probe.answered.wait_for(
                        lambda: all(n in probe.posts for n in burst), 60
                    ):
                        raise TimeoutError("the burst was not delivered in 60 s")
                burst_s = time.monotonic() - t0
                say(f"burst: {count} created in {created_s:.2f} s, delivered in {burst_s:.2f} s")

                attempts = list(mesh.delivery.attempts)
                time.sleep(1.0)  # let the last answers and log lines settle
                server = mesh.servers[NOOP_FUNCTION].process
                assert server is not None
                function_tree = process_tree(server.pid)
                before = self_cpu_seconds()
                started = time.monotonic()
                function_idle = idle_cpu_percent(function_tree)
                mesh_idle = 100.0 * (self_cpu_seconds() - before) / (time.monotonic() - started)
                say(
                    f"idle: mesh process {mesh_idle:.2f} % CPU, function server "
                    f"{sum(function_idle.values()):.2f} %"
                )
        finally:
            os.environ.pop("SALESMESH_BENCH_SEEN", None)
        handled = {
            line["name"]: line for line in map(json.loads, seen_path.read_text().splitlines())
        }

    def per_event(names: Sequence[str]) -> dict[str, Any]:
        total, handler, overhead, queue_wait, post_s = [], [], [], [], []
        for name in names:
            created, start, end, _id = probe.posts[name]
            queued = probe.queued[name]
            run = handled[name]["left"] - handled[name]["entered"] if name in handled else 0.0
            total.append(end - queued)
            handler.append(run)
            overhead.append(end - queued - run)
            queue_wait.append(created - queued)
            post_s.append(end - start)
        return {
            "event_to_ack_s": summarize(total),
            "handler_s": summarize(handler),
            "overhead_s": summarize(overhead),
            "queue_to_intake_s": summarize(queue_wait),
            "post_s": summarize(post_s),
        }

    def since_event(names: Sequence[str]) -> dict[str, float | int | None]:
        # an Attempt names its event, not the object: join through the event id
        ids = {probe.posts[name][3] for name in names}
        return summarize([a.since_event for a in attempts if a.event_id in ids])

    result["paced"] = per_event(paced)
    result["burst"] = per_event(burst)
    result["paced"]["attempt_since_event_s"] = since_event(paced)
    result["burst"]["attempt_since_event_s"] = since_event(burst)
    result["burst"]["create_s"] = created_s
    result["burst"]["delivered_s"] = burst_s
    result["attempts"] = len(attempts)
    result["non_2xx"] = sum(1 for a in attempts if a.status is None or not 200 <= a.status < 300)
    result["missing_handler_stamps"] = sum(1 for n in probe.posts if n not in handled)
    result["idle_cpu_pct"] = {
        "mesh_process": mesh_idle,
        "function_server": sum(function_idle.values()),
        "function_pids": function_idle,
    }
    return result


# --------------------------------------------------------------------------------------------
# report


def render(report: Mapping[str, Any]) -> str:
    up, upload, delivery = report["up"], report["upload"], report["delivery"]
    target = f"<= {UP_READY_TARGET_S:.0f} s"
    started_target = f"<= {TRAINING_STARTED_TARGET_S:.0f} s"
    ms = f"<= {OVERHEAD_TARGET_MS:.0f} ms"
    idle = f"<= {IDLE_CPU_TARGET_PCT:.0f} %"
    paced = delivery["paced"]
    idle_up = upload["idle_cpu_pct"]["total"]
    idle_mesh = delivery["idle_cpu_pct"]["mesh_process"]
    idle_fn = delivery["idle_cpu_pct"]["function_server"]
    n_up, n_upload = up["ready_s"]["n"], upload["record_s"]["n"]
    rows = [
        [
            f"`salesmesh up` ready (mesh.json), n={n_up}",
            fmt(up["ready_s"]["median"], unit=" s"),
            "",
            fmt(up["ready_s"]["max"], unit=" s"),
            target,
            verdict(up["ready_s"]["max"], UP_READY_TARGET_S) + " (max)",
        ],
        [
            f"`salesmesh up` stop after SIGINT, n={n_up}",
            fmt(up["stop_s"]["median"], unit=" s"),
            "",
            fmt(up["stop_s"]["max"], unit=" s"),
            "none",
            "info",
        ],
        [
            f"upload -> run record (queued), n={n_upload}",
            fmt(upload["record_s"]["median"], unit=" s", digits=3),
            "",
            fmt(upload["record_s"]["max"], unit=" s", digits=3),
            started_target,
            verdict(upload["record_s"]["max"], TRAINING_STARTED_TARGET_S) + " (max)",
        ],
        [
            f"upload -> run running, n={n_upload}",
            fmt(upload["running_s"]["median"], unit=" s", digits=3),
            "",
            fmt(upload["running_s"]["max"], unit=" s", digits=3),
            started_target,
            verdict(upload["running_s"]["max"], TRAINING_STARTED_TARGET_S) + " (max)",
        ],
        [
            f"delivery overhead per event, paced, n={paced['overhead_s']['n']}",
            fmt(paced["overhead_s"]["median"], 1000, 1, " ms"),
            fmt(paced["overhead_s"]["p95"], 1000, 1, " ms"),
            fmt(paced["overhead_s"]["max"], 1000, 1, " ms"),
            ms,
            verdict(paced["overhead_s"]["p95"], OVERHEAD_TARGET_MS / 1000) + " (p95)",
        ],
        [
            "idle CPU, `salesmesh up` process tree (% of a core)",
            fmt(idle_up, unit=" %"),
            "",
            "",
            idle,
            verdict(idle_up, IDLE_CPU_TARGET_PCT),
        ],
        [
            "idle CPU, in-process Mesh + function server",
            fmt(idle_mesh + idle_fn, unit=" %"),
            "",
            "",
            idle,
            verdict(idle_mesh + idle_fn, IDLE_CPU_TARGET_PCT),
        ],
    ]
    out = [
        "## Targets (issue 3)\n",
        markdown_table(["measure", "median", "p95", "max", "target", "verdict"], rows),
        "",
        "## `salesmesh up` start and stop\n",
        markdown_table(
            ["run", "ready", "up's own 'ready in'", "stop (SIGINT)", "exit", "processes", "left"],
            [
                [
                    f"#{i + 1}",
                    fmt(s["ready_s"], unit=" s"),
                    fmt(s["ready_reported_by_up_s"], digits=1, unit=" s"),
                    fmt(s["stop_s"], unit=" s"),
                    str(s["exit_code"]),
                    str(s["processes"]),
                    str(len(s["leftover_pids"])),
                ]
                for i, s in enumerate(up["samples"])
            ],
        ),
        "",
        f"stop time: median {fmt(up['stop_s']['median'], unit=' s')}, "
        f"max {fmt(up['stop_s']['max'], unit=' s')}. `ready` is wall time from Popen "
        "(interpreter start and imports included); `up's own` is what it printed (from its "
        "Mesh start, after imports). `left`: processes of its tree alive after it exited.",
        "",
        "## Upload -> training started\n",
        "Uploads made in this process with google-cloud-storage against the emulator from "
        "mesh.json (`salesmesh upload`'s interpreter start not counted); 1 store x 2 products "
        "x 120 days per file; each run finished before the next upload.\n",
        markdown_table(
            [
                "object",
                "bytes",
                "upload",
                "record seen",
                "record 'created'",
                "running seen",
                "'started'",
                "run",
            ],
            [
                [
                    s["object"],
                    f"{s['bytes']:,}",
                    fmt(s["upload_s"], 1000, 0, " ms"),
                    fmt(s["record_s"], unit=" s", digits=3),
                    fmt(s["record_stamp_s"], unit=" s", digits=3),
                    fmt(s["running_s"], unit=" s", digits=3),
                    fmt(s["running_stamp_s"], unit=" s", digits=3),
                    f"{s['final_state']} ({s['training_s']:.1f} s)",
                ]
                for s in upload["samples"]
            ],
        ),
        "",
        "`seen` = polled every 10 ms from the start of the upload; `'created'`/`'started'` = "
        "the run record's own millisecond stamps (wall clock) minus the upload start.",
    ]
    cli = upload.get("cli_upload", {})
    if "error" in cli:
        out.append(f"\nCLI upload failed: {cli['error']}")
    elif cli:
        out.append(
            f"\nFor context, one `salesmesh upload FILE` through the CLI (interpreter start "
            f"included): the process took {cli['cli_s']:.2f} s; the run record, first looked "
            f"for once it had exited, was there {cli['record_s']:.2f} s after its start "
            f"({cli['final_state']})."
        )
    out += [
        "",
        "## Delivery per event (in-process Mesh, no-op function)\n",
        markdown_table(
            ["measure", "paced median", "paced p95", "paced max", "burst median", "burst p95"],
            [
                [
                    label,
                    *(fmt(delivery["paced"][key][s], 1000, 2, " ms") for s in ("median", "p95")),
                    fmt(delivery["paced"][key]["max"], 1000, 2, " ms"),
                    *(fmt(delivery["burst"][key][s], 1000, 2, " ms") for s in ("median", "p95")),
                ]
                for label, key in (
                    ("emulator queued -> POST answered", "event_to_ack_s"),
                    ("  minus handler = overhead", "overhead_s"),
                    ("  of which queue -> intake", "queue_to_intake_s"),
                    ("  of which the POST", "post_s"),
                    ("handler's own time", "handler_s"),
                    ("`Attempt.since_event` (mesh's own)", "attempt_since_event_s"),
                )
            ],
        ),
        "",
        f"paced: each object created after the previous delivery was answered; burst: "
        f"{delivery['burst']['attempt_since_event_s']['n']} objects created back to back in "
        f"{delivery['burst']['create_s']:.2f} s, all answered after "
        f"{delivery['burst']['delivered_s']:.2f} s. The uploading client runs in the mesh's "
        f"process (it shares the GIL with emulator and delivery threads). Attempts: "
        f"{delivery['attempts']}, non-2xx: {delivery['non_2xx']}. Idle over {IDLE_S:.0f} s: "
        f"mesh process {idle_mesh:.2f} %, function server {idle_fn:.2f} % of one core.",
        "",
        f"Idle CPU of other processes (the `up` tree, the function server) comes from "
        f"/proc/PID/stat in ticks of {1000 / CLK_TCK:.0f} ms: over {IDLE_S:.0f} s one tick is "
        f"{100 / CLK_TCK / IDLE_S:.1f} % of a core, so 0.00 % there means not one tick; the "
        "in-process mesh's own figure is getrusage(RUSAGE_SELF), finer grained.",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="`salesmesh up` starts (3)")
    parser.add_argument("--uploads", type=int, default=5, help="sample uploads (5)")
    parser.add_argument("--events", type=int, default=200, help="objects per delivery run (200)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)

    report = report_header(
        "salesmesh local mesh benchmark",
        ("salesmesh", "functions-framework", "gcp-storage-emulator", "google-cloud-storage"),
        args,
    )

    say(f"`salesmesh up` x {args.repeats}")
    report["up"] = bench_up(args.repeats)
    say(f"{args.uploads} uploads -> training")
    report["upload"] = bench_upload(args.uploads)
    say(f"delivery of {args.events} + {args.events} events")
    report["delivery"] = bench_delivery(args.events)
    report_footer(report, render(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
