"""The mesh's monitor loop over a real router process: scaled policies, one log line per metrics
outage, and notifications that survive a topic that refused them."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest
from mesh_waits import wait_for
from upstreams import Upstream

from salesmesh import logs
from salesmesh.alerts import incident
from salesmesh.backends.local_endpoint import RECORD, endpoint_dir, write_json
from salesmesh.backends.local_metrics import LocalMetrics
from salesmesh.local.inprocess_pubsub import InProcessPubSub
from salesmesh.local.monitoring import MonitorLoop, interval, scaled_policies
from salesmesh.local.processes import free_port
from salesmesh.local.pubsub_rest import RestTopic
from salesmesh.local.router import RouterProcess
from salesmesh.settings import Settings

MODEL = "1000000001"


def _lines(settings: Settings) -> list[dict[str, object]]:
    return list(logs.read(settings.state_dir / "logs" / "mesh.jsonl"))


@pytest.mark.parametrize(("scale", "window", "every"), [(1.0, 60.0, 10.0), (0.05, 3.0, 0.5)])
def test_the_scale_shortens_windows_and_durations_not_thresholds(
    scale: float, window: float, every: float
) -> None:
    """SALESMESH_ALERT_SCALE multiplies windows and durations; the loop runs 6 times a window."""
    found = scaled_policies(Settings(alert_scale=scale))
    latency = next(p for p in found if p.name == "prediction-latency-p99")
    assert (latency.window_seconds, latency.duration_seconds) == pytest.approx((window, window))
    assert latency.threshold_value == 500
    assert interval(found) == pytest.approx(every)


def test_a_router_outage_is_logged_once_and_its_end_once(tmp_path: Path) -> None:
    """Three ticks without a router: one WARNING; with the router back: one INFO, no more."""
    settings = Settings(state_dir=tmp_path, alert_scale=0.02)
    loop = MonitorLoop(
        settings,
        InProcessPubSub(),
        metrics=LocalMetrics(tmp_path, settings.endpoint),
        deployed=lambda: [MODEL],
    )
    for _ in range(3):
        assert loop.tick() == []
    [warning] = _lines(settings)
    assert (warning["severity"], warning["component"]) == ("WARNING", "monitor")
    assert "no router is running" in str(warning["message"])
    router = RouterProcess(tmp_path, settings.endpoint)
    router.start()
    try:
        for _ in range(3):
            assert loop.tick() == []
    finally:
        router.stop()
    assert [line["severity"] for line in _lines(settings)] == ["WARNING", "INFO"]


def test_an_incident_the_topic_refused_is_published_on_a_later_tick(tmp_path: Path) -> None:
    """A slow model opens an incident while the topic is down: logged as an error, then
    published once a tick finds the topic working again."""
    settings = Settings(state_dir=tmp_path, alert_scale=0.02)
    upstream = Upstream(MODEL)
    folder = endpoint_dir(tmp_path, settings.endpoint)
    folder.mkdir(parents=True)
    model = {"id": MODEL, "version_id": "1", "port": upstream.port, "created": "now"}
    write_json(folder / RECORD, {"deployed_models": [model], "traffic": {MODEL: 100}})
    router = RouterProcess(tmp_path, settings.endpoint)
    router.start()
    down = RestTopic(f"http://127.0.0.1:{free_port()}", settings.project, settings.alerts_topic)
    loop = MonitorLoop(settings, down)
    up = InProcessPubSub()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", int(router.url.rsplit(":", 1)[1]))

        def slow_request_and_tick() -> list[incident.Incident]:
            body = json.dumps({"instances": [{"store_id": "S01", "sleep_ms": 600}]})
            path = f"/v1/endpoints/{settings.endpoint}:predict"
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            connection.getresponse().read()
            return loop.tick()

        [opened] = wait_for(slow_request_and_tick, 10, "an open incident")
        assert opened.state is incident.State.OPEN and loop.published == []
        errors = [line for line in _lines(settings) if line["severity"] == "ERROR"]
        assert "could not publish incident" in str(errors[0]["message"])
        loop.topic = up
        time.sleep(loop.interval)
        loop.tick()
    finally:
        router.stop()
        upstream.stop()
    [message] = up.pull(max_messages=10, timeout=1.0)
    assert incident.parse(message.data).incident_id == opened.incident_id
    assert [i for i, _ in loop.published] == [opened.incident_id]
