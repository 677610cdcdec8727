"""The local stand-in for Vertex AI's online prediction frontend: a traffic-splitting router.

``python -m salesmesh.local.router --state-dir D --endpoint NAME --port N`` serves, on 127.0.0.1,
``POST /v1/projects/P/locations/L/endpoints/NAME:predict`` (and ``/v1/endpoints/NAME:predict``):
it proxies the body to the deployed model the split in ``endpoint.json`` picks and passes status
and body back; 503 when nothing takes traffic or the chosen server is unreachable (the routing
itself is :class:`salesmesh.local.routing.Router`).

``GET /v1/endpoints/NAME/stats[?window=SECONDS]`` reports per deployed model ``requests``,
``errors`` (5xx answers and failed proxying) and ``rejected`` (4xx) since the router started,
and latency percentiles plus the same three counts over the last ``window`` seconds: the
router's ``--window`` (60) unless the query asks for another, up to
:data:`~salesmesh.local.routing.MAX_WINDOW` (3600; a longer one is a 400 saying so, as the
router keeps no older samples). Every ``metrics_interval`` seconds (10) and at exit, one line
per model with requests in the default window is appended to ``metrics.jsonl``.

While listening the router's ``{"url", "pid"}`` is in ``router.json`` (atomically written,
removed at exit); :class:`RouterProcess` starts and stops it for the mesh.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from salesmesh.backends.local_endpoint import ROUTER_FILE, ROUTER_MARK, LocalEndpoint, endpoint_dir
from salesmesh.errors import MeshError
from salesmesh.local.processes import await_ready, read_json, start, stop_child, tail, write_json
from salesmesh.local.routing import Router, check_window, error_answer

_PREFIX = r"/v1/(?:projects/[^/]+/locations/[^/]+/)?endpoints/(?P<name>[^/:?]+)"
_PREDICT = re.compile(_PREFIX + r":predict")
_STATS = re.compile(_PREFIX + r"/stats")
_MAX_BODY = 10 << 20


class RouterStartError(MeshError):
    """The router died or never listened; the message holds its log's tail."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses one connection
    disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed ACK
    timeout = 300  # seconds an idle keep-alive connection may hold its thread
    server: RouterServer

    def do_POST(self) -> None:
        started = time.monotonic()
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True
            self._send(
                *error_answer(411, f"a Content-Length of at most {_MAX_BODY} bytes is required")
            )
            return
        body = self.rfile.read(int(length))
        match = _PREDICT.fullmatch(self.path.split("?")[0])
        router = self.server.router
        if match is None or match["name"] != router.name:
            self._send(
                *error_answer(404, f"no such route {self.path}: POST {_endpoint_path(router)}")
            )
            return
        self._send(*router.predict(body, started))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        match = _STATS.fullmatch(url.path)
        router = self.server.router
        if match is None or match["name"] != router.name:
            self._send(*error_answer(404, f"no such route {self.path}"))
            return
        try:
            report = router.report(_window(url.query))
        except ValueError as exc:
            self._send(*error_answer(400, f"{exc}: GET {url.path}?window=SECONDS"))
            return
        self._send(200, json.dumps(report).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # an access line per request would cost more than the routing does


def _window(query: str) -> float | None:
    """The stats route's ``window`` parameter in seconds, None if absent; ValueError if bad."""
    params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    unknown = sorted(set(params) - {"window"})
    if unknown:
        raise ValueError(f"unknown query parameter(s) {unknown}; the only one is window")
    values = params.get("window")
    if values is None:
        return None
    if len(values) != 1:
        raise ValueError(f"give window once, got {values}")
    try:
        seconds = float(values[0])
    except ValueError:
        raise ValueError(f"window must be a number of seconds, got {values[0]!r}") from None
    return check_window(seconds)


def _endpoint_path(router: Router) -> str:
    return f"/v1/endpoints/{router.name}:predict"


class RouterServer(ThreadingHTTPServer):
    """The router on 127.0.0.1:``port`` in this process, with its metrics writer."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, router: Router, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.router = router
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> RouterServer:
        """Serve and write metrics in background threads; then announce in ``router.json``."""
        running = LocalEndpoint(self.router.dir.parents[1], self.router.name).router()
        if running is not None and running.get("pid") != os.getpid():
            self.server_close()
            msg = f"a router for endpoint {self.router.name} already runs: {running}; stop it first"
            raise RouterStartError(msg)
        for target in (self._serve, self._tick):
            thread = threading.Thread(target=target, name=f"router-{target.__name__}", daemon=True)
            thread.start()
            self._workers.append(thread)
        self.router.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.router.dir / ROUTER_FILE, {"url": self.url, "pid": os.getpid()})
        return self

    def stop(self) -> None:
        """Stop serving, write the last metrics and remove ``router.json`` if it is ours."""
        path = self.router.dir / ROUTER_FILE
        if (read_json(path) or {}).get("url") == self.url:
            path.unlink(missing_ok=True)
        self._stopping.set()
        self.shutdown()
        self.server_close()
        for thread in self._workers:
            thread.join()
        self.router.write_metrics()

    def _serve(self) -> None:
        self.serve_forever(poll_interval=0.25)  # how long stop() may wait; idle wake-ups 4/s

    def _tick(self) -> None:
        while not self._stopping.wait(self.router.metrics_interval):
            self.router.write_metrics()


class RouterProcess:
    """``python -m salesmesh.local.router`` for one endpoint, as the mesh runs it."""

    def __init__(self, state_dir: Path, name: str = "salesmesh", port: int = 0) -> None:
        self.state_dir = Path(state_dir)
        self.name = name
        self.port = port
        self.dir = endpoint_dir(self.state_dir, name)
        self.log_path = self.dir / "router.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def command(self) -> list[str]:
        """The router's command line."""
        args = ["--state-dir", str(self.state_dir), "--endpoint", self.name, "--port"]
        return [sys.executable, "-m", ROUTER_MARK, *args, str(self.port)]

    def start(self, ready_timeout: float = 15.0) -> None:
        """Start the router and wait until its ``router.json`` names it."""
        process = self.process = start(self.command(), self.log_path)

        def announced() -> bool:
            found = read_json(self.dir / ROUTER_FILE)
            self.url = str(found["url"]) if found and found.get("pid") == process.pid else ""
            return bool(self.url)

        def failed(code: int | None) -> RouterStartError:
            how = "did not listen in time" if code is None else f"exited with {code}"
            return RouterStartError(
                f"the router of endpoint {self.name} {how}:\n{tail(self.log_path)}"
            )

        try:
            await_ready(process, announced, time.monotonic() + ready_timeout, failed, interval=0.02)
        except BaseException:
            self.stop()  # forgets the process and a router.json it may have left
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the router (it writes its last metrics), SIGKILL it after ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return
        stop_child(process, timeout)
        # a killed router could not remove its announcement
        if (read_json(self.dir / ROUTER_FILE) or {}).get("pid") == process.pid:
            (self.dir / ROUTER_FILE).unlink(missing_ok=True)


def _window_arg(text: str) -> float:
    try:
        return check_window(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m salesmesh.local.router")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--endpoint", default="salesmesh")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--window", type=_window_arg, default=60.0, help="default stats window, seconds"
    )
    parser.add_argument("--metrics-interval", type=float, default=10.0, help="seconds")
    args = parser.parse_args(argv)
    router = Router(
        args.state_dir, args.endpoint, window=args.window, metrics_interval=args.metrics_interval
    )
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        server = RouterServer(router, args.port).start()
    except (OSError, MeshError) as exc:
        print(f"router: error: {exc}", file=sys.stderr)
        return 1
    print(f"router for endpoint {args.endpoint} listening on {server.url}", flush=True)
    while not stopping.wait(3600):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
