"""A server the mesh starts is ready when *it* listens on its port, not when the port answers:
a free port can be taken by another process in the second a server takes to start."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from salesmesh.local import processes
from salesmesh.local.functions import FunctionServer, FunctionStartError

ROOT = Path(__file__).resolve().parents[2]
SERVE = "import socket, sys, time\ns = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])))\n"
SERVE += "s.listen(); print('up', flush=True); time.sleep(60)\n"


def test_ownership_is_read_from_the_process_group(tmp_path: Path) -> None:
    """The child's own listening socket is its; a socket this test holds is not the child's."""
    port, other = processes.free_port(), processes.free_port()
    child = processes.start([sys.executable, "-c", SERVE, str(port)], tmp_path / "child.log")
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", other))
        squatter.listen()
        processes.await_ready(
            child,
            lambda: processes.listening(port),
            time.monotonic() + 20,
            lambda code: AssertionError(f"child exited {code}"),
        )
        assert processes.listening_in_group(child.pid, port) is True
        assert processes.serving(child, port)
        assert processes.listening(other)
        assert processes.listening_in_group(child.pid, other) is False
        assert not processes.serving(child, other)
    finally:
        squatter.close()
        processes.stop_child(child)


def test_a_function_whose_port_a_squatter_holds_is_not_taken_for_ready(tmp_path: Path) -> None:
    """functions-framework cannot bind a port another process listens on: the start fails
    with its log, instead of the mesh posting events to the squatter."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    source = ROOT / "functions" / "alert_handler" / "main.py"
    server = FunctionServer("alert_handler", "alert_handler", source, port, {}, tmp_path / "f.log")
    try:
        with pytest.raises(FunctionStartError, match=f"not listening on port {port}|exited"):
            server.start(ready_timeout=8)
    finally:
        server.stop()
        squatter.close()
    assert server.process is None or server.process.poll() is not None


def test_the_mesh_function_server_is_ready_on_a_free_port(tmp_path: Path) -> None:
    """The same check passes for a function that did bind its port."""
    source = ROOT / "functions" / "alert_handler" / "main.py"
    port = processes.free_port()
    server = FunctionServer("alert_handler", "alert_handler", source, port, {}, tmp_path / "f.log")
    try:
        server.start()
        assert server.process is not None
        assert processes.listening_in_group(server.process.pid, port) is True
    finally:
        server.stop()


def test_without_proc_the_port_answering_is_taken_as_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no /proc/net/tcp (macOS), ownership cannot be read: serving() falls
    back to the port answering, so function servers still start there."""
    real_exists = Path.exists
    monkeypatch.setattr(
        Path,
        "exists",
        lambda self: False if str(self).startswith("/proc/net/") else real_exists(self),
    )
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    child = processes.start(
        [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "c.log"
    )
    try:
        assert processes.listening_in_group(child.pid, port) is None
        assert processes.serving(child, port)  # answering is all it can know
    finally:
        processes.stop_child(child)
        squatter.close()
