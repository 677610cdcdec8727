"""The traffic-splitting router over real stdlib HTTP servers standing in for prediction servers."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_waits import wait_for
from upstreams import Upstream

from salesmesh.backends.local_endpoint import (
    METRICS_FILE,
    RECORD,
    ROUTER_FILE,
    endpoint_dir,
    read_json,
    write_json,
)
from salesmesh.local.router import Router, RouterProcess, RouterServer, RouterStartError
from salesmesh.local.routing import _Samples

NAME = "salesmesh"
PATH = f"/v1/projects/p/locations/europe-west1/endpoints/{NAME}:predict"


@pytest.fixture
def upstreams() -> Iterator[dict[str, Upstream]]:
    servers = {model_id: Upstream(model_id) for model_id in ("101", "102")}
    yield servers
    for server in servers.values():
        server.stop()


def deploy(state_dir: Path, split: dict[str, int], ports: dict[str, int]) -> None:
    """Write endpoint.json as LocalEndpoint does: models with ports, and the split."""
    folder = endpoint_dir(state_dir, NAME)
    folder.mkdir(parents=True, exist_ok=True)
    models = [{"id": i, "port": p, "predict_route": "/predict"} for i, p in ports.items()]
    write_json(folder / RECORD, {"deployed_models": models, "traffic": split, "next_id": 3})


@pytest.fixture
def router(tmp_path: Path) -> Iterator[RouterServer]:
    server = RouterServer(Router(tmp_path, NAME, window=60.0, metrics_interval=0.2)).start()
    yield server
    server.stop()


class Client:
    """One keep-alive connection to the router, as a load generator holds it."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=10)

    def post(self, instance: dict[str, Any], path: str = PATH) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"instances": [instance]})
        self.connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def answered(self, count: int) -> Counter[str]:
        """Which model answered each of ``count`` good requests."""
        seen: Counter[str] = Counter()
        for _ in range(count):
            status, body = self.post({"store_id": "S01"})
            assert status == 200, body
            seen[body["deployedModelId"]] += 1
        return seen


def test_split_is_honoured_and_changes_without_restart(
    router: RouterServer, upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    """80/20 over 500 requests lands near 400/100; a new split applies to the next request."""
    ports = {i: u.port for i, u in upstreams.items()}
    deploy(tmp_path, {"101": 80, "102": 20}, ports)
    client = Client(router.url)
    seen = client.answered(500)
    assert 350 <= seen["101"] <= 450 and seen["101"] + seen["102"] == 500  # 5.6 sigma each way
    deploy(tmp_path, {"101": 0, "102": 100}, ports)
    assert client.answered(100) == {"102": 100}
    deploy(tmp_path, {"101": 100, "102": 0}, ports)
    assert client.answered(100) == {"101": 100}


def test_nothing_deployed_or_server_down_is_503(
    router: RouterServer, upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    """No record, a broken one, or a chosen server that is gone is a 503 naming why."""
    client = Client(router.url)
    status, body = client.post({"store_id": "S01"})
    assert (status, body["error"]) == (503, f"nothing is deployed with traffic on endpoint {NAME}")
    record = endpoint_dir(tmp_path, NAME) / RECORD
    write_json(record, {"deployed_models": [{"id": "101"}], "traffic": {"101": 100}})  # no port
    assert client.post({"store_id": "S01"})[0] == 503
    upstreams["102"].stop()
    deploy(tmp_path, {"101": 0, "102": 100}, {i: u.port for i, u in upstreams.items()})
    status, body = client.post({"store_id": "S01"})
    assert status == 503 and "deployed model 102" in body["error"]
    stats = client.get(f"/v1/endpoints/{NAME}/stats")[1]["deployed_models"]
    assert (stats["102"]["requests"], stats["102"]["errors"]) == (1, 1)
    assert stats["101"]["requests"] == 0


def test_reconnects_once_when_a_server_restarts(router: RouterServer, tmp_path: Path) -> None:
    """A pooled connection the server dropped is replaced and the request still succeeds."""
    first = Upstream("101")
    deploy(tmp_path, {"101": 100}, {"101": first.port})
    client = Client(router.url)
    assert client.answered(3) == {"101": 3}
    first.stop()  # closes the router's idle keep-alive connection
    second = Upstream("101", port=first.port)
    try:
        assert client.answered(3) == {"101": 3}
    finally:
        second.stop()


def test_stats_and_metrics_figures(
    router: RouterServer, upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    """Counts split into ok, errors (5xx) and rejected (4xx); percentiles see a slow server."""
    deploy(tmp_path, {"101": 100, "102": 0}, {i: u.port for i, u in upstreams.items()})
    client = Client(router.url)
    instances = [{}] * 16 + [{"sleep_ms": 300}] * 2 + [{"status": 400}, {"status": 500}]
    statuses = [client.post(instance)[0] for instance in instances]
    assert Counter(statuses) == {200: 18, 400: 1, 500: 1}
    report = client.get(f"/v1/endpoints/{NAME}/stats")[1]
    model = report["deployed_models"]["101"]
    assert (model["requests"], model["errors"], model["rejected"]) == (20, 1, 1)
    window = model["window"]
    assert (window["requests"], window["errors"], window["rejected"]) == (20, 1, 1)
    assert window["p50_ms"] < 100  # ranks 10 of 20: a fast one
    assert 300 <= window["p95_ms"] <= window["p99_ms"] <= window["max_ms"] < 1000
    assert report["window_seconds"] == 60 and report["deployed_models"]["102"]["requests"] == 0

    metrics = endpoint_dir(tmp_path, NAME) / METRICS_FILE

    def newest() -> dict[str, Any] | None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        return json.loads(lines[-1]) if lines else None

    line = wait_for(lambda: (n := newest()) and n["requests"] == 20 and n, 5, "a metrics line")
    assert set(line) == {
        *("time", "deployed_model_id", "requests", "errors", "rejected"),
        *("p50_ms", "p99_ms", "max_ms", "window_seconds"),
    }
    assert line["deployed_model_id"] == "101"  # 102 took nothing: no line
    assert (line["requests"], line["errors"], line["rejected"]) == (20, 1, 1)
    assert (line["p99_ms"], line["max_ms"]) == (window["p99_ms"], window["max_ms"])
    assert line["window_seconds"] == 60 and line["time"].endswith("Z")


def test_window_forgets_old_requests(upstreams: dict[str, Upstream], tmp_path: Path) -> None:
    """Requests older than the window leave the percentiles and stop the metrics lines."""
    server = RouterServer(Router(tmp_path, NAME, window=0.5, metrics_interval=0.1)).start()
    try:
        deploy(tmp_path, {"101": 100}, {"101": upstreams["101"].port})
        client = Client(server.url)
        client.post({"sleep_ms": 100})
        time.sleep(0.6)  # past the window
        client.post({})
        model = server.router.report()["deployed_models"]["101"]
        assert (model["requests"], model["window"]["requests"]) == (2, 1)
        assert model["window"]["max_ms"] < 100
        time.sleep(0.6)
        metrics = endpoint_dir(tmp_path, NAME) / METRICS_FILE
        count = len(metrics.read_text().splitlines())
        time.sleep(0.3)  # three ticks with an empty window
        assert len(metrics.read_text().splitlines()) == count
    finally:
        server.stop()


def test_wrong_routes_are_404(router: RouterServer) -> None:
    """Another endpoint's name or an unknown path is a 404 that shows the right route."""
    client = Client(router.url)
    status, body = client.post({}, path="/v1/endpoints/other:predict")
    assert status == 404 and f"/v1/endpoints/{NAME}:predict" in body["error"]
    assert client.get("/v1/endpoints/other/stats")[0] == 404


def test_router_process_announces_itself_and_cleans_up(
    upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    """The real process writes router.json while it listens, and at exit its last metrics."""
    deploy(tmp_path, {"101": 100}, {"101": upstreams["101"].port})
    process = RouterProcess(tmp_path, NAME)
    process.start()
    try:
        announced = read_json(endpoint_dir(tmp_path, NAME) / ROUTER_FILE)
        assert announced is not None and process.process is not None
        assert announced == {"url": process.url, "pid": process.process.pid}
        assert Client(process.url).answered(7) == {"101": 7}
        second = RouterProcess(tmp_path, NAME)
        with pytest.raises(RouterStartError, match="already runs"):
            second.start()
    finally:
        process.stop()
    assert not (endpoint_dir(tmp_path, NAME) / ROUTER_FILE).exists()
    (line,) = (endpoint_dir(tmp_path, NAME) / METRICS_FILE).read_text().splitlines()
    assert json.loads(line)["requests"] == 7


def test_stats_window_is_chosen_per_request(upstreams: dict[str, Upstream], tmp_path: Path) -> None:
    """?window=S counts the last S seconds only; the default window and totals stay as they are."""
    server = RouterServer(Router(tmp_path, NAME, window=60.0, metrics_interval=60)).start()
    try:
        deploy(tmp_path, {"101": 100}, {"101": upstreams["101"].port})
        client = Client(server.url)
        client.post({"status": 500})
        client.post({"sleep_ms": 200})
        time.sleep(0.8)
        client.post({})
        status, report = client.get(f"/v1/endpoints/{NAME}/stats?window=0.5")
        assert status == 200 and report["window_seconds"] == 0.5
        model = report["deployed_models"]["101"]
        assert (model["requests"], model["errors"]) == (3, 1)  # since start
        assert (model["window"]["requests"], model["window"]["errors"]) == (1, 0)
        assert model["window"]["max_ms"] < 200
        default = client.get(f"/v1/endpoints/{NAME}/stats")[1]
        assert default["window_seconds"] == 60
        recent = default["deployed_models"]["101"]["window"]
        assert (recent["requests"], recent["errors"]) == (3, 1) and recent["p99_ms"] >= 200
        longest = client.get(f"/v1/endpoints/{NAME}/stats?window=3600")[1]
        assert longest["deployed_models"]["101"]["window"]["requests"] == 3
    finally:
        server.stop()


def test_stats_window_refusals_are_400(router: RouterServer) -> None:
    """A window beyond the kept samples, not positive, not a number or misspelt is a 400."""
    client = Client(router.url)
    status, body = client.get(f"/v1/endpoints/{NAME}/stats?window=3601")
    assert status == 400 and "at most 3600 seconds" in body["error"]
    for query in ("window=0", "window=-1", "window=nan", "window=abc", "windo=60", "window"):
        status, body = client.get(f"/v1/endpoints/{NAME}/stats?{query}")
        assert status == 400, (query, body)
        assert "?window=SECONDS" in body["error"]
    with pytest.raises(ValueError, match="at most 3600"):
        Router(router.router.dir.parents[1], NAME, window=7200)


def test_undeployed_model_keeps_its_recent_traffic(
    router: RouterServer, upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    """A model taken off the endpoint still reports the requests it served in the window."""
    ports = {i: u.port for i, u in upstreams.items()}
    deploy(tmp_path, {"101": 100, "102": 0}, ports)
    client = Client(router.url)
    assert client.answered(4) == {"101": 4}
    deploy(tmp_path, {"102": 100}, {"102": ports["102"]})
    assert client.answered(2) == {"102": 2}
    models = client.get(f"/v1/endpoints/{NAME}/stats")[1]["deployed_models"]
    assert (models["101"]["window"]["requests"], models["102"]["window"]["requests"]) == (4, 2)


def test_samples_memory_is_bounded_by_the_kept_window() -> None:
    """Samples older than the kept window are dropped and their memory given back."""
    samples = _Samples()
    for second in range(20_000):  # one request a second, 100 s kept
        samples.append(float(second), float(second % 7), second % 3, keep=100.0)
    assert len(samples.times) - samples.start == 101  # t = 19899 .. 19999
    assert len(samples.times) <= 2 * 4096 + 101  # compacted, not merely skipped
    latencies, outcomes = samples.since(19_990.0)
    assert list(latencies) == [float(s % 7) for s in range(19_990, 20_000)]
    assert outcomes == bytes(s % 3 for s in range(19_990, 20_000))
