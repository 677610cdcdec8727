"""Local endpoint: deployed models as real prediction-server processes, and the traffic split.

``<state_dir>/endpoints/<name>/`` holds ``endpoint.json`` (deployed models with their port, pid
and log, the split, and the counter deployed-model ids come from), one ``server-<id>.log`` per
deployed model, and the router's ``router.json`` and ``metrics.jsonl``
(:mod:`salesmesh.local.router`). Every read-modify-write of the record holds an ``fcntl``
lock on ``endpoint.lock`` (:func:`salesmesh.locks.file_lock`) and replaces the file atomically,
so the router, which rereads it when its inode, mtime or size changes, sees the old record or the
new one, never half of one.

Each deployed model is ``python -m salesmesh.serve`` in its own session, started the way Vertex
AI starts a custom container (:mod:`salesmesh.backends.local_servers`): it outlives the process
that deployed it, as a Vertex deployment outlives the function that made it. The split is
validated with :func:`~salesmesh.ports.allocate` before anything starts, and a model enters the
record only once its health route answers, so a failed deployment leaves the endpoint as it was.
"""

from __future__ import annotations

import builtins
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

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
from salesmesh.locks import file_lock
from salesmesh.ports import DeployedModel, Health, ModelVersion, allocate, check_split, rfc3339

RECORD = "endpoint.json"
LOCK = "endpoint.lock"
ROUTER_FILE = "router.json"  # written by the router while it listens
METRICS_FILE = "metrics.jsonl"
ROUTER_MARK = "salesmesh.local.router"
# Numeric like Vertex AI's deployed-model ids, and never equal to a registry version id ("1",
# "2", ...), so code that mixes the two up fails at once instead of passing by coincidence.
ID_BASE = 1_000_000_000
# The record lock is held for one read-modify-write (milliseconds): a holder this late is stuck.
LOCK_SECONDS = 60.0
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


def endpoint_dir(state_dir: Path, name: str) -> Path:
    """``<state_dir>/endpoints/<name>``, for a valid endpoint name."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"endpoint name {name!r} must match {_NAME.pattern}")
    return Path(state_dir) / "endpoints" / name


class LocalEndpoint:
    """Vertex AI's endpoint semantics over local prediction servers and the local router."""

    def __init__(
        self,
        state_dir: Path,
        name: str = "salesmesh",
        env: Mapping[str, str] | None = None,
        *,
        python: str = sys.executable,
        deploy_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.dir = endpoint_dir(state_dir, name)
        self._env = dict(os.environ if env is None else env)
        self._python = python
        self._deploy_timeout = deploy_timeout

    def deployed(self) -> builtins.list[DeployedModel]:
        """Every deployed model, oldest first."""
        return [_public(m) for m in self._read()["deployed_models"]]

    def traffic(self) -> dict[str, int]:
        """The current split, every deployed model included (0 where it takes none)."""
        return dict(self._read()["traffic"])

    def deploy(self, version: ModelVersion, traffic_percentage: int) -> DeployedModel:
        """Start a server for ``version``; once healthy, add it with its share of traffic."""
        with self._locked() as record:
            model_id = str(ID_BASE + record["next_id"])
            _split_with(record, model_id, traffic_percentage)  # refuse before starting anything
            record["next_id"] += 1  # claimed even if the deployment fails: ids are never reused
        model = {
            "id": model_id,
            "version_id": version.version_id,
            "artifact_uri": version.artifact_uri,
            "created": rfc3339(),
            "log": str(self.dir / f"server-{model_id}.log"),
        }
        process = launch(self._python, self._env, model)
        await_healthy(model, process, time.monotonic() + self._deploy_timeout)
        try:
            with self._locked() as record:
                # recomputed: the split may have changed while the server was starting
                record["traffic"] = _split_with(record, model_id, traffic_percentage)
                record["deployed_models"].append(model)
        except BaseException:
            stop_servers([model["pid"]])
            raise
        return _public(model)

    def set_traffic(self, split: Mapping[str, int]) -> None:
        """Replace the split (ValueError unless it is whole, sums to 100, names deployed ids)."""
        with self._locked() as record:
            ids = [m["id"] for m in record["deployed_models"]]
            record["traffic"] = check_split(split, ids)

    def undeploy(self, deployed_model_id: str) -> None:
        """Remove a model without traffic and stop its server.

        As on Vertex AI, the last deployed model may go with its 100 %: the split becomes {}.
        """
        with self._locked() as record:
            model = _find(record, deployed_model_id, self.name)
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
        """Stop every server process and keep the record, for :meth:`restore` to restart."""
        models = self._read()["deployed_models"]
        stopped = stop_servers(m.get("pid") for m in models)
        return [m["id"] for m in models if m.get("pid") in stopped]

    def restore(self) -> builtins.list[str]:
        """Restart the servers that are not running, on new ports; returns their ids.

        Raises DeployError naming the models that did not come back (the others are restored).
        """
        dead = [dict(m) for m in self._read()["deployed_models"] if not running(m.get("pid"))]
        launched, failures = [], []
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
        return ids

    def _read(self) -> dict[str, Any]:
        return read_json(self.dir / RECORD) or _empty(self.name)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The record to change in place; written back when the block ends without error."""
        with file_lock(self.dir / LOCK, LOCK_SECONDS, poll=0.01):
            record = self._read()
            yield record
            write_json(self.dir / RECORD, record)

    def _router_stats(self) -> dict[str, Any]:
        router = self.router()
        if router is None:
            return {}
        path = f"/v1/endpoints/{self.name}/stats"
        status, body = call(router["url"], "GET", path, timeout=2.0)
        return dict(body.get("deployed_models", {})) if status == 200 else {}


def _empty(name: str) -> dict[str, Any]:
    return {"endpoint": name, "next_id": 1, "deployed_models": [], "traffic": {}}


def _find(record: Mapping[str, Any], deployed_model_id: str, name: str) -> dict[str, Any]:
    for model in record["deployed_models"]:
        if model["id"] == deployed_model_id:
            found: dict[str, Any] = model
            return found
    ids = [m["id"] for m in record["deployed_models"]]
    raise KeyError(f"{deployed_model_id!r} is not deployed on endpoint {name} (deployed: {ids})")


def _split_with(record: Mapping[str, Any], model_id: str, percentage: int) -> dict[str, int]:
    """The full split after adding ``model_id``; ValueError as Vertex AI would refuse it."""
    taking = {i: share for i, share in record["traffic"].items() if share}
    # only models with traffic take part: Vertex hands the rounding remainder to them alone
    split = allocate(taking, model_id, percentage)
    ids = [m["id"] for m in record["deployed_models"]] + [model_id]
    return check_split(split, ids)


def _public(model: Mapping[str, Any]) -> DeployedModel:
    return DeployedModel(model["id"], model["version_id"], model["created"])
