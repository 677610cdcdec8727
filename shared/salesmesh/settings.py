"""Settings: one frozen dataclass, read from the environment once, at the edge.

Every function, the trainer and the local mesh build a :class:`Settings` with
:meth:`Settings.from_env` and pass it down; nothing else reads ``os.environ``. Tests pass a plain
dict instead of monkeypatching. A bad value fails here, at start-up, with the variable's name,
its value and what is allowed — not later as a 404 from a bucket that cannot exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
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
    "replace_prefix": "SALESMESH_REPLACE_PREFIX",
    "history_quiet": "SALESMESH_HISTORY_QUIET",
    "horizon": "SALESMESH_HORIZON",
    "state_dir": "SALESMESH_STATE_DIR",
    "training_image": "SALESMESH_TRAINING_IMAGE",
    "service_account": "SALESMESH_SERVICE_ACCOUNT",
    "serving_image": "SALESMESH_SERVING_IMAGE",
    "serving_service_account": "SALESMESH_SERVING_SERVICE_ACCOUNT",
    "model_name": "SALESMESH_MODEL_NAME",
    "endpoint": "SALESMESH_ENDPOINT",
    "canary_percent": "SALESMESH_CANARY_PERCENT",
    "canary_seconds": "SALESMESH_CANARY_SECONDS",
    "gate_tolerance": "SALESMESH_GATE_TOLERANCE",
    "keep_deployed": "SALESMESH_KEEP_DEPLOYED",
    "rollback_cooldown": "SALESMESH_ROLLBACK_COOLDOWN",
    "live_margin": "SALESMESH_LIVE_MARGIN",
    "live_min_points": "SALESMESH_LIVE_MIN_POINTS",
    "tasks_queue": "SALESMESH_TASKS_QUEUE",
    "deploy_url": "SALESMESH_DEPLOY_URL",
    "tasks_service_account": "SALESMESH_TASKS_SERVICE_ACCOUNT",
    "faults": "SALESMESH_FAULTS",
    "alerts_topic": "SALESMESH_ALERTS_TOPIC",
    "alert_scale": "SALESMESH_ALERT_SCALE",
    "regressors": "SALESMESH_REGRESSORS",
}
# The canary serves its share this long before taking all traffic, unless set: short on the
# local mesh (a demo should not wait); on Vertex AI long enough for monitoring to see it, yet
# inside an event-driven function's 540 s limit with time to spare for the deploy itself.
CANARY_SECONDS = {"local": 2.0, "gcp": 240.0}
NO_PROJECT = (
    "no Google Cloud project for SALESMESH_BACKEND=gcp: GOOGLE_CLOUD_PROJECT is not set and "
    "Application Default Credentials name none. Set GOOGLE_CLOUD_PROJECT=<project id>, or give "
    "ADC a project (`gcloud config set project <project id>` after `gcloud auth "
    "application-default login`, or a service-account key in GOOGLE_APPLICATION_CREDENTIALS)"
)
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")  # a Vertex AI model id / endpoint id we create
_QUEUE = re.compile(r"^[A-Za-z0-9-]{1,100}$")  # a Cloud Tasks queue id
# a function URL; never plain http: Cloud Tasks would send the OIDC token in the clear
_URL = re.compile(r"^https://[^\s/]+(/\S*)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# Vertex AI's own endpoint ids are numbers (int64, no leading zero); Terraform's
# google_vertex_ai_endpoint and every endpoint created without a custom id have one.
_NUMERIC_ID = re.compile(r"^[1-9][0-9]{0,18}$")
_ENDPOINT_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/endpoints/([^/]+)$")
_NAME_RULE = "1-63 lowercase letters, digits or '-', starting with a letter"
_ENDPOINT_RULE = (
    f"an endpoint id ({_NAME_RULE}; or Vertex AI's numeric id) or its resource name "
    "projects/PROJECT/locations/REGION/endpoints/ID"
)
_NOT_REGRESSORS = ("date", "store_id", "product_id", "sales")
_FAULT = re.compile(r"^crash-at:(deploying|operation|canary|promoting)$")  # rollout.faults
# A Pub/Sub topic id: 3-255 letters, digits and "-_.~+%", starting with a letter, not "goog".
# The subscription and dead-letter topic ids derived from it (:meth:`Settings.subscription`)
# add at most 64 characters, so the topic keeps to 190.
_TOPIC = re.compile(r"^(?!goog)[A-Za-z][A-Za-z0-9._~+%-]{2,189}$")


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
    # an upload under <upload_prefix><replace_prefix> replaces the sales history instead of
    # merging into it (salesmesh.sales): the documented way to drop rows
    replace_prefix: str = "replace/"
    # a training run resolves the sales history once it has not changed for this long
    # (seconds), so a burst of uploads folds into one run
    history_quiet: float = 5.0
    horizon: int = 28
    state_dir: Path = field(default_factory=lambda: Path(".salesmesh"))
    training_image: str | None = None
    service_account: str | None = None
    serving_image: str | None = None
    # the identity deployed models run as; unset, the training one (SALESMESH_SERVICE_ACCOUNT)
    serving_service_account: str | None = None
    # the one model every run becomes a version of, and the endpoint serving it
    model_name: str = "salesmesh-demand"
    endpoint: str = "salesmesh"
    canary_percent: int = 10
    canary_seconds: float | None = None
    # a challenger may be at most this much worse (relative backtest MASE) than the champion
    gate_tolerance: float = 0.05
    # deployed models kept: the champion and, at 0 % traffic, its warm standby
    keep_deployed: int = 2
    # after an automatic rollback, incidents do not roll back again for this long (seconds): a
    # flapping alert must not walk the endpoint back through every version it ever had
    rollback_cooldown: float = 600.0
    # live accuracy: a serving version whose live MASE exceeds its backtest MASE by more than
    # this fraction, over at least live_min_points scored points, is reported degraded
    live_margin: float = 0.25
    live_min_points: int = 28
    # delayed rollout steps: the Cloud Tasks queue, deploy_model's URL it POSTs to, and the
    # identity whose OIDC token Cloud Tasks attaches (the function's invoker)
    tasks_queue: str = "salesmesh-rollout"
    deploy_url: str | None = None
    tasks_service_account: str | None = None
    # fault injection, local mesh only: e.g. ("crash-at:canary",) (salesmesh.rollout.faults)
    faults: tuple[str, ...] = ()
    # the topic incidents are published to (alert_handler's trigger); its subscriptions and
    # dead-letter topic are named after it (subscription(), dead_letter_topic())
    alerts_topic: str = "salesmesh-alerts"
    # the local monitor runs the alert policies' windows and durations times this (0.05: a
    # 60 s window becomes 3 s); thresholds never change
    alert_scale: float = 1.0
    # extra columns known in advance (planned ahead, like price and promo): the trainer lets the
    # model read them on the forecast dates; every other extra column is ignored
    regressors: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Settings from ``env``; unset or empty variables take the defaults."""
        # An empty value counts as unset: Terraform and shells export optional values as "".
        given: dict[str, Any] = {
            name: env[var] for name, var in ENV_VARS.items() if env.get(var, "") != ""
        }
        for name in _NUMBERS:
            if name in given:
                given[name] = _number(name, given[name])
        if "state_dir" in given:
            given["state_dir"] = Path(given["state_dir"])
        if given.get("backend") == "gcp" and "project" not in given:
            # "local" would send every call to projects/local/...; ask ADC instead, as the SDKs do
            given["project"] = _default_project()
        if "faults" in given:
            given["faults"] = tuple(f.strip() for f in given["faults"].split(",") if f.strip())
        if "regressors" in given:
            given["regressors"] = declared_regressors(env)
        return cls(**given)

    def __post_init__(self) -> None:
        if not self.project:
            _invalid("project", self.project, "a Google Cloud project id")
        if self.backend == "gcp" and self.project == "local":
            # the local default; no real project has so short an id (6-30 characters)
            raise ConfigError(NO_PROJECT)
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
        for name in ("upload_prefix", "quarantine_prefix", "replace_prefix"):
            value = getattr(self, name)
            if not value.endswith("/") or value.startswith("/"):
                _invalid(name, value, "a folder such as 'uploads/': ends with '/', no leading '/'")
        if self.quarantine_prefix.startswith(self.upload_prefix) or self.upload_prefix.startswith(
            self.quarantine_prefix
        ):
            # a quarantined copy under the upload prefix would be delivered again as an upload
            allowed = f"a folder that neither contains nor is inside {self.upload_prefix!r}"
            _invalid("quarantine_prefix", self.quarantine_prefix, allowed)
        for name, (_, valid, allowed) in _NUMBERS.items():
            value = getattr(self, name)
            if not (value is None and name == "canary_seconds") and not valid(value):
                _invalid(name, value, allowed)
        if not _NAME.match(self.model_name):
            _invalid("model_name", self.model_name, _NAME_RULE)
        if self.backend == "gcp":
            endpoint_resource_name(self.endpoint, self.project, self.region)
        elif not _NAME.match(self.endpoint):
            # the local endpoint is a folder under the state folder: a plain name only
            _invalid("endpoint", self.endpoint, f"on the local backend a folder name: {_NAME_RULE}")
        for fault in self.faults:
            if not _FAULT.match(fault):
                _invalid("faults", ",".join(self.faults), "comma-separated faults: crash-at:POINT")
            if self.backend != "local":
                _invalid("faults", ",".join(self.faults), "none: faults exist on the local mesh")
        if not _TOPIC.match(self.alerts_topic):
            allowed = "a Pub/Sub topic id: 3-190 letters, digits or '-_.~+%' from a letter"
            _invalid("alerts_topic", self.alerts_topic, allowed)
        if not _QUEUE.match(self.tasks_queue):
            allowed = "a Cloud Tasks queue id: 1-100 letters, digits or '-'"
            _invalid("tasks_queue", self.tasks_queue, allowed)
        if self.deploy_url is not None and not _URL.match(self.deploy_url):
            _invalid("deploy_url", self.deploy_url, "an https:// URL (deploy_model's function URL)")
        for account in ("service_account", "serving_service_account", "tasks_service_account"):
            value = getattr(self, account)
            if value is not None and not _EMAIL.match(value):
                _invalid(account, value, "a service account email")
        _check_regressors(self.regressors)

    @property
    def endpoint_id(self) -> str:
        """The endpoint's bare id, whichever form SALESMESH_ENDPOINT gave it in.

        The last part of a ``projects/P/locations/L/endpoints/ID`` name; what Cloud Monitoring
        calls ``resource.labels.endpoint_id``.
        """
        return self.endpoint.rsplit("/", 1)[-1]

    def replaces_history(self, name: str) -> bool:
        """Whether the upload ``name`` replaces the sales history (it lies under the replace
        prefix inside the upload prefix) rather than merging into it."""
        return name.startswith(self.upload_prefix + self.replace_prefix)

    @property
    def canary_wait(self) -> float:
        """Seconds the canary serves its share before taking all traffic."""
        if self.canary_seconds is not None:
            return self.canary_seconds
        return CANARY_SECONDS[self.backend]

    def topic(self, role: str) -> str:
        """The topic name for a wiring role: ``alerts``."""
        names = {"alerts": self.alerts_topic}
        if role not in names:
            raise ConfigError(f"unknown topic role {role!r}; expected one of {sorted(names)}")
        return names[role]

    def subscription(self, role: str, function: str) -> str:
        """The subscription that delivers topic ``role`` to ``function``:
        ``<topic>-<function>`` with ``_`` as ``-`` (``salesmesh-alerts-alert-handler``)."""
        return f"{self.topic(role)}-{function.replace('_', '-')}"

    def dead_letter_topic(self, role: str) -> str:
        """Where the subscriptions of topic ``role`` send what they could not deliver."""
        return f"{self.topic(role)}-dead-letter"

    def bucket(self, role: str) -> str:
        """The bucket name for a wiring role: ``data``, ``model`` or ``state``."""
        names = {"data": self.data_bucket, "model": self.model_bucket, "state": self.state_bucket}
        if role not in names:
            raise ConfigError(f"unknown bucket role {role!r}; expected one of {sorted(names)}")
        return names[role]


def declared_regressors(env: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The extra columns SALESMESH_REGRESSORS declares known in advance, checked.

    The trainer and ``salesmesh validate`` read this one setting alone: checking a sales file
    must not depend on, say, a Google Cloud project being configured.
    """
    text = env.get(ENV_VARS["regressors"], "")
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    _check_regressors(names)
    return names


def _check_regressors(names: tuple[str, ...]) -> None:
    if any(name.strip().lower() in _NOT_REGRESSORS or not name.strip() for name in names):
        allowed = "comma-separated names of extra columns (not date, store_id, product_id, sales)"
        _invalid("regressors", ",".join(names), allowed)


def endpoint_resource_name(endpoint: str, project: str, location: str) -> str:
    """The Vertex AI resource name of ``endpoint``: an id, numeric or custom, or a full name.

    A full ``projects/P/locations/L/endpoints/ID`` name must lie in ``location`` and ``project``.
    A project number and a project id cannot be compared without asking Resource Manager, so a
    number on one side and an id on the other passes; Vertex AI itself writes names with the
    project number. ConfigError, naming SALESMESH_ENDPOINT, otherwise.
    """
    found = _ENDPOINT_NAME.match(endpoint)
    endpoint_id = found.group(3) if found else endpoint
    if not (_NAME.match(endpoint_id) or _NUMERIC_ID.match(endpoint_id)):
        _invalid("endpoint", endpoint, _ENDPOINT_RULE)
    if found is None:
        return f"projects/{project}/locations/{location}/endpoints/{endpoint}"
    in_project, in_location = found.group(1), found.group(2)
    if in_location != location:
        where = f"an endpoint in {ENV_VARS['region']}={location!r}, not in {in_location!r}"
        _invalid("endpoint", endpoint, f"{where}: set the region the endpoint lives in")
    if in_project != project and in_project.isdigit() == project.isdigit():
        where = f"an endpoint of {ENV_VARS['project']}={project!r}, not of {in_project!r}"
        _invalid("endpoint", endpoint, f"{where}: a function serves its own project's endpoint")
    return endpoint


def _default_project() -> str:
    """The project Application Default Credentials name, or ConfigError saying how to set one."""
    import google.auth  # here: only the gcp backend without GOOGLE_CLOUD_PROJECT needs it
    from google.auth.exceptions import DefaultCredentialsError

    try:
        _, project = google.auth.default()
    except DefaultCredentialsError:
        project = None
    if not project:
        raise ConfigError(NO_PROJECT)
    return project


def _whole(low: int, high: int | None = None) -> Callable[[object], bool]:
    def valid(value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return low <= value and (high is None or value <= high)

    return valid


def _between(low: float, high: float) -> Callable[[object], bool]:
    def valid(value: object) -> bool:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and low <= value <= high  # type: ignore[operator]

    return valid


def _scale(value: object) -> bool:
    # above 0: a zero-length window measures nothing; at most 1: slower than the real
    # policies would only delay a rollback
    return _between(0, 1)(value) and value != 0


# numeric settings: type parsed from the environment, range check, what is allowed
_NUMBERS: dict[str, tuple[type[int] | type[float], Callable[[object], bool], str]] = {
    "horizon": (int, _whole(1), "a positive whole number of periods"),
    "history_quiet": (float, _between(0, 3600), "seconds from 0 to 3600"),
    "canary_percent": (int, _whole(1, 99), "a whole percentage from 1 to 99"),
    "keep_deployed": (int, _whole(1), "a whole number of deployed models, at least 1"),
    "canary_seconds": (float, _between(0, 86_400), "seconds from 0 to 86400"),
    "gate_tolerance": (float, _between(0, 1), "a fraction from 0 to 1, such as 0.05"),
    "rollback_cooldown": (float, _between(0, 86_400), "seconds from 0 to 86400"),
    "live_margin": (float, _between(0, 10), "a fraction from 0 to 10, such as 0.25"),
    "live_min_points": (int, _whole(1), "a positive whole number of points"),
    "alert_scale": (float, _scale, "a factor above 0 and at most 1, such as 0.05"),
}


def _number(name: str, text: str) -> int | float:
    # checked here as well as on construction so the message quotes the text that was set
    kind, valid, allowed = _NUMBERS[name]
    try:
        value = kind(text)
    except ValueError:
        _invalid(name, text, allowed)
    if not valid(value):  # NaN fails every range check too
        _invalid(name, text, allowed)
    return value


def _invalid(name: str, value: object, allowed: str) -> NoReturn:
    raise ConfigError(f"{ENV_VARS[name]}={value!r} is invalid: expected {allowed}")
