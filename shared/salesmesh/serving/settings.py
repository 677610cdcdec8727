"""The prediction server's settings: Vertex AI's custom-container variables, read once.

Vertex AI tells a serving container where to listen and what to load through ``AIP_*``
variables; ``SALESMESH_SERVE_*`` tune the server itself. :meth:`ServeSettings.from_env` takes a
plain mapping, so tests pass a dict and nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from salesmesh.errors import ConfigError

MAX_THREADS = 64

# field -> environment variable, so every error names what to change
ENV_VARS: dict[str, str] = {
    "storage_uri": "AIP_STORAGE_URI",
    "port": "AIP_HTTP_PORT",
    "health_route": "AIP_HEALTH_ROUTE",
    "predict_route": "AIP_PREDICT_ROUTE",
    "deployed_model_id": "AIP_DEPLOYED_MODEL_ID",
    "host": "SALESMESH_SERVE_HOST",
    "threads": "SALESMESH_SERVE_THREADS",
}


@dataclass(frozen=True)
class ServeSettings:
    """Where the server listens, which routes it answers and which run folder it serves."""

    storage_uri: str
    port: int = 8080
    health_route: str = "/health"
    predict_route: str = "/predict"
    deployed_model_id: str = ""
    # loopback unless told otherwise; the container sets 0.0.0.0 because Vertex AI needs it
    host: str = "127.0.0.1"
    threads: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServeSettings:
        """Settings from ``env``; unset or empty variables take the defaults."""
        given: dict[str, Any] = {
            name: env[var] for name, var in ENV_VARS.items() if env.get(var, "") != ""
        }
        if "storage_uri" not in given:
            raise ConfigError(
                "AIP_STORAGE_URI is not set: set it to the run folder to serve, a "
                "gs://BUCKET/PREFIX or a local folder (Vertex AI sets it to the model's "
                "artifact URI)"
            )
        for name in ("port", "threads"):
            if name in given:
                given[name] = _whole(name, given[name])
        return cls(**given)

    def __post_init__(self) -> None:
        if not self.storage_uri:
            _invalid("storage_uri", self.storage_uri, "a gs://BUCKET/PREFIX or a local folder")
        if not 1 <= self.port <= 65_535:
            _invalid("port", self.port, "a TCP port from 1 to 65535")
        if not 1 <= self.threads <= MAX_THREADS:
            _invalid("threads", self.threads, f"a whole number of threads from 1 to {MAX_THREADS}")
        for name in ("health_route", "predict_route"):
            route = getattr(self, name)
            if not route.startswith("/") or any(c in route for c in "?# "):
                _invalid(name, route, "a path starting with '/', without '?', '#' or spaces")
        if self.health_route == self.predict_route:
            _invalid("predict_route", self.predict_route, "a path other than the health route")
        if not self.host:
            _invalid("host", self.host, "an IP address to bind, such as 127.0.0.1 or 0.0.0.0")

    @property
    def bind(self) -> str:
        """``host:port`` as gunicorn binds it (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _whole(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        _invalid(name, text, "a whole number")


def _invalid(name: str, value: object, allowed: str) -> NoReturn:
    raise ConfigError(f"{ENV_VARS[name]}={value!r} is invalid: expected {allowed}")
