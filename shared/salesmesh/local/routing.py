"""Routing, statistics and metrics of one local endpoint, independent of the HTTP server.

:class:`Router` picks a deployed model by the split in ``endpoint.json`` (weighted random; the
file is reread only when its inode, mtime or size changed, so a request costs one ``os.stat``),
proxies the body to that model's server over a pooled keep-alive connection and passes status
and body back; 503 when nothing takes traffic or the chosen server is unreachable. A latency
fault switched on for the model's version (:mod:`salesmesh.local.latency_fault`) holds the
request that long first, inside the measured latency.

It counts per deployed model ``requests``, ``errors`` (status >= 500 or unreachable) and
``rejected`` (4xx, the client's fault) since it started, and keeps latency percentiles plus the
same three counts over a trailing window: ``window`` seconds by default, any window up to
:data:`MAX_WINDOW` seconds on request. :meth:`Router.write_metrics` appends one line per model
with requests in the default window to ``metrics.jsonl``; every figure of a line covers the
trailing ``window_seconds``, so the local monitor evaluates "p99 > 500 ms over 60 s" from the
newest line alone. Percentiles are nearest-rank over every request's latency as the router saw
it (upstream call included). :mod:`salesmesh.local.router` serves it over HTTP.

Memory is bounded by time: each request leaves one 13-byte sample (time, latency, outcome in
three packed arrays) for :data:`MAX_WINDOW` seconds, so a model taking 200 req/s holds about
9 MB, and 1000 req/s about 47 MB (up to twice that between compactions), however long the
router runs. A longer window is refused rather than silently cut short.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import sys
import threading
import time
from array import array
from bisect import bisect_left
from pathlib import Path
from typing import Any

from salesmesh.backends.local_endpoint import METRICS_FILE, RECORD, endpoint_dir
from salesmesh.backends.local_servers import PREDICT_ROUTE
from salesmesh.local.latency_fault import LatencyFaults
from salesmesh.local.processes import file_key, read_json
from salesmesh.ports import rfc3339

_Target = tuple[str, int, str, str]  # deployed model id, port, predict route, version id


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
        key = file_key(self.path)
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
        route = PREDICT_ROUTE
        targets = [
            (m["id"], int(m["port"]), m.get("predict_route", route), str(m.get("version_id")))
            for m in models
            if split.get(m["id"])
        ]
        cumulative = [0]
        for target in targets:
            cumulative.append(cumulative[-1] + int(split[target[0]]))
        self._table = (targets, cumulative[1:])
        self.deployed = [m["id"] for m in models]


# The longest window a caller may ask for: samples older than this are dropped.
MAX_WINDOW = 3600.0
_OUTCOMES = ("ok", "errors", "rejected")  # a sample's outcome is its index here


def check_window(seconds: float) -> float:
    """``seconds`` as a float if it is a window the router keeps samples for, else ValueError."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"window must be a number of seconds, got {seconds!r}")
    if not 0 < seconds <= MAX_WINDOW:  # also refuses nan
        raise ValueError(
            f"window must be more than 0 and at most {MAX_WINDOW:g} seconds (the router keeps "
            f"no older samples), got {seconds!r}"
        )
    return float(seconds)


class _Samples:
    """One model's recent requests, oldest first, in packed arrays (13 bytes a request)."""

    def __init__(self) -> None:
        self.times = array("d")  # monotonic seconds, non-decreasing
        self.latencies = array("f")  # milliseconds
        self.outcomes = bytearray()  # index into _OUTCOMES
        self.start = 0  # samples before it have expired

    def append(self, now: float, latency_ms: float, outcome: int, keep: float) -> None:
        self.times.append(now)
        self.latencies.append(latency_ms)
        self.outcomes.append(outcome)
        cutoff = now - keep
        if self.times[self.start] < cutoff:
            self.start = bisect_left(self.times, cutoff, self.start)
            if self.start > 4096 and 2 * self.start > len(self.times):
                # compact once half is dead: amortised O(1) a request, memory at most doubled
                del self.times[: self.start], self.latencies[: self.start]
                del self.outcomes[: self.start]
                self.start = 0

    def since(self, moment: float) -> tuple[array[float], bytes]:
        """Latencies and outcomes of the samples at or after ``moment``."""
        first = bisect_left(self.times, moment, self.start)
        return self.latencies[first:], bytes(self.outcomes[first:])


class _Stats:
    """Counts since start and the last :data:`MAX_WINDOW` seconds of samples per model."""

    def __init__(self, window: float) -> None:
        self.window = check_window(window)
        self._totals: dict[str, dict[str, int]] = {}
        self._samples: dict[str, _Samples] = {}
        self._lock = threading.Lock()

    def record(self, model_id: str, started: float, outcome: str) -> None:
        """Count one request: ``outcome`` is "ok", "errors" or "rejected"."""
        code = _OUTCOMES.index(outcome)
        with self._lock:
            now = time.monotonic()  # taken under the lock: sample times never go back
            totals = self._totals.setdefault(model_id, dict.fromkeys(_COUNTS, 0))
            totals["requests"] += 1
            if outcome != "ok":
                totals[outcome] += 1
            samples = self._samples.setdefault(model_id, _Samples())
            samples.append(now, (now - started) * 1000.0, code, MAX_WINDOW)

    def summary(self, model_id: str, window: float | None = None) -> dict[str, Any]:
        """Totals, and the counts and latency percentiles of the last ``window`` seconds
        (the router's default window if None)."""
        seconds = self.window if window is None else check_window(window)
        with self._lock:
            totals = dict(self._totals.get(model_id, dict.fromkeys(_COUNTS, 0)))
            samples = self._samples.get(model_id)
            latencies, outcomes = (
                samples.since(time.monotonic() - seconds) if samples else (array("f"), b"")
            )
        ordered = sorted(latencies)
        recent: dict[str, Any] = {"requests": len(ordered)}
        for code, outcome in enumerate(_OUTCOMES[1:], start=1):
            recent[outcome] = outcomes.count(code)
        for name, rank in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
            value = ordered[max(math.ceil(rank / 100 * len(ordered)), 1) - 1] if ordered else None
            recent[f"{name}_ms"] = None if value is None else round(value, 3)
        return {**totals, "window": recent}

    def active(self, window: float | None = None) -> list[str]:
        """Models with a request in the last ``window`` seconds (default window if None)."""
        since = time.monotonic() - (self.window if window is None else check_window(window))
        with self._lock:
            return [i for i, s in self._samples.items() if s.times and s.times[-1] >= since]


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
        self.faults = LatencyFaults(state_dir)
        self.metrics_interval = metrics_interval
        self._upstreams = _Upstreams(timeout)

    def predict(self, body: bytes, started: float) -> tuple[int, bytes, str]:
        """Status, body and content type for one prediction request."""
        target = self.split.choose()
        if target is None:
            return error_answer(503, f"nothing is deployed with traffic on endpoint {self.name}")
        model_id, port, route, version_id = target
        if delay := self.faults.seconds(version_id):
            time.sleep(delay)  # after ``started``: the stats count it, as a slow model's time
        try:
            status, answer, kind = self._upstreams.post(port, route, body)
        except (OSError, http.client.HTTPException) as exc:
            self.stats.record(model_id, started, "errors")
            status = 504 if isinstance(exc, TimeoutError) else 503
            return error_answer(status, f"deployed model {model_id} on port {port} failed: {exc!r}")
        outcome = "errors" if status >= 500 else "rejected" if status >= 400 else "ok"
        self.stats.record(model_id, started, outcome)
        return status, answer, kind

    def report(self, window: float | None = None) -> dict[str, Any]:
        """The stats route's body over the last ``window`` seconds (the default if None).

        Every deployed model, zeros where it took nothing, and any model undeployed since that
        took requests in the window: as in Cloud Monitoring, its traffic does not vanish with
        it. ValueError for a window the router keeps no samples for.
        """
        seconds = self.stats.window if window is None else check_window(window)
        self.split.choose()  # pick up a changed record even with no traffic
        ids = dict.fromkeys([*self.split.deployed, *self.stats.active(seconds)])
        return {
            "endpoint": self.name,
            "window_seconds": seconds,
            "deployed_models": {i: self.stats.summary(i, seconds) for i in ids},
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
