"""Routing, statistics and metrics of one local endpoint, independent of the HTTP server.

:class:`Router` picks a deployed model by the split in ``endpoint.json`` (weighted random; the
file is reread only when its inode, mtime or size changed, so a request costs one ``os.stat``),
proxies the body to that model's server over a pooled keep-alive connection and passes status
and body back; 503 when nothing takes traffic or the chosen server is unreachable.

It counts per deployed model ``requests``, ``errors`` (status >= 500 or unreachable) and
``rejected`` (4xx, the client's fault) since it started, and keeps latency percentiles plus the
same three counts over the last ``window`` seconds. :meth:`Router.write_metrics` appends one line
per model with requests in the window to ``metrics.jsonl``; every figure of a line covers the
trailing ``window_seconds``, so the local monitor evaluates "p99 > 500 ms over 60 s" from the
newest line alone. Percentiles are nearest-rank over every request's latency as the router saw
it (upstream call included). :mod:`salesmesh.local.router` serves it over HTTP.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from salesmesh.backends.local_endpoint import METRICS_FILE, RECORD, endpoint_dir
from salesmesh.backends.local_servers import PREDICT_ROUTE
from salesmesh.local.processes import read_json
from salesmesh.ports import rfc3339

_Target = tuple[str, int, str]  # deployed model id, port, predict route


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
            return error_answer(503, f"nothing is deployed with traffic on endpoint {self.name}")
        model_id, port, route = target
        try:
            status, answer, kind = self._upstreams.post(port, route, body)
        except (OSError, http.client.HTTPException) as exc:
            self.stats.record(model_id, started, "errors")
            status = 504 if isinstance(exc, TimeoutError) else 503
            return error_answer(status, f"deployed model {model_id} on port {port} failed: {exc!r}")
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


def error_answer(status: int, message: str) -> tuple[int, bytes, str]:
    """Status, ``{"error": message}`` body and content type: how the router answers a failure."""
    return status, json.dumps({"error": message}).encode(), "application/json"
