"""Kill ``deploy_model`` in every state of a rollout, restart the mesh: the rollout converges.

Through real processes: `salesmesh up` with ``SALESMESH_FAULTS=crash-at:POINT`` makes the
deploy_model server SIGKILL itself at that point of a step; the mesh is then stopped and started
again without the fault. Each time the new version must end promoted exactly once, with the
split over live, verified models summing to 100, and the ledger's story whole.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mesh_cli import cli, cli_json, start_mesh
from mesh_waits import wait_for
from run_folders import variant

from salesmesh.rollout.faults import POINTS

pytestmark = pytest.mark.slow

EXTRA = {"SALESMESH_CANARY_SECONDS": "0.5"}


def _up(state: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    (state / "mesh.json").unlink(missing_ok=True)
    mesh = start_mesh(state, extra)
    wait_for(lambda: (state / "mesh.json").exists(), 90, "mesh.json")
    return mesh, json.loads((state / "mesh.json").read_text())


def _down(mesh: subprocess.Popen[str]) -> None:
    mesh.send_signal(signal.SIGINT)
    output, _ = mesh.communicate(timeout=60)
    assert mesh.returncode == 0, output


def _publish(info: dict[str, Any], folder: Path, run_id: str) -> None:
    """Put a run folder into the mesh's model bucket as a trainer would, manifest last."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from run_folders import upload_folder

    client = storage.Client(
        project="local",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": info["storage_emulator_host"]},
    )
    upload_folder(client, folder, f"gs://salesmesh-models/runs/{run_id}")


def _settled(state: Path, run_id: str) -> dict[str, Any]:
    """The versions listing once ``run_id``'s version is decided and no rollout is running."""

    def check() -> dict[str, Any] | None:
        listing = cli_json(state, "versions", extra=EXTRA)
        mine = [v for v in listing["versions"] if v["run_id"] == run_id]
        done = mine and mine[0]["state"] in ("deployed", "failed", "gated")
        return listing if done and listing["rollout"] is None else None

    return wait_for(check, 120, f"run {run_id} settled")


def _alive(pid: int) -> bool:
    """Running (a killed child the mesh has not reaped yet is a zombie: not alive)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def test_deploy_model_killed_in_every_state_still_promotes_once(
    tmp_path: Path, model_artifact: Path
) -> None:
    """For each crash point: one promoted version, a split of 100 over live models, and the
    old champion kept warm at 0 %."""
    state = tmp_path / "state"
    mesh, info = _up(state, EXTRA)
    try:
        _publish(info, model_artifact, "r-v1")
        first = _settled(state, "r-v1")
        assert [v["state"] for v in first["versions"]] == ["deployed"]
    finally:
        _down(mesh)

    for i, point in enumerate(POINTS):
        run_id = f"r-{point}"
        mesh, info = _up(state, {**EXTRA, "SALESMESH_FAULTS": f"crash-at:{point}"})
        try:
            pid = info["function_pids"]["deploy_model"]
            _publish(info, variant(model_artifact, tmp_path / point, 0.7 - 0.01 * i), run_id)
            wait_for(lambda: not _alive(pid), 90, f"deploy_model to die at {point}")  # noqa: B023
        finally:
            _down(mesh)
        mesh, info = _up(state, EXTRA)
        try:
            listing = _settled(state, run_id)
            mine = next(v for v in listing["versions"] if v["run_id"] == run_id)
            assert (mine["state"], mine["aliases"], mine["traffic"]) == (
                "deployed",
                ["champion"],
                100,
            ), (point, listing)
            shares = [t["percent"] for t in listing["traffic"]]
            assert sum(shares) == 100 and len(shares) == 2, (point, listing["traffic"])
            standby = [v for v in listing["versions"] if v["aliases"] == ["previous"]]
            assert len(standby) == 1 and standby[0]["traffic"] == 0, point
            served = cli(state, "predict", "--store", "S01", "--product", "P001", "--json")
            assert served.returncode == 0, (point, served.stderr)
            assert json.loads(served.stdout)["deployedModelId"] == mine["deployed_model_id"]
        finally:
            _down(mesh)

    story = cli_json(state, "history", extra=EXTRA)
    finished = [r for r in story["rollouts"] if r["state"] == "done"]
    assert [r["run_id"] for r in finished] == ["r-v1", *(f"r-{p}" for p in POINTS)]
    assert all(sum(h["to"].values()) == 100 for h in story["traffic"]), story["traffic"]
