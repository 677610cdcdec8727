"""The mesh's lifecycle commands: ``salesmesh up [--detach]`` and ``salesmesh down``.

A running mesh records itself in ``<state_dir>/mesh.json`` (pid, emulator host, function URLs,
and under ``pubsub`` which Pub/Sub runs and where to publish to it:
:meth:`salesmesh.local.mesh_pubsub.MeshPubSub.describe`); ``down`` and the other commands find
it there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from salesmesh import runtime
from salesmesh.local.binary import post, retrain_event
from salesmesh.local.mesh import Mesh
from salesmesh.settings import Settings


def up(root: str, detach: bool = False, retrain_every: float | None = None) -> int:
    """Run the mesh in the foreground until Ctrl-C or SIGTERM (or in the background); with
    ``retrain_every`` seconds, post a scheduled retrain to train_trigger that often."""
    settings = Settings.from_env()
    if detach:
        return _detach(settings, root, retrain_every)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    started = time.perf_counter()
    mesh_file = settings.state_dir / runtime.MESH_FILE
    with Mesh(settings, Path(root)) as mesh:
        functions = {name: server.url for name, server in mesh.servers.items()}
        runtime.write_mesh_file(
            settings,
            {
                "pid": os.getpid(),
                "storage_emulator_host": mesh.emulator.host,
                "pubsub_emulator_host": mesh.pubsub.describe()["emulator_host"],
                "pubsub": mesh.pubsub.describe(),
                "functions": functions,
                "function_pids": {
                    name: server.process.pid
                    for name, server in mesh.servers.items()
                    if server.process is not None
                },
                "endpoint_url": mesh.router.url if mesh.router else None,
                "state_dir": str(settings.state_dir.resolve()),
            },
        )
        print(f"salesmesh mesh ready in {time.perf_counter() - started:.1f} s")
        print(
            f"  storage emulator  {mesh.emulator.host}  (buckets {settings.data_bucket}, "
            f"{settings.model_bucket}, {settings.state_bucket})"
        )
        print(f"  pubsub: {mesh.pubsub.summary()}, topic {settings.alerts_topic}")
        if mesh.router is not None:
            print(f"  {'endpoint':<17} {mesh.router.url}  ({len(mesh.restored)} model(s) restored)")
        if mesh.restore_failures:
            print(f"WARNING: {mesh.restore_failures}", flush=True)
        for name, url in functions.items():
            print(f"  {name:<17} {url}")
        for name, why in mesh.skipped.items():
            print(f"  {name:<17} not served: {why}")
        if retrain_every:
            every = f"{retrain_every:g} s"
            print(f"  {'retrain':<17} every {every}, on HEAD when no run trained it yet")
            schedule = threading.Thread(
                target=_retrain_schedule,
                args=(mesh.url("train_trigger"), retrain_every, stopping),
                name="retrain-schedule",
                daemon=True,
            )
            schedule.start()
        print("upload with `salesmesh upload FILE`; Ctrl-C stops everything", flush=True)
        try:
            while not stopping.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping the mesh ...", flush=True)
    mesh_file.unlink(missing_ok=True)
    print("stopped")
    return 0


def _retrain_schedule(url: str, every: float, stopping: threading.Event) -> None:
    """What Cloud Scheduler does on Google Cloud: post the retrain event to train_trigger
    every ``every`` seconds (the first after one period), until the mesh stops."""
    while not stopping.wait(every):
        event = retrain_event(project=Settings.from_env().project, location="local")
        status, body, error = post(url, event, timeout=60)
        if status != 200:
            print(f"scheduled retrain not taken: {status or error} {body[:200]}", flush=True)


def _detach(settings: Settings, root: str, retrain_every: float | None = None) -> int:
    """Start ``salesmesh up`` in the background and return once it is ready."""
    mesh_file = settings.state_dir / runtime.MESH_FILE
    if mesh_file.exists():
        print(f"a mesh is already running (see {mesh_file}); `salesmesh down` stops it")
        return 1
    log = settings.state_dir / "logs" / "up.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "salesmesh.cli", "up", "--root", root]
            + (["--retrain-every", f"{round(retrain_every)}s"] if retrain_every else []),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this shell's Ctrl-C; `salesmesh down` stops it
        )
    deadline = time.monotonic() + 60
    while not mesh_file.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            print(f"the mesh did not start; see {log}", file=sys.stderr)
            child.terminate()
            return 1
        time.sleep(0.1)
    print(f"mesh running in the background (pid {child.pid}, log {log}); `salesmesh down` stops it")
    return 0


def down() -> int:
    """Stop a background mesh as Ctrl-C would stop a foreground one."""
    mesh_file = Settings.from_env().state_dir / runtime.MESH_FILE
    try:
        pid = int(json.loads(mesh_file.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        print("no mesh is running (no readable mesh.json)")
        return 0
    try:
        os.kill(pid, signal.SIGINT)  # the same clean stop as Ctrl-C in the foreground
    except ProcessLookupError:
        mesh_file.unlink(missing_ok=True)  # it died without cleaning up
        print(f"the mesh (pid {pid}) was not running; removed its stale {mesh_file.name}")
        return 0
    deadline = time.monotonic() + 30
    while mesh_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if mesh_file.exists():
        print(f"the mesh (pid {pid}) did not stop within 30 s", file=sys.stderr)
        return 1
    print("mesh stopped")
    return 0
