"""What a function needs at run time, built from :class:`Settings` at the edge.

Kept out of the handlers so each ``main.py`` stays a shell: settings in, backend picked by name,
logs where the backend reads them (stdout for Cloud Logging; also a file under the state folder
locally, which ``salesmesh logs`` reads).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from salesmesh.backends import training_launcher
from salesmesh.errors import ConfigError
from salesmesh.logs import Logger
from salesmesh.ports import TrainingLauncher
from salesmesh.settings import Settings

LOG_FILE = "mesh.jsonl"


def launcher(settings: Settings) -> TrainingLauncher:
    """The training launcher of ``settings.backend``."""
    if settings.backend == "local":
        return training_launcher("local", state_dir=settings.state_dir)
    if not settings.training_image:
        raise ConfigError(
            "SALESMESH_TRAINING_IMAGE is not set: the gcp backend needs the training container's "
            "image URI (e.g. europe-west1-docker.pkg.dev/PROJECT/salesmesh/train:TAG)"
        )
    from salesmesh.backends.gcp import gcs_claim
    from salesmesh.data.source import storage_client

    return training_launcher(
        "gcp",
        project=settings.project,
        location=settings.region,
        staging_bucket=f"gs://{settings.state_bucket}",
        container_uri=settings.training_image,
        service_account=settings.service_account,
        # two deliveries of one upload at the same instant must not submit two jobs
        claim=gcs_claim(storage_client(), settings.state_bucket),
    )


def logger(component: str, settings: Settings) -> Logger:
    """Structured logs to stdout, and locally to ``<state_dir>/logs/mesh.jsonl`` too."""
    path = settings.state_dir / "logs" / LOG_FILE if settings.backend == "local" else None
    return Logger(component, path=path)


MESH_FILE = "mesh.json"


def write_mesh_file(settings: Settings, description: dict[str, Any]) -> Path:
    """Record where the running mesh listens, so other commands in other shells find it."""
    path = settings.state_dir / MESH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(description, indent=2) + "\n")
    staging.replace(path)
    return path


def use_running_mesh(settings: Settings) -> str | None:
    """Point this process's storage client at the running local mesh, if there is one.

    ``STORAGE_EMULATOR_HOST`` set by the caller wins; otherwise the mesh file written by
    ``salesmesh up`` names the emulator. Returns the emulator host in use, or None.
    """
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return os.environ["STORAGE_EMULATOR_HOST"]
    path = settings.state_dir / MESH_FILE
    try:
        host = json.loads(path.read_text())["storage_emulator_host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    os.environ["STORAGE_EMULATOR_HOST"] = str(host)
    return str(host)
