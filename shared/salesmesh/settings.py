"""Settings: one frozen dataclass, read from the environment once, at the edge.

Every function, the trainer and the local mesh build a :class:`Settings` with
:meth:`Settings.from_env` and pass it down; nothing else reads ``os.environ``. Tests pass a plain
dict instead of monkeypatching. A bad value fails here, at start-up, with the variable's name,
its value and what is allowed — not later as a 404 from a bucket that cannot exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from salesmesh.errors import ConfigError

BACKENDS = ("local", "gcp")
# GCS bucket names: 3-63 characters of lowercase letters, digits, '-', '_' and '.', starting
# and ending with a letter or digit (https://cloud.google.com/storage/docs/buckets#naming).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")  # europe-west1, northamerica-northeast2

# field -> environment variable; error messages name the variable so the fix is obvious
ENV_VARS: dict[str, str] = {
    "project": "GOOGLE_CLOUD_PROJECT",
    "region": "SALESMESH_REGION",
    "backend": "SALESMESH_BACKEND",
    "data_bucket": "SALESMESH_DATA_BUCKET",
    "model_bucket": "SALESMESH_MODEL_BUCKET",
    "state_bucket": "SALESMESH_STATE_BUCKET",
    "upload_prefix": "SALESMESH_UPLOAD_PREFIX",
    "quarantine_prefix": "SALESMESH_QUARANTINE_PREFIX",
    "horizon": "SALESMESH_HORIZON",
    "state_dir": "SALESMESH_STATE_DIR",
    "training_image": "SALESMESH_TRAINING_IMAGE",
    "service_account": "SALESMESH_SERVICE_ACCOUNT",
}


@dataclass(frozen=True)
class Settings:
    """Where the mesh runs and what it names things; validated on construction."""

    project: str = "local"
    region: str = "europe-west1"
    backend: str = "local"
    data_bucket: str = "salesmesh-data"
    model_bucket: str = "salesmesh-models"
    state_bucket: str = "salesmesh-state"
    upload_prefix: str = "uploads/"
    quarantine_prefix: str = "quarantine/"
    horizon: int = 28
    state_dir: Path = field(default_factory=lambda: Path(".salesmesh"))
    training_image: str | None = None
    service_account: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Settings from ``env``; unset or empty variables take the defaults."""
        # An empty value counts as unset: Terraform and shells export optional values as "".
        given: dict[str, Any] = {
            name: env[var] for name, var in ENV_VARS.items() if env.get(var, "") != ""
        }
        if "horizon" in given:
            given["horizon"] = _whole_number(given["horizon"])
        if "state_dir" in given:
            given["state_dir"] = Path(given["state_dir"])
        return cls(**given)

    def __post_init__(self) -> None:
        if not self.project:
            _invalid("project", self.project, "a Google Cloud project id")
        if not _REGION.match(self.region):
            _invalid("region", self.region, "a Google Cloud region such as 'europe-west1'")
        if self.backend not in BACKENDS:
            _invalid("backend", self.backend, f"one of {', '.join(BACKENDS)}")
        buckets = ("data_bucket", "model_bucket", "state_bucket")
        for name in buckets:
            if not _BUCKET.match(getattr(self, name)):
                allowed = "3-63 lowercase letters, digits, '-', '_' or '.', "
                _invalid(name, getattr(self, name), allowed + "starting and ending alphanumeric")
        for i, name in enumerate(buckets):
            for other in buckets[i + 1 :]:
                if getattr(self, name) == getattr(self, other):
                    # a model landing in the data bucket would look like an upload: an event loop
                    _invalid(other, getattr(self, other), f"a bucket other than {ENV_VARS[name]}'s")
        for name in ("upload_prefix", "quarantine_prefix"):
            value = getattr(self, name)
            if not value.endswith("/") or value.startswith("/"):
                _invalid(name, value, "a folder such as 'uploads/': ends with '/', no leading '/'")
        if self.quarantine_prefix.startswith(self.upload_prefix) or self.upload_prefix.startswith(
            self.quarantine_prefix
        ):
            # a quarantined copy under the upload prefix would be delivered again as an upload
            allowed = f"a folder that neither contains nor is inside {self.upload_prefix!r}"
            _invalid("quarantine_prefix", self.quarantine_prefix, allowed)
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1:
            _invalid("horizon", self.horizon, "a positive whole number of periods")

    def bucket(self, role: str) -> str:
        """The bucket name for a wiring role: ``data``, ``model`` or ``state``."""
        names = {"data": self.data_bucket, "model": self.model_bucket, "state": self.state_bucket}
        if role not in names:
            raise ConfigError(f"unknown bucket role {role!r}; expected one of {sorted(names)}")
        return names[role]


def _whole_number(text: str) -> int:
    # checked here as well as in __post_init__ so the message quotes the text that was set
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        _invalid("horizon", text, "a positive whole number of periods")
    return value


def _invalid(name: str, value: object, allowed: str) -> NoReturn:
    raise ConfigError(f"{ENV_VARS[name]}={value!r} is invalid: expected {allowed}")
