"""Backends by name, imported only when asked for (fsspec's registry, in miniature).

Nothing here imports a backend module at import time: local mode must never pay for
``google.cloud.aiplatform`` (seconds and hundreds of MB), and a function whose deploy package
lacks the Vertex SDK must still run locally.
"""

from __future__ import annotations

import importlib
from typing import Any

from salesmesh.ports import TrainingLauncher

BACKENDS: dict[str, str] = {
    "local": "salesmesh.backends.local",
    "gcp": "salesmesh.backends.gcp",
}

__all__ = ["BACKENDS", "training_launcher"]


def training_launcher(name: str, **kwargs: Any) -> TrainingLauncher:
    """The ``name`` backend's training launcher, built with ``kwargs``.

    ``training_launcher("local", state_dir=Path(".salesmesh"))`` or
    ``training_launcher("gcp", project=..., location=..., staging_bucket=..., container_uri=...)``.
    """
    try:
        module_name = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown backend {name!r}; known backends: {known}") from None
    module = importlib.import_module(module_name)
    launcher: TrainingLauncher = module.TRAINING_LAUNCHER(**kwargs)
    return launcher
