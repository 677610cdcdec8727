"""Local metrics: what the local router measured of each deployed model's live traffic.

The router (:mod:`salesmesh.local.router`) sees every prediction request of the endpoint and
keeps, per deployed model, each request's latency and outcome for the last
:data:`~salesmesh.local.routing.MAX_WINDOW` seconds (3600). :class:`LocalMetrics` asks its
``GET /v1/endpoints/NAME/stats?window=SECONDS`` route and reads one model's figures from it:

- ``requests``: every request the router sent to the model in the window, answered or not;
- ``errors``: answers of status 5xx plus requests the router could not proxy (the model's
  server unreachable or timing out), which the client sees as 503/504. A 4xx is the caller's
  mistake and the router counts it as ``rejected``, not as an error;
- ``p99_ms``: nearest-rank 99th percentile of the latency as the router saw it (the upstream
  call included), None without requests.

The router is found as :meth:`LocalEndpoint.router` finds it (its ``router.json``, with a live
pid). With none running this raises :class:`~salesmesh.errors.MetricsError` rather than report
zeros: no router means no measurement, not no traffic, and the caller decides what that means.
"""

from __future__ import annotations

from pathlib import Path

from salesmesh.backends.local_endpoint import ROUTER_FILE, LocalEndpoint
from salesmesh.backends.local_servers import call
from salesmesh.errors import MetricsError
from salesmesh.ports import ModelMetrics

# A stats request is a look-up under the router's lock: a router this slow to answer is stuck.
STATS_TIMEOUT = 5.0


class LocalMetrics:
    """Per deployed model requests, errors and p99 latency, from the local router."""

    def __init__(self, state_dir: Path, endpoint: str = "salesmesh") -> None:
        self.endpoint = LocalEndpoint(state_dir, endpoint)
        self.name = endpoint

    def window(self, deployed_model_id: str, seconds: float) -> ModelMetrics:
        """What ``deployed_model_id`` served over the last ``seconds`` (zeros if nothing).

        ValueError for a window the router keeps no samples for (not above 0, or above
        3600 s); MetricsError when no router runs or it does not answer.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        router = self.endpoint.router()
        if router is None:
            raise MetricsError(
                f"no router is running for endpoint {self.name} "
                f"({self.endpoint.dir / ROUTER_FILE} is missing or stale), so nothing measures "
                "its traffic: start the mesh: salesmesh up"
            )
        path = f"/v1/endpoints/{self.name}/stats?window={float(seconds)!r}"
        status, body = call(router["url"], "GET", path, timeout=STATS_TIMEOUT)
        if status == 400:
            raise ValueError(f"the router of endpoint {self.name} refused: {body.get('error')}")
        if status != 200:
            where = f"the router of endpoint {self.name} at {router['url']}"
            answer = f"answered {status}" if status else "does not answer"
            raise MetricsError(f"{where} {answer}: {body}; restart the mesh: salesmesh up")
        seen = body.get("deployed_models", {}).get(deployed_model_id)
        if seen is None:
            return ModelMetrics(deployed_model_id, float(seconds))
        recent = seen["window"]
        p99 = recent["p99_ms"]
        return ModelMetrics(
            deployed_model_id,
            float(body["window_seconds"]),
            requests=int(recent["requests"]),
            errors=int(recent["errors"]),
            p99_ms=None if p99 is None else float(p99),
        )
