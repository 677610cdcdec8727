"""The Vertex AI SDK, set up once per process, and what every Vertex AI backend shares.

A function builds its backends anew for every event it handles. Without the per-process record
here each event would resolve Application Default Credentials (a metadata-server round trip)
and re-initialise the SDK; without the per-object clients each call would build a new gRPC
channel. ``google.cloud.aiplatform`` is imported on first use only: local mode never pays for it.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


# What this process has set the SDK up with: "adc", the Application Default Credentials once
# resolved, and "init", the (project, location, credentials) aiplatform.init last received.
_SDK: dict[str, Any] = {}
_SDK_LOCK = threading.Lock()


def vertex_sdk(project: str, location: str, credentials: Any) -> tuple[Any, Any]:
    """``(google.cloud.aiplatform, credentials)``, the SDK imported and set up for us.

    Imported through importlib so mypy does not follow the typed SDK (see ``backends.gcp``).
    ``aiplatform.init`` is needed because ``Model.upload`` re-reads the new model with the
    process-wide configuration, ignoring the credentials it was given. Both it and the ADC
    lookup happen once per process: again only when another project, location or set of
    credentials asks (``init`` is process-wide, so the last caller's must be the ones set).
    """
    aiplatform = importlib.import_module("google.cloud.aiplatform")
    with _SDK_LOCK:  # concurrent requests of a threaded function server share the set-up
        if credentials is None:
            if "adc" not in _SDK:
                auth = importlib.import_module("google.auth")
                _SDK["adc"], _ = auth.default(scopes=[_CLOUD_PLATFORM])
            credentials = _SDK["adc"]
        wanted = (project, location, credentials)
        current = _SDK.get("init")
        if current is None or current[:2] != wanted[:2] or current[2] is not credentials:
            aiplatform.init(project=project, location=location, credentials=credentials)
            _SDK["init"] = wanted
    return aiplatform, credentials


def api_errors() -> Any:
    """``google.api_core.exceptions``, imported on first use."""
    return importlib.import_module("google.api_core.exceptions")


class VertexBackend:
    """What the Vertex AI backends share: project, location and the SDK, set up on first use."""

    def __init__(self, project: str, location: str, credentials: Any) -> None:
        """``credentials``: google.auth credentials; None means Application Default Credentials."""
        self.project = project
        self.location = location
        self._credentials = credentials
        self._clients: dict[str, Any] = {}

    def _aiplatform(self) -> Any:
        """The configured SDK; from the first call on, ``_credentials`` are resolved ones."""
        aiplatform, self._credentials = vertex_sdk(self.project, self.location, self._credentials)
        return aiplatform

    def _generated(self, service: str) -> Any:
        """The generated v1 client ``service`` (e.g. ``"ModelServiceClient"``), one per object.

        Not the SDK's resource classes' clients: most of them (``ModelRegistry.client``,
        ``Endpoint.api_client``) are "temporary", building a new generated client and gRPC
        channel on every attribute access, so on every call. Built as the SDK builds its own
        (regional endpoint, credentials, user agent).
        """
        if service not in self._clients:
            self._aiplatform()  # resolves the credentials
            config = importlib.import_module("google.cloud.aiplatform.initializer").global_config
            client_class = getattr(importlib.import_module("google.cloud.aiplatform_v1"), service)
            self._clients[service] = config.create_client(
                client_class=client_class,
                credentials=self._credentials,
                location_override=self.location,
            )
        return self._clients[service]
