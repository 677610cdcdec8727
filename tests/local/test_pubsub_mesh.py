"""Pub/Sub in a real Mesh: delivery as Eventarc does it, retries, dead letters and the monitor.

Each backend (the official emulator when this machine has it, and the in-process fallback) gets
one mesh for the module, serving one real functions-framework function, ``recorder``, wired to
the alerts topic. It records every CloudEvent it gets in ``<state_dir>/seen.jsonl`` and fails
as a message's ``fail`` attribute asks: ``"2"`` on its first two deliveries, ``"always"`` on
all. Messages are published through Pub/Sub's REST ``publish``, the door other processes use.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_cli import cli_env
from mesh_waits import wait_for
from upstreams import Upstream

from salesmesh import logs, status
from salesmesh.alerts import incident
from salesmesh.alerts.topic import alerts_topic
from salesmesh.backends.local_endpoint import RECORD, endpoint_dir, write_json
from salesmesh.local import latency_fault
from salesmesh.local.mesh import Mesh
from salesmesh.local.mesh_pubsub import EMULATOR, IN_PROCESS, unavailable
from salesmesh.local.pubsub_rest import RestTopic
from salesmesh.settings import Settings
from salesmesh.wiring import PUBSUB_PUBLISHED, Retry, Trigger

RETRY = Retry(5, 0.1, 0.4)  # 5: Pub/Sub's fewest attempts before a dead letter
RECORDER = textwrap.dedent(
    """
    import json, os, time
    import functions_framework

    SEEN = os.path.join(os.environ["SALESMESH_STATE_DIR"], "seen.jsonl")

    @functions_framework.cloud_event
    def recorder(event):
        line = {"id": event["id"], "source": event["source"], "type": event["type"],
                "specversion": event["specversion"], "time": event["time"],
                "subject": event.get("subject"), "data": event.data, "at": time.time()}
        with open(SEEN, "a") as out:
            out.write(json.dumps(line) + "\\n")
        fail = event.data["message"].get("attributes", {}).get("fail", "0")
        if fail == "always":
            raise RuntimeError("told to fail every time")
        with open(SEEN) as lines:
            seen = sum(1 for line in lines if json.loads(line)["id"] == event["id"])
        if seen <= int(fail):
            raise RuntimeError(f"told to fail {fail} times")
    """
)


@pytest.fixture(scope="module", params=[EMULATOR, IN_PROCESS])
def mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    """A mesh on one Pub/Sub backend serving ``recorder``; the monitor's windows 50x shorter."""
    if request.param == EMULATOR and (reason := unavailable()) is not None:
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    root = tmp_path_factory.mktemp(f"mesh-{request.param}")
    (root / "functions" / "recorder").mkdir(parents=True)
    (root / "functions" / "recorder" / "main.py").write_text(RECORDER)
    settings = Settings(state_dir=root / "state", alert_scale=0.02)
    trigger = Trigger("recorder", "recorder", PUBSUB_PUBLISHED, "alerts", RETRY)
    with Mesh(settings, root, triggers=[trigger], pubsub_emulator=request.param == EMULATOR) as up:
        assert up.pubsub.kind == request.param
        yield up


def publish(mesh: Mesh, data: bytes, attributes: dict[str, str] | None = None) -> str:
    """Publish as another process would: Pub/Sub's REST publish at the mesh's URL."""
    settings = mesh.settings
    return RestTopic(mesh.pubsub.publish_url, settings.project, settings.alerts_topic).publish(
        data, attributes
    )


def seen(mesh: Mesh, message_id: str) -> list[dict[str, Any]]:
    """The CloudEvents ``recorder`` got for ``message_id``, in order."""
    path = mesh.state_dir / "seen.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["id"] == message_id]


def test_a_published_message_arrives_once_as_eventarc_sends_it(mesh: Mesh) -> None:
    """One publish -> one messagePublished CloudEvent with Eventarc's attributes and body."""
    message_id = publish(mesh, b'{"incident": 1}', {"origin": "test"})
    [event] = wait_for(lambda: seen(mesh, message_id), 10, "the delivery")
    time.sleep(0.5)  # acked: nothing comes again
    assert len(seen(mesh, message_id)) == 1
    settings = mesh.settings
    topic = f"projects/{settings.project}/topics/{settings.alerts_topic}"
    subscription = f"projects/{settings.project}/subscriptions/salesmesh-alerts-recorder"
    assert event["type"] == PUBSUB_PUBLISHED == "google.cloud.pubsub.topic.v1.messagePublished"
    assert event["source"] == f"//pubsub.googleapis.com/{topic}"
    assert (event["specversion"], event["subject"]) == ("1.0", None)
    message = event["data"]["message"]
    assert event["data"]["subscription"] == subscription
    assert base64.b64decode(message["data"]) == b'{"incident": 1}'
    assert message["attributes"] == {"origin": "test"}
    assert message["messageId"] == message["message_id"] == message_id
    assert message["publishTime"] == message["publish_time"] == event["time"]
    assert message["@type"] == "type.googleapis.com/google.pubsub.v1.PubsubMessage"
    assert mesh.delivery is not None
    [attempt] = [a for a in mesh.delivery.attempts if a.event_id == message_id]
    assert (attempt.function, attempt.attempt, attempt.status) == ("recorder", 1, 200)
    assert attempt.since_event >= attempt.seconds  # counted from the publish


def test_a_failing_function_is_redelivered_with_backoff_until_it_acks(mesh: Mesh) -> None:
    """Two failures, then success: three deliveries of one id, backoff doubling, then none."""
    message_id = publish(mesh, b"flaky", {"fail": "2"})
    events = wait_for(lambda: len(seen(mesh, message_id)) == 3 and seen(mesh, message_id), 10, "3")
    time.sleep(0.8)  # acked on the third: no fourth, even after the longest backoff
    assert len(seen(mesh, message_id)) == 3
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(events)]
    assert gaps[0] >= RETRY.backoff(1) * 0.9 and gaps[1] >= RETRY.backoff(2) * 0.9, gaps
    assert mesh.delivery is not None
    attempts = [a for a in mesh.delivery.attempts if a.event_id == message_id]
    assert [(a.attempt, a.status) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert all(d["event_id"] != message_id for d in status.dead_letters(mesh.state_dir))


def test_a_permanently_failing_message_is_dead_lettered(mesh: Mesh) -> None:
    """Failing every time: max attempts deliveries, then one record in dead_letters.jsonl."""
    message_id = publish(mesh, b"poison", {"fail": "always"})

    def letter() -> dict[str, Any] | None:
        found = [d for d in status.dead_letters(mesh.state_dir) if d["event_id"] == message_id]
        return found[0] if found else None

    record = wait_for(letter, 15, "the dead letter")
    assert len(seen(mesh, message_id)) == RETRY.max_attempts
    assert (record["function"], record["attempts"], record["last_status"]) == ("recorder", 5, 500)
    assert record["subscription"] == "salesmesh-alerts-recorder"
    data = record["event"]["data"]["message"]
    assert base64.b64decode(data["data"]) == b"poison"
    assert record["event"]["attributes"]["ce-id"] == message_id
    time.sleep(0.5)
    assert len(seen(mesh, message_id)) == RETRY.max_attempts  # dead: not delivered again


class _Traffic:
    """Two clients sending predictions to the router without pause, until stopped."""

    def __init__(self, url: str, endpoint: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._where = (host, int(port), f"/v1/endpoints/{endpoint}:predict")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(2)]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        host, port, path = self._where
        body = json.dumps({"instances": [{"store_id": "S01"}]})
        while not self._stop.is_set():
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            connection.getresponse().read()
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _incidents(mesh: Mesh) -> list[incident.Incident]:
    path = mesh.state_dir / "seen.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    found = []
    for event in map(json.loads, lines):
        data = base64.b64decode(event["data"]["message"]["data"])
        if data.startswith(b'{"incident"') and b'"version"' in data:
            found.append(incident.parse(data))
    return found


def test_the_monitor_publishes_an_incident_for_a_slowed_version_and_its_close(mesh: Mesh) -> None:
    """700 ms injected into version 2 (threshold 500 ms): an open incident reaches the
    function; once the fault is cleared, its close does too; both are in the mesh log."""
    assert mesh.router is not None and mesh.monitor is not None
    upstream = Upstream("1000000001")
    record = endpoint_dir(mesh.state_dir, mesh.settings.endpoint) / RECORD
    model = {"id": "1000000001", "version_id": "2", "port": upstream.port, "created": "now"}
    split = {"1000000001": 100}
    write_json(record, {"endpoint": "salesmesh", "deployed_models": [model], "traffic": split})
    latency_fault.set_latency(mesh.state_dir, "2", 700)
    traffic = _Traffic(mesh.router.url, mesh.settings.endpoint)
    try:
        opened = wait_for(
            lambda: [i for i in _incidents(mesh) if i.state is incident.State.OPEN], 15, "an open"
        )
        latency_fault.clear(mesh.state_dir)
        closed = wait_for(
            lambda: [i for i in _incidents(mesh) if i.state is incident.State.CLOSED], 15, "close"
        )
    finally:
        traffic.stop()
        latency_fault.clear(mesh.state_dir)
        write_json(record, {"endpoint": "salesmesh", "deployed_models": [], "traffic": {}})
        upstream.stop()
    assert len(opened) == 1 and len(closed) == 1
    assert opened[0].incident_id == closed[0].incident_id
    assert (opened[0].endpoint_id, opened[0].deployed_model_id) == ("salesmesh", "1000000001")
    assert opened[0].observed_value is not None and opened[0].observed_value > 500
    lines = list(logs.read(mesh.state_dir / "logs" / "mesh.jsonl", opened[0].incident_id))
    assert [(r["component"], r["severity"]) for r in lines] == [
        ("monitor", "WARNING"),
        ("monitor", "INFO"),
    ]
    assert lines[0]["message"].startswith("incident opened: ")


@pytest.mark.parametrize("kind", [EMULATOR, IN_PROCESS])
def test_up_names_its_pubsub_and_takes_messages_from_other_processes(
    kind: str, tmp_path: Path
) -> None:
    """`salesmesh up` prints which Pub/Sub runs and records it in mesh.json; a message
    published from another process through alerts.topic.alerts_topic reaches the function; Ctrl-C
    leaves no emulator behind."""
    if kind == EMULATOR and (reason := unavailable()) is not None:
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    handler = tmp_path / "root" / "functions" / "alert_handler" / "main.py"
    handler.parent.mkdir(parents=True)
    handler.write_text(RECORDER.replace("def recorder(", "def alert_handler("))
    state = tmp_path / "state"
    extra = {}
    if kind == IN_PROCESS:
        (tmp_path / "bin").mkdir()
        extra["PATH"] = str(tmp_path / "bin")  # no gcloud and no java: the fallback says so
    up = subprocess.Popen(
        [sys.executable, "-m", "salesmesh.cli", "up", "--root", str(tmp_path / "root")],
        env=cli_env(state, extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(up.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("Ctrl-C stops" in line for line in printed), 60, "the mesh")
        info = json.loads((state / "mesh.json").read_text())
        described = info["pubsub"]
        [line] = [line for line in printed if line.startswith("  pubsub: ")]
        if kind == EMULATOR:
            host = info["pubsub_emulator_host"]
            assert line.startswith(f"  pubsub: official emulator on {host}, topic salesmesh")
            assert described["publish_url"] == f"http://{host}"
        else:
            assert line.startswith("  pubsub: in-process fallback on http://127.0.0.1:")
            assert "(why: no gcloud CLI on PATH" in line
            assert info["pubsub_emulator_host"] is None
        assert (described["kind"], described["topics"]) == (kind, {"alerts": "salesmesh-alerts"})
        subscription = "projects/local/subscriptions/salesmesh-alerts-alert-handler"
        assert described["subscriptions"] == {"alert_handler": subscription}

        topic = alerts_topic(Settings(state_dir=state))
        message_id = topic.publish(b'{"from": "another process"}')
        path = state / "seen.jsonl"
        [event] = wait_for(lambda: path.exists() and path.read_text().splitlines(), 10, "it")
        assert json.loads(event)["id"] == message_id
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
        reader.join()
    assert up.returncode == 0, "".join(printed)
    assert not (state / "mesh.json").exists()
    if kind == EMULATOR:
        port = described["emulator_host"].rsplit(":", 1)[1]
        left = subprocess.run(["pgrep", "-f", f"pubsub.*port={port}"], capture_output=True)
        assert left.stdout == b"", left.stdout
