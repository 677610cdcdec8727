"""Driving `salesmesh` as a user would, for end-to-end tests (a module with a unique name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def cli_env(state: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without the caller's salesmesh and emulator settings, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SALESMESH_", "STORAGE_"))}
    return {**base, "SALESMESH_STATE_DIR": str(state), **(extra or {})}


def cli(
    state: Path, *args: str, extra: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``salesmesh ARGS`` to completion and return what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "salesmesh.cli", *args],
        env=cli_env(state, extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli_json(state: Path, *args: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``salesmesh ARGS --json``, which must succeed, and return what it printed, parsed."""
    result = cli(state, *args, "--json", extra=extra)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def start_mesh(state: Path, extra: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """``salesmesh up`` in the foreground of a child process; stop it with SIGINT."""
    return subprocess.Popen(
        [sys.executable, "-m", "salesmesh.cli", "up", "--root", str(ROOT)],
        env=cli_env(state, extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def leftover_processes(state: Path) -> list[str]:
    """Processes still running for the mesh whose state folder is ``state``: any whose
    environment or command line names it (functions, the router, prediction servers, the
    trainer all get it). Scoped to one mesh, so meshes of tests running beside it never count."""
    marks = {str(state), str(state.resolve())}
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        named = {f"SALESMESH_STATE_DIR={mark}".encode() for mark in marks}
        if named & set(environ) or any(mark in cmdline for mark in marks):
            found.append(f"{proc.name} {cmdline}")
    return found


def settled_versions(
    state: Path, count: int, extra: Mapping[str, str] | None = None, timeout: float = 120.0
) -> list[dict[str, Any]]:
    """Wait until exactly ``count`` versions exist, each decided, none queued or rolling out;
    return them (``salesmesh versions --json``)."""
    from mesh_waits import wait_for

    final = ("deployed", "standby", "retired", "gated", "failed")

    def check() -> list[dict[str, Any]] | None:
        listing = cli_json(state, "versions", extra=extra)
        versions: list[dict[str, Any]] = listing["versions"]
        done = len(versions) == count and all(v["state"] in final for v in versions)
        idle = listing["rollout"] is None and not listing["queued"]
        return versions if done and idle else None

    found: list[dict[str, Any]] = wait_for(check, timeout, f"{count} settled version(s)")
    return found


def mesh_started(state: Path, monkeypatch: Any, timeout: float = 90.0) -> dict[str, Any]:
    """Wait for a starting mesh's ``mesh.json``; point this process's storage clients at its
    emulator and return what the file says."""
    from mesh_waits import wait_for

    wait_for(lambda: (state / "mesh.json").exists(), timeout, "mesh.json")
    info: dict[str, Any] = json.loads((state / "mesh.json").read_text())
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", info["storage_emulator_host"])
    return info
