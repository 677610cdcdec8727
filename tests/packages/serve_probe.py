"""Serve CloudEvents from a built function package, the way Cloud Functions would.

    python -I serve_probe.py PACKAGE TARGET PLAN.json

Run by a package's own virtualenv in isolated mode, so ``sys.path`` holds that venv's
site-packages, the standard library and, inserted here, ``PACKAGE``: nothing of the project.
``PLAN.json`` holds ``{"cold": [event, ...], "faked": [event, ...]}``. The cold events are
delivered first, with nothing faked, and the modules they made the process import are noted.
Then, only if there are faked events, Vertex AI's generated v1 clients are patched with
``autospec=True`` (Vertex AI cannot run here) and the faked events delivered, together with
Resource Manager's ``get_project``, which the SDK calls when ``GOOGLE_CLOUD_PROJECT`` is set.
Credentials are the only other fake: Application Default Credentials cannot exist on this
machine. Cloud Storage stays real (the emulator, through ``STORAGE_EMULATOR_HOST``).

The last line of stdout is ``PROBE {json}``: where salesmesh came from, any ``sys.path`` entry
outside the package and the venv, each event's status and the heavy modules loaded by then, and
the requests the faked clients received (as JSON).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

HEAVY = ("google.cloud.aiplatform", "lightgbm", "sklearn", "matplotlib")


def deliver(client: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST each binary-mode CloudEvent; its status and the heavy modules loaded so far."""
    results = []
    for event in events:
        response = client.post("/", headers=event["headers"], data=json.dumps(event["data"]))
        heavy = [name for name in HEAVY if name in sys.modules]
        results.append({"status": response.status_code, "heavy": heavy})
    return results


class FakeVertex:
    """Vertex AI's job and model services in memory: real request protos in, real protos out."""

    def __init__(self) -> None:
        from google.cloud.aiplatform_v1 import types

        self.types = types
        self.jobs: list[Any] = []
        self.calls: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def _record(self, method: str, kind: Any, request: Any, flattened: dict[str, Any]) -> Any:
        message = kind(request) if request is not None else kind(**flattened)
        self.calls.append({"method": method, "request": json.loads(kind.to_json(message))})
        return message

    def create_custom_job(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        fields = {k: flattened[k] for k in ("parent", "custom_job") if k in flattened}
        req = self._record("create_custom_job", self.types.CreateCustomJobRequest, request, fields)
        job = self.types.CustomJob(req.custom_job)
        job.name = f"{req.parent}/customJobs/{next(self._ids)}"
        job.state = self.types.JobState.JOB_STATE_PENDING
        job.create_time = {"seconds": 1_793_697_300 + len(self.jobs)}
        self.jobs.append(job)
        return self.types.CustomJob(job)

    def list_custom_jobs(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        from google.cloud.aiplatform_v1.services.job_service import pagers

        fields = {k: flattened[k] for k in ("parent",) if k in flattened}
        req = self._record("list_custom_jobs", self.types.ListCustomJobsRequest, request, fields)
        wanted = re.fullmatch(r'labels\.([\w-]+)="([^"]*)"', req.filter)
        jobs = [
            job
            for job in self.jobs
            if job.name.startswith(req.parent + "/")
            and (wanted is None or job.labels.get(wanted.group(1)) == wanted.group(2))
        ]
        response = self.types.ListCustomJobsResponse(custom_jobs=jobs)
        return pagers.ListCustomJobsPager(self._unserved, req, response)

    def list_model_versions(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        from google.api_core import exceptions

        fields = {k: flattened[k] for k in ("name",) if k in flattened}
        req = self._record(
            "list_model_versions", self.types.ListModelVersionsRequest, request, fields
        )
        # no model registered yet: what Vertex AI answers before the first upload
        raise exceptions.NotFound(f"Model {req.name} not found.")

    def get_project(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        """The SDK looks the project up in Resource Manager when GOOGLE_CLOUD_PROJECT is set."""
        from google.cloud.resourcemanager_v3 import GetProjectRequest, Project

        fields = {k: flattened[k] for k in ("name",) if k in flattened}
        req = self._record("get_project", GetProjectRequest, request, fields)
        return Project(name=req.name, project_id=req.name.removeprefix("projects/"))

    @staticmethod
    def _unserved(*_: Any, **__: Any) -> None:
        raise AssertionError("an RPC the fake does not serve would have gone to Vertex AI")


@contextlib.contextmanager
def faked(fake: FakeVertex) -> Iterator[None]:
    """The generated clients' methods routed to ``fake`` (autospec: a wrong argument fails);
    every other RPC fails fast; credentials anonymous."""
    from google.api_core.gapic_v1.method import _GapicCallable
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1 import JobServiceClient, ModelServiceClient
    from google.cloud.resourcemanager_v3 import ProjectsClient

    methods = {
        JobServiceClient: ("create_custom_job", "list_custom_jobs"),
        ModelServiceClient: ("list_model_versions",),
        ProjectsClient: ("get_project",),
    }
    with contextlib.ExitStack() as stack:
        for client, names in methods.items():
            for name in names:
                side_effect = getattr(fake, name)
                stack.enter_context(
                    mock.patch.object(client, name, autospec=True, side_effect=side_effect)
                )
        stack.enter_context(mock.patch.object(_GapicCallable, "__call__", fake._unserved))
        # what Application Default Credentials give: a credential and the environment's project
        project = os.environ.get("GOOGLE_CLOUD_PROJECT")
        stack.enter_context(
            mock.patch(
                "google.auth.default", autospec=True, return_value=(AnonymousCredentials(), project)
            )
        )
        yield


def main(package: str, target: str, plan_file: str) -> dict[str, Any]:
    plan = json.loads(Path(plan_file).read_text())
    sys.path.insert(0, package)
    from functions_framework import create_app

    import salesmesh

    app = create_app(target=target, source=f"{package}/main.py", signature_type="cloudevent")
    client = app.test_client()
    own = (package, sys.prefix, sys.base_prefix)
    report: dict[str, Any] = {
        "salesmesh": salesmesh.__file__,
        "foreign_paths": [p for p in sys.path if p and not p.startswith(own)],
        "results": deliver(client, plan.get("cold", [])),
        "vertex": [],
    }
    if plan.get("faked"):
        fake = FakeVertex()
        with faked(fake):
            report["results"] += deliver(client, plan["faked"])
        report["vertex"] = fake.calls
    return report


if __name__ == "__main__":
    print("PROBE " + json.dumps(main(*sys.argv[1:4])))
