"""What a function needs at run time, built from :class:`Settings` at the edge.

Kept out of the handlers so each ``main.py`` stays a shell: settings in, backend picked by name,
logs where the backend reads them (stdout for Cloud Logging; also a file under the state folder
locally, which ``salesmesh logs`` reads).
"""

from __future__ import annotations

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
    return training_launcher(
        "gcp",
        project=settings.project,
        location=settings.region,
        staging_bucket=f"gs://{settings.state_bucket}",
        container_uri=settings.training_image,
        service_account=settings.service_account,
    )


def logger(component: str, settings: Settings) -> Logger:
    """Structured logs to stdout, and locally to ``<state_dir>/logs/mesh.jsonl`` too."""
    path = settings.state_dir / "logs" / LOG_FILE if settings.backend == "local" else None
    return Logger(component, path=path)
