"""The Pub/Sub emulator's life cycle: found or explained, started, stopped with nothing left.

The detection tests build fake gcloud installs (a ``gcloud`` script, with or without the
emulator's launcher) and a PATH without java; the life-cycle test runs the real emulator.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from salesmesh.local import processes
from salesmesh.local.pubsub import PubSubEmulator, PubSubEmulatorError, available


def _fake_sdk(root: Path, *, info_works: bool = True, component: bool = False) -> Path:
    """A fake SDK under ``root`` whose ``bin/gcloud`` answers ``gcloud info`` (or fails)."""
    gcloud = root / "bin" / "gcloud"
    gcloud.parent.mkdir(parents=True)
    body = f"echo {root}" if info_works else "exit 1"
    gcloud.write_text(f"#!/bin/sh\n{body}\n")
    gcloud.chmod(0o755)
    if component:
        script = root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
        script.parent.mkdir(parents=True)
        script.write_text("#!/bin/sh\nexit 1\n")
        script.chmod(0o755)
    return gcloud


def _pgrep(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def test_no_gcloud_is_the_reason(tmp_path: Path) -> None:
    """Without gcloud on PATH, available() says so."""
    (tmp_path / "empty").mkdir()
    reason = available({"PATH": str(tmp_path / "empty")})
    assert reason is not None and "no gcloud CLI" in reason


def test_no_component_is_the_reason(tmp_path: Path) -> None:
    """A gcloud without the pubsub-emulator component: the reason names the install command."""
    gcloud = _fake_sdk(tmp_path / "sdk")
    reason = available({"PATH": str(gcloud.parent)})
    assert reason is not None
    assert "lacks the Pub/Sub emulator" in reason
    assert "gcloud components install pubsub-emulator" in reason


def test_no_java_is_the_reason(tmp_path: Path) -> None:
    """The component without java on PATH: the reason is java."""
    gcloud = _fake_sdk(tmp_path / "sdk", component=True)
    reason = available({"PATH": str(gcloud.parent)})
    assert reason is not None and "Java" in reason


def test_sdk_root_from_the_binary_location(tmp_path: Path) -> None:
    """The SDK root is found behind a gcloud symlink on PATH without asking gcloud."""
    gcloud = _fake_sdk(tmp_path / "sdk", info_works=False, component=True)
    on_path = tmp_path / "path"
    on_path.mkdir()
    (on_path / "gcloud").symlink_to(gcloud)
    reason = available({"PATH": str(on_path)})
    # the component was found (the next check, java, is what fails)
    assert reason is not None and "Java" in reason


def test_sdk_root_from_gcloud_info(tmp_path: Path) -> None:
    """A gcloud wrapper outside its SDK: the root `gcloud info` names is where to look."""
    sdk = tmp_path / "sdk"
    _fake_sdk(sdk, component=True)
    wrapper = tmp_path / "wrapper" / "gcloud"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\necho {sdk}\n")
    wrapper.chmod(0o755)
    assert "Java" in (available({"PATH": str(wrapper.parent)}) or "")
    (sdk / "platform").rename(tmp_path / "elsewhere")
    assert "lacks the Pub/Sub emulator" in (available({"PATH": str(wrapper.parent)}) or "")


def test_setup_refuses_what_the_emulator_would(tmp_path: Path) -> None:
    """setup() refuses an ack deadline under 10 s and attempts outside 5-100 before any call."""
    emulator = PubSubEmulator(tmp_path)
    with pytest.raises(ValueError, match=">= 10"):
        emulator.setup("proj", "alerts", "alerts-sub", "alerts-dead", 5, ack_deadline_seconds=5)
    with pytest.raises(ValueError, match="5-100"):
        emulator.setup("proj", "alerts", "alerts-sub", "alerts-dead", 3)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    """A port someone else listens on is refused up front, not mistaken for the emulator."""
    if (reason := available()) is not None:
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        emulator = PubSubEmulator(tmp_path, port=squatter.getsockname()[1])
        with pytest.raises(PubSubEmulatorError, match="is taken"):
            emulator.start()
    assert emulator.pid is None


def test_stop_leaves_no_java_behind(tmp_path: Path) -> None:
    """The emulator serves on 127.0.0.1, setup() is idempotent, and stop() ends its java."""
    if (reason := available()) is not None:
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    emulator = PubSubEmulator(tmp_path)
    emulator.start()
    try:
        pid = emulator.pid
        assert pid is not None and processes.alive(pid)
        mine = _pgrep(f"pubsub-emulator.*--port={emulator.port}")
        assert mine == [pid]  # the launcher exec'd java: one process, the one we track
        assert "java" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        for _ in range(2):
            emulator.setup("proj", "alerts", "alerts-sub", "alerts-dead", 5)
        assert (tmp_path / "pubsub-emulator.log").is_file()
    finally:
        emulator.stop()
    assert not processes.alive(pid)
    assert _pgrep(f"pubsub-emulator.*--port={emulator.port}") == []
    assert not processes.listening(emulator.port)


def test_a_port_taken_while_the_jvm_starts_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Meshes and tests start side by side: the free port picked can be bound by another
    process in the seconds before java binds it. The emulator is ready only once its own log
    says it listens, so the squatter is never taken for it, and another free port is used."""
    if (reason := available()) is not None:
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    squatter = socket.socket()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    taken = probe.getsockname()[1]
    probe.close()
    real_free_port = processes.free_port
    ports = iter([taken])
    monkeypatch.setattr(processes, "free_port", lambda: next(ports, None) or real_free_port())
    real_start = processes.start

    def start_then_squat(command: Any, log: Path, **kwargs: Any) -> Any:
        started = real_start(command, log, **kwargs)
        if f"--port={taken}" in " ".join(command):  # bound before the JVM is up
            squatter.bind(("127.0.0.1", taken))
            squatter.listen()
        return started

    monkeypatch.setattr(processes, "start", start_then_squat)
    emulator = PubSubEmulator(tmp_path)
    assert emulator.port == taken
    try:
        emulator.start()
        assert emulator.port != taken and emulator.pid is not None
        assert processes.alive(emulator.pid)
        emulator.setup("proj", "alerts", "alerts-sub", "alerts-dead", 5)  # it is the emulator
        log = (tmp_path / "pubsub-emulator.log").read_text()
        assert "java.net.BindException" in log
        assert f"listening on {emulator.port}" in log
    finally:
        emulator.stop()
        squatter.close()
    assert _pgrep(f"pubsub-emulator.*--port={taken}") == []  # the first JVM was stopped
