"""Backends by name, imported only when asked for (fsspec's registry, in miniature).

Nothing here imports a backend module at import time: local mode must never pay for
``google.cloud.aiplatform`` (seconds and hundreds of MB), and a function whose deploy package
lacks the Vertex SDK must still run locally.
"""

from __future__ import annotations

import importlib
from typing import Any

from salesmesh.ports import Endpoint, Metrics, ModelRegistry, TaskQueue, TrainingLauncher

# (port, backend name) -> "module:class"
BACKENDS: dict[tuple[str, str], str] = {
    ("launcher", "local"): "salesmesh.backends.local:LocalTrainingLauncher",
    ("launcher", "gcp"): "salesmesh.backends.gcp:VertexTrainingLauncher",
    ("registry", "local"): "salesmesh.backends.local_registry:LocalModelRegistry",
    ("registry", "gcp"): "salesmesh.backends.gcp_registry:VertexModelRegistry",
    ("endpoint", "local"): "salesmesh.backends.local_endpoint:LocalEndpoint",
    ("endpoint", "gcp"): "salesmesh.backends.gcp_endpoint:VertexEndpoint",
    ("metrics", "local"): "salesmesh.backends.local_metrics:LocalMetrics",
    ("metrics", "gcp"): "salesmesh.backends.gcp_metrics:CloudMonitoringMetrics",
    ("tasks", "local"): "salesmesh.backends.local_tasks:LocalTaskQueue",
    ("tasks", "gcp"): "salesmesh.backends.gcp_tasks:CloudTasksQueue",
}

__all__ = [
    "BACKENDS",
    "endpoint",
    "metrics",
    "model_registry",
    "task_queue",
    "training_launcher",
]


def _build(port: str, backend: str, kwargs: dict[str, Any]) -> Any:
    try:
        target = BACKENDS[port, backend]
    except KeyError:
        known = ", ".join(sorted(n for p, n in BACKENDS if p == port))
        raise ValueError(f"unknown {port} backend {backend!r}; known backends: {known}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)


def training_launcher(backend: str, /, **kwargs: Any) -> TrainingLauncher:
    """The ``backend``'s training launcher, built with ``kwargs``.

    ``training_launcher("local", state_dir=Path(".salesmesh"))`` or
    ``training_launcher("gcp", project=..., location=..., staging_bucket=..., container_uri=...)``.
    """
    launcher: TrainingLauncher = _build("launcher", backend, kwargs)
    return launcher


def model_registry(backend: str, /, **kwargs: Any) -> ModelRegistry:
    """The ``backend``'s model registry, built with ``kwargs``."""
    registry: ModelRegistry = _build("registry", backend, kwargs)
    return registry


def endpoint(backend: str, /, **kwargs: Any) -> Endpoint:
    """The ``backend``'s endpoint, built with ``kwargs``."""
    built: Endpoint = _build("endpoint", backend, kwargs)
    return built


def metrics(backend: str, /, **kwargs: Any) -> Metrics:
    """The ``backend``'s per-model traffic metrics, built with ``kwargs``.

    ``metrics("local", state_dir=Path(".salesmesh"))`` reads the local router;
    ``metrics("gcp", project=..., location=..., endpoint_id=...)`` reads Cloud Monitoring.
    """
    built: Metrics = _build("metrics", backend, kwargs)
    return built


def task_queue(backend: str, /, **kwargs: Any) -> TaskQueue:
    """The ``backend``'s delayed-task queue, built with ``kwargs``.

    ``task_queue("local", bucket=..., lock_dir=Path(...))`` or
    ``task_queue("gcp", project=..., location=..., queue=..., url=..., service_account=...)``.
    """
    queue: TaskQueue = _build("tasks", backend, kwargs)
    return queue
