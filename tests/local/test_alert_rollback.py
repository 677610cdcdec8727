"""Alert -> rollback through real processes: `salesmesh up` (Pub/Sub, the local monitor, the
router, the function servers), prediction servers, and the `salesmesh` CLI in other processes.

One mesh tells the whole story, to keep the suite short: a slow version raises an incident and
is rolled back; the same incident 20 times, its close and a malformed message change nothing
more; a rollback by hand during a canary aborts the rollout."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mesh_cli import cli, cli_json, start_mesh
from mesh_waits import wait_for
from run_folders import variant
from test_deploy_e2e import _stop, _upload_run

from salesmesh.alerts import policies
from salesmesh.alerts.incident import Incident, State, to_payload

pytestmark = pytest.mark.slow

EXTRA = {
    "SALESMESH_CANARY_SECONDS": "6",  # long enough to roll back by hand while it runs
    "SALESMESH_ALERT_SCALE": "0.05",  # 60 s windows become 3 s
    "SALESMESH_ROLLBACK_COOLDOWN": "0",
}


def _json(state: Path, *args: str) -> dict[str, Any]:
    return cli_json(state, *args, extra=EXTRA)


def _by_version(state: Path) -> dict[str, int]:
    return {t["version_id"]: t["percent"] for t in _json(state, "versions")["traffic"]}


def _states(state: Path) -> dict[str, tuple[str, list[str]]]:
    listing = _json(state, "versions")
    return {v["version_id"]: (v["state"], v["aliases"]) for v in listing["versions"]}


def _settled_at(state: Path, version: str) -> dict[str, Any]:
    """Wait until ``version`` is decided and no rollout runs; the versions listing then."""

    def check() -> dict[str, Any] | None:
        listing = _json(state, "versions")
        found = [v for v in listing["versions"] if v["version_id"] == version]
        final = ("deployed", "gated", "failed", "rolled_back")
        done = found and found[0]["state"] in final and listing["rollout"] is None
        return listing if done else None

    return wait_for(check, 120, f"version {version} settled")


class Traffic:
    """Predictions POSTed to the router from a thread, as clients of the endpoint would."""

    def __init__(self, url: str) -> None:
        self.url = url + "/v1/endpoints/salesmesh:predict"
        self.body = json.dumps(
            {"instances": [{"store_id": "S01", "product_id": "P001", "horizon": 7}]}
        ).encode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(self.url, self.body, method="POST")
            request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read()
            except OSError:
                pass  # a 503 between versions is part of the story, not of this client
            self._stop.wait(0.02)


def _publish(state: Path, payload: bytes, times: int = 1) -> None:
    """Publish into the running mesh's alerts topic from this (another) process."""
    from salesmesh.local.mesh_pubsub import running_topic
    from salesmesh.settings import Settings

    topic = running_topic(dataclasses.replace(Settings(), state_dir=state))
    for _ in range(times):
        topic.publish(payload)


def _log_lines(state: Path, text: str) -> list[dict[str, Any]]:
    lines = (state / "logs" / "mesh.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if text in line]


def test_a_slow_version_is_rolled_back_and_nothing_more_happens_twice(
    tmp_path: Path, model_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow v2 -> incident -> v1 at 100 %, once, whatever is delivered after; by hand during
    v3's canary -> rollout aborted, v1 still at 100 %."""
    state = tmp_path / "state"
    mesh = start_mesh(state, EXTRA)
    try:
        wait_for(lambda: (state / "mesh.json").exists(), 90, "mesh.json")
        info = json.loads((state / "mesh.json").read_text())
        host = info["storage_emulator_host"]
        _upload_run(host, model_artifact, "runs/r-one", monkeypatch)
        _settled_at(state, "1")
        with Traffic(info["endpoint_url"]):
            _upload_run(
                host, variant(model_artifact, tmp_path / "b", 0.80), "runs/r-two", monkeypatch
            )
            _settled_at(state, "2")
            assert _by_version(state) == {"1": 0, "2": 100}

            faulted = cli(state, "fault", "latency", "--version", "2", "--ms", "700", extra=EXTRA)
            assert faulted.returncode == 0, faulted.stderr
            wait_for(lambda: _by_version(state) == {"1": 100} or None, 90, "traffic back on v1")

        # traffic moves first (it is what users feel); the aliases follow in the same handler
        back = {"1": ("deployed", ["champion"]), "2": ("rolled_back", [])}
        wait_for(lambda: _states(state) == back or None, 30, f"versions {back}")
        (opened,) = _json(state, "status")["incidents"]
        assert (opened["action"], opened["version_id"]) == ("rolled_back", "2")
        assert opened["state"] in ("open", "closed")  # the monitor may have closed it already
        story = _json(state, "history")
        assert [(r["from_version"], r["to_version"], r["who"]) for r in story["rollbacks"]] == [
            ("2", "1", "alert_handler")
        ]

        # the same incident delivered 20 times more, then its close, then garbage
        latency = policies.load()[0]
        again = Incident(
            incident_id=opened["incident_id"],
            state=State.OPEN,
            started_at=int(opened["started_at"]),
            policy_name=latency.display_name,
            condition_name=latency.display_name,
            summary="redelivered",
            endpoint_id="salesmesh",
            deployed_model_id=opened["deployed_model_id"],
        )
        _publish(state, to_payload(again, latency), times=20)
        closed = dataclasses.replace(again, state=State.CLOSED, ended_at=again.started_at + 9)
        _publish(state, to_payload(closed, latency))
        _publish(state, b"\x00 not an incident")
        wait_for(
            lambda: _log_lines(state, "malformed alert message") or None, 60, "the malformed one"
        )
        wait_for(
            lambda: _json(state, "status")["incidents"][0]["state"] == "closed" or None,
            60,
            "the close",
        )
        handled = wait_for(
            lambda: (lambda n: n if len(n) >= 20 else None)(_log_lines(state, "handled already")),
            60,
            "20 duplicates",
        )
        assert len(handled) >= 20
        assert len(_json(state, "history")["rollbacks"]) == 1
        assert _by_version(state) == {"1": 100}
        assert _json(state, "status")["dead_letters"] == []  # the malformed one was acked

        # a rollback by hand while v3 is in its canary aborts the rollout
        _upload_run(
            host, variant(model_artifact, tmp_path / "c", 0.79), "runs/r-three", monkeypatch
        )
        wait_for(
            lambda: (_json(state, "versions")["rollout"] or {}).get("state") == "canary" or None,
            60,
            "v3 in its canary",
        )
        undo = cli(state, "rollback", "--reason", "drill", extra=EXTRA)
        assert undo.returncode == 0, undo.stderr
        assert "rollout of version 3 aborted: drill" in undo.stdout
        listing = _settled_at(state, "3")
        assert {t["version_id"]: t["percent"] for t in listing["traffic"]} == {"1": 100}
        assert [v["state"] for v in listing["versions"]] == [
            "deployed",
            "rolled_back",
            "rolled_back",
        ]
        assert _json(state, "history")["rollouts"][-1]["state"] == "aborted"
    finally:
        _stop(mesh, state)
    # the mesh stopped: status still reads the incidents from the state it left
    (kept,) = _json(state, "status")["incidents"]
    assert (kept["incident_id"], kept["action"]) == (opened["incident_id"], "rolled_back")
