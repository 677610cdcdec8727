"""Local metrics: real requests through a real router process to real HTTP servers on 127.0.0.1.

The deployed models are tiny stdlib servers registered in ``endpoint.json`` as
:class:`~salesmesh.backends.local_endpoint.LocalEndpoint` registers prediction servers (port and
predict route), which is all the router reads; each answers with the status and after the delay
its instance asks for.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from contract_metrics import CANARY, SLOW_MS, STABLE, MetricsContract
from upstreams import Upstream

from salesmesh.backends import metrics as build_metrics
from salesmesh.backends.local_endpoint import RECORD, endpoint_dir, write_json
from salesmesh.backends.local_metrics import LocalMetrics
from salesmesh.errors import MetricsError
from salesmesh.local.router import RouterProcess

NAME = "salesmesh"


class LocalTraffic:
    """Models behind a real router process; ``serve`` sends them real requests."""

    short_window = 2.0
    long_window = 60.0

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.servers = {model_id: Upstream(model_id) for model_id in (STABLE, CANARY)}
        self.route({STABLE: 100, CANARY: 0})
        self.router = RouterProcess(state_dir, NAME)
        self.router.start()
        self.metrics = LocalMetrics(state_dir, NAME)
        host, port = self.router.url.removeprefix("http://").split(":")
        self.client = http.client.HTTPConnection(host, int(port), timeout=30)

    def route(self, split: dict[str, int]) -> None:
        """Write the endpoint's record as LocalEndpoint does: models, ports and the split."""
        folder = endpoint_dir(self.state_dir, NAME)
        folder.mkdir(parents=True, exist_ok=True)
        models = [
            {"id": i, "port": s.server_address[1], "predict_route": "/predict"}
            for i, s in self.servers.items()
        ]
        write_json(folder / RECORD, {"deployed_models": models, "traffic": split, "next_id": 3})

    def post(self, instance: dict[str, Any]) -> int:
        body = json.dumps({"instances": [instance]})
        self.client.request("POST", f"/v1/endpoints/{NAME}:predict", body)
        response = self.client.getresponse()
        response.read()
        return response.status

    def serve(self, model_id: str, *, fast: int = 0, slow: int = 0, errors: int = 0) -> None:
        self.route({i: 100 if i == model_id else 0 for i in self.servers})
        instances = [{}] * fast + [{"sleep_ms": SLOW_MS}] * slow + [{"status": 500}] * errors
        statuses = [self.post(instance) for instance in instances]
        assert statuses == [200] * (fast + slow) + [500] * errors

    def elapse(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self.client.close()
        self.router.stop()
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def traffic(tmp_path: Path) -> Iterator[LocalTraffic]:
    built = LocalTraffic(tmp_path / "state")
    try:
        yield built
    finally:
        built.close()


class TestLocalMetrics(MetricsContract):
    """The shared contract against the router's measurements."""


def test_rejected_requests_are_not_errors_but_unreachable_models_are(
    traffic: LocalTraffic,
) -> None:
    """A 4xx counts as a request, not an error; a model the router cannot reach is an error."""
    traffic.serve(CANARY, fast=2)
    assert [traffic.post({"status": 400}), traffic.post({"status": 404})] == [400, 404]
    assert traffic.metrics.window(CANARY, 60).requests == 4
    assert traffic.metrics.window(CANARY, 60).errors == 0
    traffic.servers[CANARY].stop()
    assert traffic.post({}) == 503
    seen = traffic.metrics.window(CANARY, 60)
    assert (seen.requests, seen.errors) == (5, 1)


def test_a_window_beyond_the_kept_samples_is_refused(traffic: LocalTraffic) -> None:
    """The router keeps an hour of samples: a longer window is a clear ValueError."""
    assert traffic.metrics.window(CANARY, 3600).requests == 0
    with pytest.raises(ValueError, match="at most 3600 seconds"):
        traffic.metrics.window(CANARY, 3601)


def test_no_router_is_a_metrics_error_saying_to_start_the_mesh(tmp_path: Path) -> None:
    """Without a router nothing measures: MetricsError, never zeros, before and after one ran."""
    state = tmp_path / "state"
    metrics = LocalMetrics(state)
    with pytest.raises(MetricsError, match=r"no router is running .* salesmesh up"):
        metrics.window(CANARY, 60)
    router = RouterProcess(state, NAME)
    router.start()
    assert metrics.window(CANARY, 60).requests == 0
    assert router.process is not None
    os.kill(router.process.pid, signal.SIGKILL)  # dies without removing router.json
    router.process.wait()
    with pytest.raises(MetricsError, match="missing or stale"):
        metrics.window(CANARY, 60)
    router.stop()


def test_factory_builds_it_without_importing_cloud_monitoring(tmp_path: Path) -> None:
    """metrics("local") is LocalMetrics, and local mode never imports the Monitoring SDK."""
    assert isinstance(build_metrics("local", state_dir=tmp_path), LocalMetrics)
    code = (
        "import sys; from pathlib import Path; from salesmesh.backends import metrics\n"
        "m = metrics('local', state_dir=Path(sys.argv[1]))\n"
        "try:\n    m.window('1', 60)\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
        "print(sorted(n for n in sys.modules if n.startswith('google.cloud.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["MetricsError", "[]"]
