"""`salesmesh doctor --project`: every check against the official clients, specced with
autospec (a call the real client does not take fails here), answering in the clients' own
types: a ready project passes whole; each thing a real project can lack fails with its fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from google.api_core import exceptions
from google.api_core.iam import Policy as GcsPolicy
from google.cloud import (
    aiplatform_v1,
    artifactregistry_v1,
    functions_v2,
    iam_admin_v1,
    pubsub_v1,
    resourcemanager_v3,
    run_v2,
    service_usage_v1,
    storage,
    tasks_v2,
)
from google.iam.v1 import policy_pb2

from salesmesh import cli
from salesmesh.cloud import doctor
from salesmesh.cloud.grants import AGENTS, NEEDS, member

PROJECT, NUMBER, REGION = "acme-forecasts", "123456789012", "europe-west4"
TAG = "4f2a9c1"
TARGET = doctor.Target(
    project=PROJECT,
    region=REGION,
    buckets={"data": "acme-data", "model": "acme-models", "state": "acme-state"},
    alerts_topic="salesmesh-alerts",
    tasks_queue="salesmesh-rollout",
    endpoint="salesmesh",
    images={
        "training": f"{REGION}-docker.pkg.dev/{PROJECT}/salesmesh/salesmesh-train:{TAG}",
        "serving": f"{REGION}-docker.pkg.dev/{PROJECT}/salesmesh/salesmesh-serve:{TAG}",
    },
)


def _bindings(kind: str, target: str) -> dict[str, list[str]]:
    """What a ready project's policy on this resource holds: every need, and the agents."""
    found: dict[str, list[str]] = {}
    for need in NEEDS:
        if (need.kind, need.target) == (kind, target):
            found.setdefault(need.role, []).append(member(need.who, PROJECT, NUMBER))
    if kind == "project":
        for account, _ in doctor.AGENT_ACCOUNTS.values():
            found.setdefault("roles/some.serviceAgent", []).append(
                "serviceAccount:" + account.format(number=NUMBER)
            )
    return found


class Project:
    """A ready project, as the official clients answer for it; tests break one thing."""

    def __init__(self) -> None:
        self.disabled: set[str] = set()
        self.missing: set[str] = set()  # resource names that answer NotFound
        self.revoked: set[tuple[str, str, str]] = set()  # (kind, target, member) taken away
        self.public_bucket = ""
        self.function_state = functions_v2.Function.State.ACTIVE
        self.clients = self._clients()

    def _clients(self) -> doctor.Clients:
        projects = mock.create_autospec(resourcemanager_v3.ProjectsClient, instance=True)
        projects.get_project.side_effect = lambda name: resourcemanager_v3.Project(
            name=f"projects/{NUMBER}", project_id=PROJECT
        )
        projects.get_iam_policy.side_effect = lambda resource: self._policy("project", "")
        services = mock.create_autospec(service_usage_v1.ServiceUsageClient, instance=True)
        services.batch_get_services.side_effect = self._services
        gcs = mock.create_autospec(storage.Client, instance=True)
        gcs.get_bucket.side_effect = self._bucket
        gcs.get_service_account_email.side_effect = lambda project: AGENTS["storage agent"].format(
            number=NUMBER
        )
        publisher = mock.create_autospec(pubsub_v1.PublisherClient, instance=True)
        publisher.get_topic.side_effect = lambda topic: self._found(
            topic, pubsub_v1.types.Topic(name=topic)
        )
        publisher.get_iam_policy.side_effect = lambda request: self._policy(
            "topic", "alerts_dead_letter" if "dead-letter" in request["resource"] else "alerts"
        )
        tasks = mock.create_autospec(tasks_v2.CloudTasksClient, instance=True)
        tasks.get_queue.side_effect = lambda name: self._found(
            name, tasks_v2.Queue(name=name, state=tasks_v2.Queue.State.RUNNING)
        )
        tasks.get_iam_policy.side_effect = lambda resource: self._policy("queue", "rollout")
        iam = mock.create_autospec(iam_admin_v1.IAMClient, instance=True)
        iam.get_iam_policy.side_effect = lambda resource: self._policy(
            "service_account", resource.split("/salesmesh-")[1].split("@")[0].replace("-", "_")
        )
        functions = mock.create_autospec(functions_v2.FunctionServiceClient, instance=True)
        functions.get_function.side_effect = lambda name: self._found(
            name, functions_v2.Function(name=name, state=self.function_state)
        )
        run = mock.create_autospec(run_v2.ServicesClient, instance=True)
        run.get_iam_policy.side_effect = lambda request: self._policy(
            "function", request["resource"].rsplit("/", 1)[1].replace("-", "_")
        )
        registry = mock.create_autospec(artifactregistry_v1.ArtifactRegistryClient, instance=True)
        registry.get_tag.side_effect = lambda name: self._found(
            name, artifactregistry_v1.Tag(name=name)
        )
        endpoints = mock.create_autospec(aiplatform_v1.EndpointServiceClient, instance=True)
        endpoints.get_endpoint.side_effect = lambda name: self._found(
            name, aiplatform_v1.Endpoint(name=name)
        )
        return doctor.Clients(
            TARGET,
            projects=projects,
            services=services,
            storage=gcs,
            publisher=publisher,
            tasks=tasks,
            iam=iam,
            functions=functions,
            run=run,
            registry=registry,
            endpoints=endpoints,
        )

    def _found(self, name: str, value: Any) -> Any:
        if any(gone in name for gone in self.missing):
            raise exceptions.NotFound(f"{name} not found")
        return value

    def _services(self, request: dict[str, Any]) -> service_usage_v1.BatchGetServicesResponse:
        state = service_usage_v1.State
        return service_usage_v1.BatchGetServicesResponse(
            services=[
                service_usage_v1.Service(
                    name=name,
                    state=state.DISABLED
                    if name.rsplit("/", 1)[1] in self.disabled
                    else state.ENABLED,
                )
                for name in request["names"]
            ]
        )

    def _members(self, kind: str, target: str) -> dict[str, list[str]]:
        return {
            role: [m for m in members if (kind, target, m) not in self.revoked]
            for role, members in _bindings(kind, target).items()
        }

    def _policy(self, kind: str, target: str) -> policy_pb2.Policy:
        return policy_pb2.Policy(
            bindings=[
                policy_pb2.Binding(role=role, members=members)
                for role, members in self._members(kind, target).items()
            ]
        )

    def _bucket(self, name: str) -> Any:
        self._found(name, None)
        role = next(r for r, n in TARGET.buckets.items() if n == name)
        bucket = mock.create_autospec(storage.Bucket, instance=True)
        bucket.location = REGION.upper()  # Cloud Storage answers in capitals
        bucket.iam_configuration = SimpleNamespace(
            uniform_bucket_level_access_enabled=True,
            public_access_prevention="inherited" if name == self.public_bucket else "enforced",
        )
        bucket.get_iam_policy.side_effect = lambda requested_policy_version: (
            GcsPolicy.from_api_repr(
                {
                    "version": 3,
                    "bindings": [
                        {"role": r, "members": m} for r, m in self._members("bucket", role).items()
                    ],
                }
            )
        )
        return bucket


def _run(project: Project) -> list[doctor.Finding]:
    return list(doctor.Doctor(TARGET, project.clients).run())


def _failed(findings: list[doctor.Finding]) -> list[doctor.Finding]:
    return [f for f in findings if not f.ok]


def test_a_ready_project_passes_every_check():
    project = Project()
    findings = _run(project)
    assert _failed(findings) == []
    areas = {f.area for f in findings}
    assert areas == {"project", "apis", "agents", "resources", "iam"}
    assert len([f for f in findings if f.area == "iam"]) == len(NEEDS)
    assert len([f for f in findings if f.area == "apis"]) == len(doctor.APIS)
    text, ok = doctor.report(findings)
    assert ok and text.endswith("ready: every check passed")
    assert project.clients.storage.get_bucket.call_count == len(TARGET.buckets)  # each once


BREAKS: dict[str, tuple[Callable[[Project], None], str, str]] = {
    "an API off": (
        lambda p: p.disabled.add("cloudtasks.googleapis.com"),
        "cloudtasks.googleapis.com: not enabled",
        f"gcloud services enable cloudtasks.googleapis.com --project {PROJECT}",
    ),
    "a grant missing": (
        lambda p: p.revoked.add(
            ("function", "deploy_model", member("rollout_invoker", PROJECT, NUMBER))
        ),
        f"rollout_invoker: roles/run.invoker on the deploy_model function: "
        f"salesmesh-rollout-invoker@{PROJECT}.iam.gserviceaccount.com lacks it",
        "terraform apply",
    ),
    "a bucket grant missing": (
        lambda p: p.revoked.add(("bucket", "state", member("deploy_model", PROJECT, NUMBER))),
        "deploy_model: roles/storage.objectUser on the state bucket",
        "terraform apply",
    ),
    "an agent missing": (
        lambda p: p.revoked.add(
            (
                "project",
                "",
                f"serviceAccount:service-{NUMBER}@gcp-sa-eventarc.iam.gserviceaccount.com",
            )
        ),
        f"Eventarc: service-{NUMBER}@gcp-sa-eventarc.iam.gserviceaccount.com holds no role",
        "gcloud beta services identity create --service=eventarc.googleapis.com",
    ),
    "a bucket missing": (
        lambda p: p.missing.add("acme-models"),
        "model bucket acme-models: model bucket acme-models does not exist",
        "terraform apply",
    ),
    "a public bucket": (
        lambda p: setattr(p, "public_bucket", "acme-data"),
        "data bucket acme-data: public access prevention is not enforced",
        "terraform apply",
    ),
    "a function that failed to build": (
        lambda p: setattr(p, "function_state", functions_v2.Function.State.FAILED),
        "function train-trigger: state FAILED",
        "terraform apply",
    ),
    "an image not pushed": (
        lambda p: p.missing.add("salesmesh-serve/tags"),
        f"serving image {TARGET.images['serving']}",
        f"docker push {TARGET.images['serving']}",
    ),
    "the queue missing": (
        lambda p: p.missing.add("queues/salesmesh-rollout"),
        "queue salesmesh-rollout: queue salesmesh-rollout does not exist",
        "terraform apply",
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_thing_missing_fails_with_its_fix(name: str):
    project = Project()
    breaks, detail, fix = BREAKS[name]
    breaks(project)
    failed = _failed(_run(project))
    lines = [f"{f.item}: {f.detail}" for f in failed]
    assert any(detail in line for line in lines), lines
    assert any(detail in f"{f.item}: {f.detail}" and fix in f.fix for f in failed), failed
    text, ok = doctor.report(_run(project))
    assert not ok and "not ready:" in text and "fix: " in text


def test_an_unreachable_project_stops_at_once_saying_why():
    project = Project()
    project.clients.projects.get_project.side_effect = exceptions.PermissionDenied(
        "Permission 'resourcemanager.projects.get' denied"
    )
    (only,) = _run(project)
    assert (only.area, only.ok) == ("project", False)
    assert "the caller may not read project acme-forecasts: 403 Permission" in only.detail
    project.clients.services.batch_get_services.assert_not_called()


def test_a_policy_the_caller_may_not_read_says_so_for_each_grant_on_it():
    project = Project()
    project.clients.tasks.get_iam_policy.side_effect = exceptions.PermissionDenied("no")
    failed = _failed(_run(project))
    assert {f.item for f in failed} == {
        "deploy_model: roles/cloudtasks.enqueuer on the rollout queue",
        "alert_handler: roles/cloudtasks.enqueuer on the rollout queue",
    }
    assert all("may not read the IAM policy of queue rollout" in f.detail for f in failed)
    assert project.clients.tasks.get_iam_policy.call_count == 1  # read once, shared


def test_the_cli_prints_findings_and_exits_1_when_not_ready(monkeypatch, capsys):
    project = Project()
    project.disabled.add("eventarc.googleapis.com")
    monkeypatch.setattr(doctor, "Clients", lambda target: project.clients)
    monkeypatch.setenv("SALESMESH_REGION", REGION)
    argv = ["doctor", "--project", PROJECT, "--prefix", "acme", "--image-tag", TAG]
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "FAIL  apis      eventarc.googleapis.com: not enabled" in out
    assert "ok    resources data bucket acme-data: private, in europe-west4" in out
    assert out.rstrip().endswith("not ready: 1 check(s) failed (above)")
    project.disabled.clear()
    assert cli.main([*argv, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert all(f["ok"] for f in found) and {f["area"] for f in found} >= {"iam", "apis"}


def test_images_must_be_artifact_registry_tags():
    target = doctor.Target(
        **{**TARGET.__dict__, "images": {"training": "gcr.io/x/y", "serving": None}}
    )
    found = {f.item: f for f in doctor.Doctor(target, Project().clients).check_resources()}
    assert "is not an Artifact Registry image tagged by commit" in found["training image"].detail
    assert found["serving image"].detail == "SALESMESH_SERVING_IMAGE is not set"
