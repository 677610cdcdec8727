"""Local endpoint: deployed models as real prediction-server processes, and the traffic split.

``<state_dir>/endpoints/<name>/`` holds the record ``endpoint.json`` and its lock
(:mod:`salesmesh.backends.local_record`), one ``server-<id>.log`` per deployed model, and the
router's ``router.json`` and ``metrics.jsonl`` (:mod:`salesmesh.local.router`).

Each deployed model is ``python -m salesmesh.serve`` in its own session, started the way Vertex
AI starts a custom container (:mod:`salesmesh.backends.local_servers`): it outlives the process
that deployed it, as a Vertex deployment outlives the function that made it. The split is
validated with :func:`~salesmesh.ports.allocate` before anything starts, and a model enters the
record only once its health route answers, so a failed deployment leaves the endpoint as it was.

A deployment is a long-running operation, as on Vertex AI
(:mod:`salesmesh.backends.local_deployments`): :meth:`LocalEndpoint.start_deploy` starts the
server and records the operation; whoever polls :meth:`LocalEndpoint.operation` next, from any
process, finds the server healthy and completes it, or dead or late and fails it. A mesh restart
does not lose it: :meth:`~LocalEndpoint.stop_servers` stops its server and
:meth:`~LocalEndpoint.restore` starts it again with a fresh deadline.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from salesmesh.backends import local_deployments as ops
from salesmesh.backends.local_deployments import Deployments
from salesmesh.backends.local_record import (
    ID_BASE,
    RECORD,
    endpoint_dir,
    find_model,
)
from salesmesh.backends.local_servers import (
    HEALTH_ROUTE,
    PREDICT_ROUTE,
    await_healthy,
    call,
    launch,
    running,
    stop_servers,
)
from salesmesh.errors import DeployError, PredictionError
from salesmesh.local.processes import alive, read_json, write_json
from salesmesh.ports import Health

ROUTER_FILE = "router.json"  # written by the router while it listens
METRICS_FILE = "metrics.jsonl"
ROUTER_MARK = "salesmesh.local.router"
__all__ = [
    "ID_BASE",
    "METRICS_FILE",
    "RECORD",
    "ROUTER_FILE",
    "LocalEndpoint",
    "endpoint_dir",
    "read_json",
    "write_json",
]


class LocalEndpoint(Deployments):
    """Vertex AI's endpoint semantics over local prediction servers and the local router."""

    def undeploy(self, deployed_model_id: str) -> None:
        """Remove a model without traffic and stop its server.

        As on Vertex AI, the last deployed model may go with its 100 %: the split becomes {}.
        """
        with self._locked() as record:
            model = find_model(record, deployed_model_id)
            others = [m["id"] for m in record["deployed_models"] if m is not model]
            share = record["traffic"].get(deployed_model_id, 0)
            if share and others:
                msg = (
                    f"deployed model {deployed_model_id} takes {share} % of endpoint "
                    f"{self.name}'s traffic: move it to {others} with set_traffic first"
                )
                raise ValueError(msg)
            record["deployed_models"].remove(model)
            record["traffic"] = {i: record["traffic"].get(i, 0) for i in others}
        stop_servers([model.get("pid")])  # after the router has stopped choosing it

    def health(self, deployed_model_id: str, probe: Mapping[str, Any]) -> Health:
        """Deployed, server process alive, health route 200, and ``probe`` forecast."""
        model = next(
            (m for m in self._read()["deployed_models"] if m["id"] == deployed_model_id), None
        )
        if model is None:
            return Health(False, f"{deployed_model_id} is not deployed on endpoint {self.name}")
        seen = self._router_stats().get(deployed_model_id, {})
        p99 = (seen.get("window") or {}).get("p99_ms")
        found = partial(  # what the router saw of its live traffic goes with every verdict
            Health,
            requests=int(seen.get("requests", 0)),
            errors=int(seen.get("errors", 0)),
            p99_ms=None if p99 is None else float(p99),
        )
        where = f"deployed model {deployed_model_id} (server log {model['log']})"
        if not running(model.get("pid")):
            return found(False, f"{where}: its server process is not running")
        port = model["port"]
        status, _ = call(port, "GET", HEALTH_ROUTE)
        if status != 200:
            return found(False, f"{where}: health route answered {status or 'nothing'}")
        status, body = call(port, "POST", PREDICT_ROUTE, {"instances": [dict(probe)]})
        first = (body.get("predictions") or [{}])[0] if status == 200 else {}
        forecast = first.get("forecast") if isinstance(first, dict) else None
        if not forecast:
            reason = f"{where}: probe {dict(probe)} answered {status or 'nothing'}: {body}"
            return found(False, reason)
        return found(True, "")

    def predict(self, instances: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """POST ``instances`` through the router; PredictionError on a 4xx/5xx or no router."""
        router = self.router()
        if router is None:
            raise PredictionError(
                f"no router is running for endpoint {self.name} "
                f"({self.dir / ROUTER_FILE} is missing or stale): start the mesh: salesmesh up",
                status=503,
            )
        path = f"/v1/endpoints/{self.name}:predict"
        payload = {"instances": [dict(i) for i in instances]}
        status, body = call(router["url"], "POST", path, payload, timeout=60.0)
        if status == 0:
            msg = f"the router of endpoint {self.name} at {router['url']} does not answer: {body}"
            raise PredictionError(msg + "; restart the mesh: salesmesh up", status=503)
        if status >= 400:
            reasons = [
                f"instance {r.get('index')}: {r.get('reason')}" for r in body.get("reasons", [])
            ]
            error = body.get("error", body)
            raise PredictionError(
                f"prediction on endpoint {self.name} failed with HTTP {status}: {error}",
                status=status,
                reasons=reasons,
            )
        return body

    def router(self) -> dict[str, Any] | None:
        """The running router's ``{"url", "pid"}``, or None if none runs."""
        found = read_json(self.dir / ROUTER_FILE)
        return found if found and alive(found.get("pid"), ROUTER_MARK) else None

    def stop_servers(self) -> builtins.list[str]:
        """Stop every server process and keep the record, for :meth:`restore` to restart.

        Returns the ids whose server ran: deployed models, and deployments in progress, which
        stay pending (not failed) until restore starts them again.
        """
        pending = []
        if ops.pending(self._read()):
            with self._locked() as record:
                pending = ops.pending(record)
                for found in pending:
                    found["stopped"] = True
        models = [*self._read()["deployed_models"], *(found["model"] for found in pending)]
        stopped = stop_servers(m.get("pid") for m in models)
        return [m["id"] for m in models if m.get("pid") in stopped]

    def restore(self) -> builtins.list[str]:
        """Restart the servers that are not running, on new ports; returns their ids.

        Deployments in progress whose server is gone (stopped with the mesh, or killed) start
        again with a fresh deadline and complete when next polled, as they would on Vertex AI.
        Raises DeployError naming the models that did not come back (the others are restored).
        """
        failures: builtins.list[str] = []
        relaunched = self._relaunch_pending(failures)
        dead = [dict(m) for m in self._read()["deployed_models"] if not running(m.get("pid"))]
        launched = []
        for model in dead:  # all start before any is awaited: they load in parallel
            try:
                launched.append((model, launch(self._python, self._env, model)))
            except DeployError as exc:
                failures.append(str(exc))
        deadline = time.monotonic() + self._deploy_timeout
        restarted: dict[str, dict[str, Any]] = {}
        for model, process in launched:
            try:
                await_healthy(model, process, deadline)
            except DeployError as exc:
                failures.append(str(exc))
            else:
                restarted[model["id"]] = model
        with self._locked() as record:
            ids = [m["id"] for m in record["deployed_models"] if m["id"] in restarted]
            for model in record["deployed_models"]:
                if new := restarted.pop(model["id"], None):
                    model.update(port=new["port"], pid=new["pid"])
        stop_servers(gone["pid"] for gone in restarted.values())  # undeployed while restarting
        if failures:
            raise DeployError("could not restore every deployed model:\n" + "\n".join(failures))
        return ids + relaunched

    def _router_stats(self) -> dict[str, Any]:
        router = self.router()
        if router is None:
            return {}
        path = f"/v1/endpoints/{self.name}/stats"
        status, body = call(router["url"], "GET", path, timeout=2.0)
        return dict(body.get("deployed_models", {})) if status == 200 else {}
