"""``salesmesh doctor --project P``: is this project ready for the mesh? A preflight, read-only.

It asks the project, through the official client libraries, for everything the deployed mesh
relies on, and says per item what is wrong and how to fix it:

- **project**: reachable with the caller's credentials (its number names the service agents);
- **apis**: each API in :data:`APIS` enabled (the list ``terraform/apis.tf`` enables; a test
  keeps them equal);
- **agents**: the Google service agents the chain goes through exist (Cloud Storage publishes
  trigger events, Pub/Sub and Eventarc deliver them, Cloud Functions builds, Vertex AI pulls
  images); each appears in the project's IAM policy once created;
- **iam**: every grant of :data:`salesmesh.cloud.grants.NEEDS`, read from the policy of the
  resource it is on (project, bucket, topic, queue, service account, function);
- **resources**: the data, model and state buckets (private, in the region), the alerts topic
  and its dead-letter topic, the rollout queue (running), the Vertex AI endpoint, the three
  functions (active) and the training and serving images' tags.

Names are the settings' (``SALESMESH_*``, as ``terraform output cli_environment`` gives them);
``--prefix`` names the buckets as Terraform does. Nothing is changed (asking Cloud Storage for
its agent's email makes that agent if it never existed, as Terraform's data source does too).
A check the caller may not read fails saying which permission is missing rather than guessing.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from salesmesh.cloud.grants import NEEDS, Need, account_email, member
from salesmesh.errors import ConfigError

# every API the mesh calls: the file terraform/apis.tf enables them from
APIS: tuple[str, ...] = tuple(
    json.loads(resources.files("salesmesh.cloud").joinpath("apis.json").read_text())["apis"]
)
# service agents that hold a project role once their API created them: name -> (account, API)
AGENT_ACCOUNTS = {
    "Pub/Sub": ("service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com", "pubsub"),
    "Eventarc": ("service-{number}@gcp-sa-eventarc.iam.gserviceaccount.com", "eventarc"),
    "Cloud Functions": (
        "service-{number}@gcf-admin-robot.iam.gserviceaccount.com",
        "cloudfunctions",
    ),
    "Vertex AI": ("service-{number}@gcp-sa-aiplatform.iam.gserviceaccount.com", "aiplatform"),
}
FUNCTIONS = ("train_trigger", "deploy_model", "alert_handler")
_IMAGE = re.compile(
    r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/"
    r"(?P<package>[^:@]+):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$"
)


@dataclass(frozen=True)
class Finding:
    """One item checked: ``ok``, what was found, and the fix when it is not."""

    area: str  # project, apis, agents, iam, resources
    item: str
    ok: bool
    detail: str = ""
    fix: str = ""


@dataclass(frozen=True)
class Target:
    """What the preflight looks for: the project and the mesh's resource names."""

    project: str
    region: str
    buckets: Mapping[str, str]  # data, model, state -> name
    alerts_topic: str
    tasks_queue: str
    endpoint: str
    images: Mapping[str, str | None]  # training, serving -> image URI (unset: None)


class Clients:
    """The official clients, made on first use (each import is heavy); tests hand in fakes
    specced on the same classes."""

    def __init__(self, target: Target, **given: Any) -> None:
        self._target = target
        self._made: dict[str, Any] = dict(given)

    def _client(self, name: str, module: str, cls: str, **kwargs: Any) -> Any:
        if name not in self._made:
            self._made[name] = getattr(importlib.import_module(module), cls)(**kwargs)
        return self._made[name]

    @property
    def projects(self) -> Any:
        return self._client("projects", "google.cloud.resourcemanager_v3", "ProjectsClient")

    @property
    def services(self) -> Any:
        return self._client("services", "google.cloud.service_usage_v1", "ServiceUsageClient")

    @property
    def storage(self) -> Any:
        return self._client(
            "storage", "google.cloud.storage", "Client", project=self._target.project
        )

    @property
    def publisher(self) -> Any:
        return self._client("publisher", "google.cloud.pubsub_v1", "PublisherClient")

    @property
    def tasks(self) -> Any:
        return self._client("tasks", "google.cloud.tasks_v2", "CloudTasksClient")

    @property
    def iam(self) -> Any:
        return self._client("iam", "google.cloud.iam_admin_v1", "IAMClient")

    @property
    def functions(self) -> Any:
        return self._client("functions", "google.cloud.functions_v2", "FunctionServiceClient")

    @property
    def run(self) -> Any:
        return self._client("run", "google.cloud.run_v2", "ServicesClient")

    @property
    def registry(self) -> Any:
        return self._client(
            "registry", "google.cloud.artifactregistry_v1", "ArtifactRegistryClient"
        )

    @property
    def endpoints(self) -> Any:
        options = {"api_endpoint": f"{self._target.region}-aiplatform.googleapis.com"}
        return self._client(
            "endpoints",
            "google.cloud.aiplatform_v1",
            "EndpointServiceClient",
            client_options=options,
        )


def _errors() -> Any:
    return importlib.import_module("google.api_core.exceptions")


def _call_errors() -> tuple[type[Exception], ...]:
    """What a call to Google Cloud raises: an API error, or no usable credentials. Anything
    else is a bug here and is not turned into a finding."""
    auth = importlib.import_module("google.auth.exceptions")
    return (_errors().GoogleAPIError, auth.GoogleAuthError)


def _failure(area: str, item: str, exc: Exception, what: str, fix: str) -> Finding:
    """A call that failed, as a finding: missing, not readable by the caller, or other."""
    errors = _errors()
    if isinstance(exc, errors.NotFound):
        return Finding(area, item, False, f"{what} does not exist", fix)
    if isinstance(exc, errors.PermissionDenied | errors.Forbidden):
        return Finding(
            area,
            item,
            False,
            f"the caller may not read {what}: {_first_line(exc)}",
            "run the preflight as a project owner or with roles/viewer and "
            "roles/iam.securityReviewer",
        )
    return Finding(area, item, False, f"reading {what} failed: {_first_line(exc)}", fix)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _members(policy: Any) -> dict[str, set[str]]:
    """role -> members of a policy: a protobuf Policy, or google.api_core.iam.Policy (GCS)."""
    found: dict[str, set[str]] = {}
    for binding in policy.bindings:
        if isinstance(binding, Mapping):
            role, members = binding["role"], binding["members"]
        else:
            role, members = binding.role, binding.members
        if getattr(binding, "condition", None) and str(binding.condition.expression):
            continue  # a conditional grant may not hold when the mesh acts: not counted
        found.setdefault(role, set()).update(members)
    return found


APPLY = "terraform apply (terraform/)"


class Doctor:
    """Runs every check against ``target`` through ``clients``."""

    def __init__(self, target: Target, clients: Clients | None = None) -> None:
        self.target = target
        self.clients = clients or Clients(target)
        self.number = ""
        self._policies: dict[tuple[str, str], dict[str, set[str]] | Finding] = {}
        self._buckets: dict[str, Any] = {}

    def run(self) -> Iterator[Finding]:
        project = self.check_project()
        yield project
        if not project.ok:
            return  # nothing else can be read
        yield from self.check_apis()
        yield from self.check_agents()
        yield from self.check_resources()
        yield from self.check_iam()

    # project, APIs, agents ----------------------------------------------------------------

    def check_project(self) -> Finding:
        name = f"projects/{self.target.project}"
        try:
            found = self.clients.projects.get_project(name=name)
        except _call_errors() as exc:
            return _failure(
                "project",
                self.target.project,
                exc,
                f"project {self.target.project}",
                "check the project id and `gcloud auth application-default login`",
            )
        self.number = str(found.name).rsplit("/", 1)[-1]
        return Finding("project", self.target.project, True, f"project number {self.number}")

    def check_apis(self) -> Iterator[Finding]:
        parent = f"projects/{self.target.project}"
        names = [f"{parent}/services/{api}" for api in APIS]
        try:
            response = self.clients.services.batch_get_services(
                request={"parent": parent, "names": names}
            )
        except _call_errors() as exc:
            yield _failure("apis", "services", exc, "the project's services", APPLY)
            return
        enabled = {
            str(s.name).rsplit("/", 1)[-1] for s in response.services if s.state.name == "ENABLED"
        }
        for api in APIS:
            ok = api in enabled
            fix = f"gcloud services enable {api} --project {self.target.project}"
            yield Finding("apis", api, ok, "enabled" if ok else "not enabled", "" if ok else fix)

    def check_agents(self) -> Iterator[Finding]:
        policy = self._policy("project", "")
        try:
            storage_agent = self.clients.storage.get_service_account_email(
                project=self.target.project
            )
            yield Finding("agents", "Cloud Storage", True, storage_agent)
        except _call_errors() as exc:
            yield _failure("agents", "Cloud Storage", exc, "the Cloud Storage service agent", APPLY)
        for name, (account, api) in AGENT_ACCOUNTS.items():
            email = account.format(number=self.number)
            if isinstance(policy, Finding):
                yield Finding("agents", name, False, policy.detail, policy.fix)
                continue
            ok = any(f"serviceAccount:{email}" in members for members in policy.values())
            fix = (
                f"gcloud beta services identity create --service={api}.googleapis.com "
                f"--project {self.target.project} (and enable the API first)"
            )
            yield Finding(
                "agents", name, ok, email if ok else f"{email} holds no role", "" if ok else fix
            )

    # resources ------------------------------------------------------------------------------

    def check_resources(self) -> Iterator[Finding]:
        for role, name in self.target.buckets.items():
            yield self._bucket(role, name)
        for topic in (self.target.alerts_topic, f"{self.target.alerts_topic}-dead-letter"):
            yield self._exists(f"topic {topic}", self._topic_reader(topic))
        yield self._queue()
        yield self._endpoint()
        for function in FUNCTIONS:
            yield self._function(function)
        for kind, image in self.target.images.items():
            yield self._image(kind, image)

    def _topic_reader(self, topic: str) -> Callable[[], Any]:
        path = f"projects/{self.target.project}/topics/{topic}"
        return lambda: self.clients.publisher.get_topic(topic=path)

    def _exists(self, what: str, read: Callable[[], Any], fix: str = APPLY) -> Finding:
        try:
            read()
        except _call_errors() as exc:
            return _failure("resources", what, exc, what, fix)
        return Finding("resources", what, True, "present")

    def _bucket(self, role: str, name: str) -> Finding:
        what = f"{role} bucket {name}"
        try:
            bucket = self._get_bucket(name)
        except _call_errors() as exc:
            return _failure("resources", what, exc, what, APPLY)
        problems = []
        config = bucket.iam_configuration
        if not config.uniform_bucket_level_access_enabled:
            problems.append("uniform bucket-level access is off")
        if config.public_access_prevention != "enforced":
            problems.append("public access prevention is not enforced")
        if str(bucket.location).lower() != self.target.region:
            problems.append(f"it is in {bucket.location}, not {self.target.region}")
        if problems:
            return Finding("resources", what, False, "; ".join(problems), APPLY)
        return Finding("resources", what, True, f"private, in {self.target.region}")

    def _queue(self) -> Finding:
        name = self._queue_name()
        what = f"queue {self.target.tasks_queue}"
        try:
            queue = self.clients.tasks.get_queue(name=name)
        except _call_errors() as exc:
            return _failure("resources", what, exc, what, APPLY)
        if queue.state.name != "RUNNING":
            fix = (
                f"gcloud tasks queues resume {self.target.tasks_queue} "
                f"--location {self.target.region}"
            )
            return Finding("resources", what, False, f"state {queue.state.name}, not RUNNING", fix)
        return Finding("resources", what, True, "running")

    def _endpoint(self) -> Finding:
        from salesmesh.settings import endpoint_resource_name

        name = endpoint_resource_name(self.target.endpoint, self.target.project, self.target.region)
        what = f"endpoint {self.target.endpoint}"
        return self._exists(what, lambda: self.clients.endpoints.get_endpoint(name=name))

    def _function(self, function: str) -> Finding:
        name = self._function_name(function)
        what = f"function {function.replace('_', '-')}"
        try:
            found = self.clients.functions.get_function(name=name)
        except _call_errors() as exc:
            return _failure("resources", what, exc, what, APPLY)
        if found.state.name != "ACTIVE":
            why = "; ".join(str(m.message) for m in found.state_messages) or "see its build logs"
            return Finding("resources", what, False, f"state {found.state.name}: {why}", APPLY)
        return Finding("resources", what, True, "active")

    def _image(self, kind: str, image: str | None) -> Finding:
        what = f"{kind} image"
        variable = "SALESMESH_TRAINING_IMAGE" if kind == "training" else "SALESMESH_SERVING_IMAGE"
        if not image:
            return Finding(
                "resources",
                what,
                False,
                f"{variable} is not set",
                "export the functions' settings (terraform output cli_environment) or pass "
                "--image-tag",
            )
        match = _IMAGE.match(image)
        if match is None:
            return Finding(
                "resources",
                what,
                False,
                f"{image} is not an Artifact Registry image tagged by commit",
                "LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/NAME:TAG (containers/README.md)",
            )
        g = match.groupdict()
        name = (
            f"projects/{g['project']}/locations/{g['location']}/repositories/{g['repository']}"
            f"/packages/{g['package']}/tags/{g['tag']}"
        )
        push = f"build and push it: docker push {image} (containers/README.md)"
        return self._exists(
            f"{what} {image}", lambda: self.clients.registry.get_tag(name=name), push
        )

    # IAM ------------------------------------------------------------------------------------

    def check_iam(self) -> Iterator[Finding]:
        for need in NEEDS:
            yield self._need(need)

    def _need(self, need: Need) -> Finding:
        where = f"the {need.target} {need.kind}" if need.target else "the project"
        item = f"{need.who}: {need.role} on {where}"
        policy = self._policy(need.kind, need.target)
        if isinstance(policy, Finding):
            return Finding("iam", item, False, policy.detail, policy.fix)
        wanted = member(need.who, self.target.project, self.number)
        if wanted in policy.get(need.role, set()):
            return Finding("iam", item, True, need.why)
        return Finding(
            "iam",
            item,
            False,
            f"{wanted.split(':', 1)[1]} lacks it; the mesh needs it because it {need.why}",
            APPLY,
        )

    def _policy(self, kind: str, target: str) -> dict[str, set[str]] | Finding:
        key = (kind, target)
        if key not in self._policies:
            self._policies[key] = self._read_policy(kind, target)
        return self._policies[key]

    def _read_policy(self, kind: str, target: str) -> dict[str, set[str]] | Finding:
        project = self.target.project
        readers: dict[str, Callable[[], Any]] = {
            "project": lambda: self.clients.projects.get_iam_policy(resource=f"projects/{project}"),
            "bucket": lambda: self._get_bucket(self.target.buckets[target]).get_iam_policy(
                requested_policy_version=3
            ),
            "topic": lambda: self.clients.publisher.get_iam_policy(
                request={"resource": f"projects/{project}/topics/{self._topic(target)}"}
            ),
            "queue": lambda: self.clients.tasks.get_iam_policy(resource=self._queue_name()),
            "service_account": lambda: self.clients.iam.get_iam_policy(
                resource=f"projects/{project}/serviceAccounts/{account_email(target, project)}"
            ),
            "function": lambda: self.clients.run.get_iam_policy(
                request={"resource": self._service_name(target)}
            ),
        }
        what = f"the IAM policy of {'the project' if kind == 'project' else f'{kind} {target}'}"
        try:
            return _members(readers[kind]())
        except _call_errors() as exc:
            return _failure("iam", what, exc, what, APPLY)

    def _get_bucket(self, name: str) -> Any:
        """The bucket, read once for both its settings and its IAM policy."""
        if name not in self._buckets:
            self._buckets[name] = self.clients.storage.get_bucket(name)
        return self._buckets[name]

    # names ----------------------------------------------------------------------------------

    def _topic(self, role: str) -> str:
        topics = {
            "alerts": self.target.alerts_topic,
            "alerts_dead_letter": f"{self.target.alerts_topic}-dead-letter",
        }
        return topics[role]

    def _queue_name(self) -> str:
        t = self.target
        return f"projects/{t.project}/locations/{t.region}/queues/{t.tasks_queue}"

    def _function_name(self, function: str) -> str:
        t = self.target
        return f"projects/{t.project}/locations/{t.region}/functions/{function.replace('_', '-')}"

    def _service_name(self, function: str) -> str:
        t = self.target
        return f"projects/{t.project}/locations/{t.region}/services/{function.replace('_', '-')}"


def target_from(
    settings: Any, project: str, prefix: str | None = None, image_tag: str | None = None
) -> Target:
    """The names to look for: the settings', the buckets by ``prefix`` as Terraform names
    them, the images by ``image_tag`` in the repository Terraform makes."""
    buckets = {
        "data": settings.data_bucket,
        "model": settings.model_bucket,
        "state": settings.state_bucket,
    }
    if prefix:
        buckets = {
            "data": f"{prefix}-data",
            "model": f"{prefix}-models",
            "state": f"{prefix}-state",
        }
    images: dict[str, str | None] = {
        "training": settings.training_image,
        "serving": settings.serving_image,
    }
    if image_tag:
        repository = f"{settings.region}-docker.pkg.dev/{project}/salesmesh"
        images = {
            "training": f"{repository}/salesmesh-train:{image_tag}",
            "serving": f"{repository}/salesmesh-serve:{image_tag}",
        }
    if not settings.region:
        raise ConfigError("SALESMESH_REGION is not set: the region the mesh was deployed to")
    return Target(
        project=project,
        region=settings.region,
        buckets=buckets,
        alerts_topic=settings.alerts_topic,
        tasks_queue=settings.tasks_queue,
        endpoint=settings.endpoint,
        images=images,
    )


def report(findings: Iterable[Finding]) -> tuple[str, bool]:
    """The findings as lines (failures with their fix) and whether all passed."""
    lines, ok = [], True
    for f in findings:
        ok = ok and f.ok
        mark = "ok  " if f.ok else "FAIL"
        lines.append(f"{mark}  {f.area:<9} {f.item}" + (f": {f.detail}" if f.detail else ""))
        if not f.ok and f.fix:
            lines.append(f"{'':15}fix: {f.fix}")
    failed = sum(1 for line in lines if line.startswith("FAIL"))
    lines.append(
        "ready: every check passed" if ok else f"not ready: {failed} check(s) failed (above)"
    )
    return "\n".join(lines), ok


def as_dicts(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]
