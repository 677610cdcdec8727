"""The latency fault switch: the router holds a version's requests inside the measured latency,
switched on and off at run time by `salesmesh fault`, and refused on the gcp backend."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from upstreams import Upstream

from salesmesh import cli
from salesmesh.backends.local_endpoint import RECORD, endpoint_dir, write_json
from salesmesh.local import latency_fault
from salesmesh.local.router import Router, RouterServer

NAME = "salesmesh"
MODELS = {"1000000001": "1", "1000000002": "2"}  # deployed model id -> its version


@pytest.fixture
def router(tmp_path: Path) -> Iterator[RouterServer]:
    """A router over two fake prediction servers, versions 1 and 2, half the traffic each."""
    upstreams = {model_id: Upstream(model_id) for model_id in MODELS}
    models = [
        {"id": i, "version_id": v, "port": upstreams[i].port, "predict_route": "/predict"}
        for i, v in MODELS.items()
    ]
    folder = endpoint_dir(tmp_path, NAME)
    folder.mkdir(parents=True)
    split = dict.fromkeys(MODELS, 50)
    write_json(folder / RECORD, {"deployed_models": models, "traffic": split, "next_id": 3})
    server = RouterServer(Router(tmp_path, NAME, window=60.0)).start()
    yield server
    server.stop()
    for upstream in upstreams.values():
        upstream.stop()


class Client:
    """One keep-alive connection to the router."""

    def __init__(self, url: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]))

    def post(self, instance: dict[str, str]) -> tuple[int, dict[str, str]]:
        body = json.dumps({"instances": [instance]})
        path = f"/v1/endpoints/{NAME}:predict"
        self.connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        self.connection.request("GET", f"/v1/endpoints/{NAME}/stats")
        response = self.connection.getresponse()
        assert response.status == 200
        return dict(json.loads(response.read()))


def _timed(client: Client, count: int) -> dict[str, list[float]]:
    """Seconds each of ``count`` requests took, by the deployed model that answered."""
    took: dict[str, list[float]] = {model_id: [] for model_id in MODELS}
    for _ in range(count):
        started = time.monotonic()
        status, body = client.post({"store_id": "S01"})
        assert status == 200, body
        took[body["deployedModelId"]].append(time.monotonic() - started)
    return took


def test_the_switch_slows_one_version_in_requests_and_stats_until_cleared(
    router: RouterServer, tmp_path: Path
) -> None:
    """300 ms on version 2: its requests and its p99 take 300 ms more, version 1's do not;
    cleared, version 2 is fast again, with no restart."""
    client = Client(router.url)
    latency_fault.set_latency(tmp_path, "2", 300)
    slowed = _timed(client, 12)
    assert slowed["1000000002"] and slowed["1000000001"], slowed  # both took traffic
    assert min(slowed["1000000002"]) >= 0.3
    assert max(slowed["1000000001"]) < 0.2
    models = client.stats()["deployed_models"]
    assert models["1000000002"]["window"]["p50_ms"] >= 300
    assert models["1000000001"]["window"]["max_ms"] < 200

    assert latency_fault.clear(tmp_path) == {}
    assert not latency_fault.path(tmp_path).exists()
    fast = _timed(client, 12)
    assert fast["1000000002"] and max(fast["1000000002"]) < 0.2, fast


def test_a_damaged_switch_is_ignored_by_the_router(router: RouterServer, tmp_path: Path) -> None:
    """A faults.json that is not the switch's own means no fault, never a failed request."""
    latency_fault.path(tmp_path).write_text("[not, json")
    took = _timed(Client(router.url), 6)
    assert max(t for times in took.values() for t in times) < 0.2


def _fault(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["fault", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_switches_the_fault_on_shows_and_clears_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fault latency` writes faults.json, `show` reads it, `clear --version` removes one."""
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("SALESMESH_BACKEND", raising=False)
    folder = endpoint_dir(tmp_path, NAME)
    folder.mkdir(parents=True)
    model = {"id": "1000000002", "version_id": "2", "created": "2026-12-01T00:00:00.000Z"}
    write_json(folder / RECORD, {"deployed_models": [model], "traffic": {"1000000002": 100}})

    code, out, _ = _fault(capsys, "latency", "--version", "2", "--ms", "700", "--json")
    assert code == 0
    assert json.loads(out) == {
        "latency_ms": {"2": 700.0},
        "deployed_models": {"2": ["1000000002"]},
    }
    assert _fault(capsys, "latency", "--version", "3", "--ms", "50")[0] == 0
    assert latency_fault.latencies(tmp_path) == {"2": 700.0, "3": 50.0}
    code, out, _ = _fault(capsys, "show")
    assert out.splitlines() == [
        "version 2: +700 ms per request (deployed models: 1000000002)",
        "version 3: +50 ms per request (deployed models: none deployed now; applies once one is)",
    ]
    assert _fault(capsys, "clear", "--version", "2")[0] == 0
    assert latency_fault.latencies(tmp_path) == {"3": 50.0}
    code, out, _ = _fault(capsys, "clear")
    assert (code, out.strip()) == (0, "no fault injected: every version answers at its own speed")
    assert not latency_fault.path(tmp_path).exists()


@pytest.mark.parametrize("ms", ["0", "-5", "60001"])
def test_an_impossible_latency_is_refused(
    ms: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No latency above 0 and up to 60 s: exit 1 with the allowed range, nothing written."""
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("SALESMESH_BACKEND", raising=False)
    code, _, err = _fault(capsys, "latency", "--version", "2", "--ms", ms)
    assert code == 1 and "above 0 and at most 60000 ms" in err
    assert not latency_fault.path(tmp_path).exists()


def test_the_gcp_backend_refuses_the_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On SALESMESH_BACKEND=gcp the command refuses, naming why, and writes nothing."""
    monkeypatch.setenv("SALESMESH_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SALESMESH_BACKEND", "gcp")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "acme-forecasts")
    code, _, err = _fault(capsys, "latency", "--version", "2", "--ms", "700")
    assert code == 1
    assert "fault injection exists in the local mesh only" in err
    assert not latency_fault.path(tmp_path).exists()
