"""Prediction server: ``python -m salesmesh.serve``, Vertex AI's custom-container contract.

Configured by the environment only, read once at start-up:

    AIP_STORAGE_URI          required: the run folder to serve, gs://BUCKET/PREFIX or a folder
    AIP_HTTP_PORT            port to listen on (8080)
    AIP_HEALTH_ROUTE         GET route answering 200 once the model serves (/health)
    AIP_PREDICT_ROUTE        POST route for predictions (/predict)
    AIP_DEPLOYED_MODEL_ID    echoed as ``deployedModelId`` in every prediction ("" when unset)
    SALESMESH_SERVE_HOST     address to bind (127.0.0.1; the container sets 0.0.0.0)
    SALESMESH_SERVE_THREADS  request threads of the one worker process (4)

Before the port is bound the run folder is fetched, checked against its manifest, loaded and
every series forecast: a deployment that cannot serve prints one line on stderr and exits
non-zero (1, or 2 when the storage URI cannot be read), so it never becomes healthy. Forecasts
(the point and the quantiles the model was trained with) are deterministic for an artifact.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from salesmesh import artifact
from salesmesh.errors import MeshError, exit_status
from salesmesh.logs import Logger
from salesmesh.serving import REQUIRED_FILES, Predictor, ServeSettings, create_app

PROGRAM = "salesmesh.serve"
# Longer than the 60 s idle timeout of common proxies, so the server never closes a kept-alive
# connection a proxy is just reusing (which the client would see as a reset).
KEEPALIVE_SECONDS = 75
# Every request is answered from memory in microseconds; a worker this late is stuck.
WORKER_TIMEOUT_SECONDS = 30
GRACEFUL_SECONDS = 10


def load(settings: ServeSettings) -> Predictor:
    """Fetch and verify the run folder at ``settings.storage_uri``, then precompute it.

    The local copy of a gs:// artifact is removed once loaded: the predictor holds everything
    in memory.
    """
    with tempfile.TemporaryDirectory(prefix="salesmesh-serve-") as work:
        folder, _ = artifact.fetch(settings.storage_uri, Path(work), REQUIRED_FILES)
        return Predictor.from_folder(folder, settings.storage_uri)


class Server(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type information
    """gunicorn run in-process with our options, serving an app already built."""

    def __init__(self, app: WSGIApplication, options: Mapping[str, Any]) -> None:
        self._app = app
        self._options = dict(options)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApplication:
        return self._app


def gunicorn_options(settings: ServeSettings, predictor: Predictor) -> dict[str, Any]:
    """The gunicorn configuration: one threaded worker forked from a master holding the model."""
    log = Logger("serve")
    identity = predictor.identity

    def when_ready(_: Any) -> None:
        log.info(
            f"serving {identity['artifact']} on http://{settings.bind}",
            run_id=identity["run_id"],
            series=predictor.health()["series"],
            horizon=predictor.horizon,
            quantiles=list(predictor.quantiles),
            deployed_model_id=settings.deployed_model_id,
        )

    return {
        "bind": [settings.bind],
        # One process: the forecasts are precomputed, so a request is a dictionary look-up and
        # threads cover I/O waits; a second process would only double the memory.
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.threads,
        # loaded in the master before forking, so a broken artifact stops start-up
        "preload_app": True,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "graceful_timeout": GRACEFUL_SECONDS,
        "keepalive": KEEPALIVE_SECONDS,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        # gunicorn's control socket defaults to one path per user: two servers would collide
        "control_socket_disable": True,
        # the worker heartbeat writes a file every second; in memory it never waits on a disk
        "worker_tmp_dir": "/dev/shm" if Path("/dev/shm").is_dir() else None,
        "proc_name": PROGRAM,
        "when_ready": when_ready,
    }


def _parser() -> argparse.ArgumentParser:
    lines = (__doc__ or "").split("\n\n")
    return argparse.ArgumentParser(
        prog=f"python -m {PROGRAM}",
        description="Serve forecasts of one trained run over HTTP (Vertex AI custom container).",
        epilog="\n\n".join(lines[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    """Load, then serve until stopped; a start-up failure returns the exit code instead."""
    _parser().parse_args(argv)
    try:
        settings = ServeSettings.from_env(env)
        predictor = load(settings)
    except MeshError as exc:
        return exit_status(PROGRAM, exc)
    Server(create_app(predictor, settings), gunicorn_options(settings, predictor)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
