"""The local stand-in for Vertex AI's online prediction frontend: a traffic-splitting router.

``python -m salesmesh.local.router --state-dir D --endpoint NAME --port N`` serves, on 127.0.0.1,
``POST /v1/projects/P/locations/L/endpoints/NAME:predict`` (and ``/v1/endpoints/NAME:predict``):
it picks a deployed model by the split in ``endpoint.json`` (weighted random; the file is reread
only when its inode, mtime or size changed, so a request costs one ``os.stat``), proxies the body
to that model's server over a pooled keep-alive connection and passes status and body back.
503 when nothing takes traffic or the chosen server is unreachable.

``GET /v1/endpoints/NAME/stats`` reports per deployed model ``requests``, ``errors`` (status >= 500
or unreachable) and ``rejected`` (4xx, the client's fault) since the router started, and latency
percentiles plus the same three counts over the last ``window`` seconds (60). Every
``metrics_interval`` seconds (10) and at exit, one line per model with requests in the window is
appended to ``metrics.jsonl``; every figure of a line covers the trailing ``window_seconds``, so
the local monitor evaluates "p99 > 500 ms over 60 s" from the newest line alone. Percentiles are
nearest-rank over every request's latency as the router saw it (upstream call included).

While listening the router's ``{"url", "pid"}`` is in ``router.json`` (atomically written,
removed at exit); :class:`RouterProcess` starts and stops it for the mesh.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from salesmesh.backends.local_endpoint import (
    METRICS_FILE,
    PREDICT_ROUTE,
    RECORD,
    ROUTER_FILE,
    ROUTER_MARK,
    LocalEndpoint,
    endpoint_dir,
    read_json,
    write_json,
)
from salesmesh.errors import MeshError
from salesmesh.ports import rfc3339

_PREFIX = r"/v1/(?:projects/[^/]+/locations/[^/]+/)?endpoints/(?P<name>[^/:?]+)"
_PREDICT = re.compile(_PREFIX + r":predict")
_STATS = re.compile(_PREFIX + r"/stats")
_MAX_BODY = 10 << 20
_Target = tuple[str, int, str]  # deployed model id, port, predict route


class RouterStartError(MeshError):
    """The router died or never listened; the message holds its log's tail."""


class _Split:
    """The deployed models taking traffic, reloaded when ``endpoint.json`` changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        # targets and their cumulative weights, replaced together: a reader never mixes two
        self._table: tuple[list[_Target], list[int]] = ([], [])
        self.deployed: list[str] = []
        self._lock = threading.Lock()

    def choose(self) -> _Target | None:
        try:
            stat = self.path.stat()
            key: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        if key != self._key:
            with self._lock:
                try:
                    self._load(key)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    print(f"router: ignoring unreadable {self.path}: {exc!r}", file=sys.stderr)
                    self._table, self.deployed = ([], []), []
                self._key = key  # a bad record is reported once, not on every request
        targets, weights = self._table
        return random.choices(targets, cum_weights=weights)[0] if targets else None

    def _load(self, key: tuple[int, int, int] | None) -> None:
        record = read_json(self.path) if key else None
        models = (record or {}).get("deployed_models", [])
        split = (record or {}).get("traffic", {})
        targets = [
            (m["id"], int(m["port"]), m.get("predict_route", PREDICT_ROUTE))
            for m in models
            if split.get(m["id"])
        ]
        cumulative = [0]
        for target in targets:
            cumulative.append(cumulative[-1] + int(split[target[0]]))
        self._table = (targets, cumulative[1:])
        self.deployed = [m["id"] for m in models]


class _Stats:
    """Counts since start and a sliding window of (time, latency ms, outcome) per model."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._totals: dict[str, dict[str, int]] = {}
        self._samples: dict[str, deque[tuple[float, float, str]]] = {}
        self._lock = threading.Lock()

    def record(self, model_id: str, started: float, outcome: str) -> None:
        """Count one request: ``outcome`` is "ok", "errors" or "rejected"."""
        now = time.monotonic()
        with self._lock:
            totals = self._totals.setdefault(model_id, dict.fromkeys(_COUNTS, 0))
            totals["requests"] += 1
            if outcome != "ok":
                totals[outcome] += 1
            samples = self._samples.setdefault(model_id, deque())
            samples.append((now, (now - started) * 1000.0, outcome))
            while samples[0][0] < now - self.window:
                samples.popleft()

    def summary(self, model_id: str) -> dict[str, Any]:
        """Totals and the window's counts and latency percentiles for one model."""
        now = time.monotonic()
        with self._lock:
            totals = dict(self._totals.get(model_id, dict.fromkeys(_COUNTS, 0)))
            recent = [s for s in self._samples.get(model_id, ()) if s[0] >= now - self.window]
        latencies = sorted(s[1] for s in recent)
        window: dict[str, Any] = {"requests": len(recent)}
        for outcome in ("errors", "rejected"):
            window[outcome] = sum(s[2] == outcome for s in recent)
        for name, rank in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
            value = (
                latencies[max(math.ceil(rank / 100 * len(latencies)), 1) - 1] if recent else None
            )
            window[f"{name}_ms"] = None if value is None else round(value, 3)
        return {**totals, "window": window}

    def active(self) -> list[str]:
        with self._lock:
            return list(self._samples)


_COUNTS = ("requests", "errors", "rejected")


class _Upstreams:
    """Idle keep-alive connections per server port, shared by the handler threads."""

    def __init__(self, timeout: float) -> None:
        self._idle: dict[int, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._timeout = timeout

    def post(self, port: int, route: str, body: bytes) -> tuple[int, bytes, str]:
        with self._lock:
            pooled = self._idle.get(port)
            connection = pooled.pop() if pooled else None
        for attempt in (0, 1):
            fresh = connection is None
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=self._timeout)
            try:
                connection.request("POST", route, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
            except TimeoutError:
                connection.close()
                raise  # a slow server is not a dropped connection: no second try
            except (OSError, http.client.HTTPException):
                connection.close()
                if fresh or attempt:
                    raise
                connection = None  # the server closed an idle connection: reconnect once
                continue
            if response.will_close:
                connection.close()
            else:
                with self._lock:
                    self._idle.setdefault(port, []).append(connection)
            return response.status, answer, response.getheader("Content-Type", "application/json")
        raise AssertionError("unreachable")  # pragma: no cover


class Router:
    """Routing, statistics and metrics of one endpoint, independent of the HTTP server."""

    def __init__(
        self,
        state_dir: Path,
        name: str,
        *,
        window: float = 60.0,
        metrics_interval: float = 10.0,
        timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.dir = endpoint_dir(state_dir, name)
        self.split = _Split(self.dir / RECORD)
        self.stats = _Stats(window)
        self.metrics_interval = metrics_interval
        self._upstreams = _Upstreams(timeout)

    def predict(self, body: bytes, started: float) -> tuple[int, bytes, str]:
        """Status, body and content type for one prediction request."""
        target = self.split.choose()
        if target is None:
            return _error(503, f"nothing is deployed with traffic on endpoint {self.name}")
        model_id, port, route = target
        try:
            status, answer, kind = self._upstreams.post(port, route, body)
        except (OSError, http.client.HTTPException) as exc:
            self.stats.record(model_id, started, "errors")
            status = 504 if isinstance(exc, TimeoutError) else 503
            return _error(status, f"deployed model {model_id} on port {port} failed: {exc!r}")
        outcome = "errors" if status >= 500 else "rejected" if status >= 400 else "ok"
        self.stats.record(model_id, started, outcome)
        return status, answer, kind

    def report(self) -> dict[str, Any]:
        """The stats route's body: every deployed model, zeros where it took nothing."""
        self.split.choose()  # pick up a changed record even with no traffic
        models = {i: self.stats.summary(i) for i in self.split.deployed}
        return {
            "endpoint": self.name,
            "window_seconds": self.stats.window,
            "deployed_models": models,
        }

    def write_metrics(self) -> None:
        """Append one line per model with requests in the window to ``metrics.jsonl``."""
        now = rfc3339()
        lines = []
        for model_id in self.stats.active():
            window = self.stats.summary(model_id)["window"]
            if window["requests"]:
                line = {"time": now, "deployed_model_id": model_id, **window}
                del line["p95_ms"]
                lines.append(json.dumps({**line, "window_seconds": self.stats.window}) + "\n")
        if lines:
            with (self.dir / METRICS_FILE).open("a") as out:
                out.write("".join(lines))  # one append: lines of one tick stay together


def _error(status: int, message: str) -> tuple[int, bytes, str]:
    return status, json.dumps({"error": message}).encode(), "application/json"


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
            self._send(*_error(411, f"a Content-Length of at most {_MAX_BODY} bytes is required"))
            return
        body = self.rfile.read(int(length))
        match = _PREDICT.fullmatch(self.path.split("?")[0])
        router = self.server.router
        if match is None or match["name"] != router.name:
            self._send(*_error(404, f"no such route {self.path}: POST {_endpoint_path(router)}"))
            return
        self._send(*router.predict(body, started))

    def do_GET(self) -> None:
        match = _STATS.fullmatch(self.path.split("?")[0])
        router = self.server.router
        if match is None or match["name"] != router.name:
            self._send(*_error(404, f"no such route {self.path}"))
            return
        self._send(200, json.dumps(self.server.router.report()).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # an access line per request would cost more than the routing does


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
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, like the function servers
            )
        deadline = time.monotonic() + ready_timeout
        while (code := self.process.poll()) is None:
            found = read_json(self.dir / ROUTER_FILE)
            if found and found.get("pid") == self.process.pid:
                self.url = str(found["url"])
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)  # start-up only: bounded by ready_timeout
        self.stop()
        how = "did not listen in time" if code is None else f"exited with {code}"
        raise RouterStartError(f"the router of endpoint {self.name} {how}:\n{self._tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the router (it writes its last metrics), SIGKILL it after ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if (read_json(self.dir / ROUTER_FILE) or {}).get("pid") == process.pid:
                (self.dir / ROUTER_FILE).unlink(missing_ok=True)

    def _tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the router until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m salesmesh.local.router")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--endpoint", default="salesmesh")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--window", type=float, default=60.0, help="stats window, seconds")
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
