"""Prediction-server processes of the local endpoint, and the JSON requests sent to them.

A deployed model's server is ``python -m salesmesh.serve``, started the way Vertex AI starts a
custom container (``AIP_*`` variables) and detached in its own session
(:func:`salesmesh.local.processes.start`): it outlives the process that deployed it, as a
Vertex deployment outlives the function that made it. Its pid is recognised by ``SERVE_MARK``
in its command line, so a pid read back from the endpoint's record is never mistaken for
whatever process reused it. :func:`call` is how the endpoint talks to servers and the router.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from salesmesh.errors import DeployError
from salesmesh.local.processes import alive, await_ready, free_port, start, stop, tail

HEALTH_ROUTE = "/health"
PREDICT_ROUTE = "/predict"
SERVE_MARK = "salesmesh.serve"  # in a live server's command line; guards against pid reuse
# A server's graceful stop (SIGTERM) before it is killed: in-flight predictions take
# milliseconds, and gunicorn lingers up to 2 s on kept-alive connections.
STOP_SECONDS = 5.0


def launch(python: str, env: Mapping[str, str], model: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start ``model``'s server on a free port, recording its port and pid in ``model``.

    ``model`` holds the deployed model's ``id``, ``version_id``, ``artifact_uri`` and ``log``.
    """
    model.update(port=free_port(), predict_route=PREDICT_ROUTE)
    server_env = {
        **env,
        "AIP_HTTP_PORT": str(model["port"]),
        "AIP_HEALTH_ROUTE": HEALTH_ROUTE,
        "AIP_PREDICT_ROUTE": PREDICT_ROUTE,
        "AIP_STORAGE_URI": model["artifact_uri"],
        "AIP_DEPLOYED_MODEL_ID": model["id"],
        "SALESMESH_SERVE_HOST": "127.0.0.1",
    }
    try:
        process = start([python, "-m", SERVE_MARK], Path(model["log"]), env=server_env)
    except OSError as exc:
        raise DeployError(f"cannot start a server for {describe(model)}: {exc}") from exc
    model["pid"] = process.pid
    return process


def await_healthy(
    model: Mapping[str, Any], process: subprocess.Popen[bytes], deadline: float
) -> None:
    """Return once the server's health route answers 200; else stop it and raise DeployError."""

    def failed(code: int | None) -> DeployError:
        how = "did not become healthy in time" if code is None else f"exited with code {code}"
        return DeployError(failure(model, how))

    await_ready(process, partial(healthy, model), deadline, failed, interval=0.1)


def healthy(model: Mapping[str, Any]) -> bool:
    """True if the server's health route answers 200 now."""
    return call(model["port"], "GET", HEALTH_ROUTE, timeout=1.0)[0] == 200


def failure(model: Mapping[str, Any], how: str) -> str:
    """Why ``model``'s server failed (``how``), with the last lines of its log."""
    return (
        f"the prediction server of {describe(model)} {how}. "
        f"Last lines of {model['log']}:\n{tail(Path(model['log']))}"
    )


def running(pid: object) -> bool:
    """True if ``pid`` is a live prediction server."""
    return alive(pid, SERVE_MARK)


def stop_servers(pids: Iterable[object]) -> list[int]:
    """Stop the prediction servers among ``pids`` together; returns those that were running."""
    return stop(pids, SERVE_MARK, STOP_SECONDS)


def describe(model: Mapping[str, Any]) -> str:
    """The deployed model and its version, for messages."""
    version = f"version {model['version_id']}, {model['artifact_uri']}"
    return f"deployed model {model['id']} ({version})"


def call(
    where: int | str,
    method: str,
    path: str,
    payload: Any = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` of one request to a port on 127.0.0.1 or an ``http://`` URL.

    ``(0, {"error": ...})`` when nothing answers; a non-JSON body comes back as ``{"error"}``.
    """
    host, port = ("127.0.0.1", where) if isinstance(where, int) else _host_port(where)
    body = None if payload is None else json.dumps(payload).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, {"error": f"{host}:{port}{path}: {exc}"}
    finally:
        connection.close()
    try:
        decoded = json.loads(raw)
    except ValueError:
        return status, {"error": raw.decode(errors="replace")[:500]}
    return status, decoded if isinstance(decoded, dict) else {"body": decoded}


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    return host, int(port)
