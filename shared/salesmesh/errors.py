"""One error family: every error salesmesh raises on purpose derives from MeshError."""

import sys


class MeshError(Exception):
    """Base for every error salesmesh raises on purpose."""


class InvalidDatasetError(MeshError):
    """An uploaded sales file breaks the data contract; the message says where and how."""


class SourceError(MeshError):
    """A data or artifact location cannot be read: missing file, bucket or object, bad URI."""


class ArtifactIntegrityError(MeshError):
    """A model artifact is incomplete or does not match its manifest; nothing was loaded."""


class ForecastError(MeshError):
    """A forecaster was asked for something it cannot do (too little history, bad horizon)."""


class LaunchError(MeshError):
    """A training run could not be started, or its launch record never became readable."""


class DeployError(MeshError):
    """A model version could not be deployed or never became healthy; traffic is unchanged."""


class PredictionError(MeshError):
    """A prediction request was refused or failed; ``reasons`` holds one entry per instance."""

    def __init__(self, message: str, status: int = 0, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reasons = reasons or []


class MetricsError(MeshError):
    """Live traffic metrics cannot be read now (no router runs, Cloud Monitoring refused); the
    message says what to start or grant. The caller decides what a missing figure means."""


class GateEvidenceError(MeshError):
    """A version's gate evidence (error tables in ``metrics.json``) is missing columns or holds
    impossible values; the message names the table and the column. The gate then falls back to
    the backtest-MASE rule and says so."""


class BadEventError(MeshError):
    """A delivered CloudEvent is not what the handler expects; the message names the field."""


class ConfigError(MeshError):
    """A setting from the environment is invalid; the message names the variable and the fix."""


class WiringError(ConfigError):
    """The trigger wiring file is malformed; the message names the trigger and the field."""


def exit_status(program: str, error: MeshError) -> int:
    """Print ``program: error: ...`` on stderr; return the command-line exit code for it.

    A source that cannot be read is the caller's mistake, like a bad flag (2); anything else
    salesmesh refused is a failed check or run (1).
    """
    print(f"{program}: error: {error}", file=sys.stderr)
    return 2 if isinstance(error, SourceError) else 1
