"""Vertex AI training launcher: one ``aiplatform.CustomJob`` per run, found again by its label.

The job runs the trainer image's ``python -m salesmesh.train --data URI --horizon N`` with no
``--output``: Vertex AI sets ``AIP_MODEL_DIR`` to ``<base_output_dir>/model/`` and the trainer
writes there. So for a request whose ``output_uri`` is ``gs://models/runs/r1`` the artifact and
its manifest land in ``gs://models/runs/r1/model/``, and that is the ``output_uri`` a
:class:`TrainingRun` from this backend reports.

Idempotency: every job carries the label ``salesmesh-run=<run_id>``; ``launch`` lists jobs with
that label first and submits only when there is none. Vertex AI assigns job ids itself, so the
list and the create are not one atomic step: two deliveries landing in the same second could
both submit. Both then train into the same folder, where the trainer's create-only writes let
one publish and fail the other, and ``get`` always reports the oldest job, so callers still
agree on one run. Passing ``claims`` rules even that out: the launch that acquires the run's
claim (:class:`~salesmesh.backends.gcp_claims.GcsClaims`, an object created only if absent)
submits, and the others wait for its job. If the submit fails, the claim is released and the
launch raises LaunchError, so a redelivery can submit again once the cause is fixed.

``google.cloud.aiplatform`` is imported inside the methods only, so importing this module, and
``salesmesh.backends``, stays cheap.
"""

from __future__ import annotations

import builtins
import importlib
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from salesmesh.backends.gcp_claims import RunClaims
from salesmesh.errors import LaunchError
from salesmesh.ports import RunState, TrainingRequest, TrainingRun, rfc3339

RUN_LABEL = "salesmesh-run"
COMMAND = ["python", "-m", "salesmesh.train"]

# Vertex AI's JobState names -> RunState. Cancelled and expired jobs produced no model, so they
# count as failed; paused and pending ones are waiting, like queued.
_STATES = {
    "JOB_STATE_UNSPECIFIED": RunState.QUEUED,
    "JOB_STATE_QUEUED": RunState.QUEUED,
    "JOB_STATE_PENDING": RunState.QUEUED,
    "JOB_STATE_PAUSED": RunState.QUEUED,
    "JOB_STATE_RUNNING": RunState.RUNNING,
    "JOB_STATE_UPDATING": RunState.RUNNING,
    "JOB_STATE_CANCELLING": RunState.RUNNING,
    "JOB_STATE_SUCCEEDED": RunState.SUCCEEDED,
    "JOB_STATE_FAILED": RunState.FAILED,
    "JOB_STATE_CANCELLED": RunState.FAILED,
    "JOB_STATE_EXPIRED": RunState.FAILED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": RunState.FAILED,
}
# How Vertex AI reports a worker's exit status in a failed job's error message.
_EXIT_STATUS = re.compile(r"non-zero status of (\d+)")


class VertexTrainingLauncher:
    """Submits training runs as Vertex AI custom jobs without waiting for them."""

    def __init__(
        self,
        project: str,
        location: str,
        staging_bucket: str,
        container_uri: str,
        service_account: str | None = None,
        machine_type: str = "n1-standard-4",
        claims: RunClaims | None = None,
        claim_wait: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``claims`` lets one launch per run id submit; ``claim_wait`` is how long the others
        wait for its job. ``env`` is set in the trainer's container (the trainer's own
        settings, such as SALESMESH_REGRESSORS)."""
        self.claims = claims
        self.claim_wait = claim_wait
        self.project = project
        self.location = location
        self.staging_bucket = staging_bucket
        self.container_uri = container_uri
        self.service_account = service_account
        self.machine_type = machine_type
        self.env = dict(env or {})

    def launch(self, request: TrainingRequest) -> TrainingRun:
        """Submit a custom job for the run unless a job labelled with its run id exists."""
        existing = self.get(request.run_id)
        if existing is not None:
            return existing
        held = None
        if self.claims is not None:
            held = self.claims.acquire(request.run_id)
            if held is None:
                return self._await_job(request.run_id)
        try:
            job = self._submit(request)
        except Exception as exc:
            # whatever stopped the submit, a claim left behind would stall every redelivery
            if self.claims is not None and held is not None:
                self.claims.release(request.run_id, held)
            raise LaunchError(self._refusal(request.run_id, exc)) from exc
        return self._to_run(job.gca_resource)

    def _submit(self, request: TrainingRequest) -> Any:
        """Build and submit the run's custom job; the submitted SDK job."""
        container: dict[str, Any] = {
            "image_uri": self.container_uri,
            "command": COMMAND,
            "args": ["--data", request.data_uri, "--horizon", str(request.horizon)],
        }
        if self.env:
            container["env"] = [{"name": k, "value": v} for k, v in sorted(self.env.items())]
        job = _aiplatform().CustomJob(
            display_name=f"salesmesh-train-{request.run_id}",
            worker_pool_specs=[
                {
                    "machine_spec": {"machine_type": self.machine_type},
                    "replica_count": 1,
                    "container_spec": container,
                }
            ],
            base_output_dir=request.output_uri,
            labels={**request.labels, RUN_LABEL: request.run_id},
            project=self.project,
            location=self.location,
            staging_bucket=self.staging_bucket,
        )
        # submit() returns once the job resource exists; run() would block until it ends.
        job.submit(service_account=self.service_account)
        return job

    def _refusal(self, run_id: str, exc: Exception) -> str:
        """What went wrong submitting ``run_id``'s job, and what to do about it."""
        errors = importlib.import_module("google.api_core.exceptions")
        account = self.service_account or "the Compute Engine default service account"
        if isinstance(exc, errors.PermissionDenied):
            fix = (
                "the function's service account needs roles/aiplatform.user in "
                f"{self.project} and roles/iam.serviceAccountUser on {account} (actAs) to run "
                "the job as it"
            )
        elif isinstance(exc, errors.ResourceExhausted):
            fix = (
                f"a Vertex AI quota is used up: request more for {self.machine_type} in "
                f"{self.location}, or wait for running jobs to finish"
            )
        elif isinstance(exc, errors.InvalidArgument | errors.NotFound | errors.FailedPrecondition):
            fix = (
                f"check SALESMESH_TRAINING_IMAGE ({self.container_uri}), "
                f"SALESMESH_SERVICE_ACCOUNT ({account}) and the staging bucket "
                f"({self.staging_bucket})"
            )
        else:
            fix = "see the cause below"
        then = "Its claim was released: a redelivery" if self.claims else "A redelivery"
        return (
            f"Vertex AI did not accept the training job for run {run_id}: {exc}. To fix: {fix}. "
            f"{then} of the upload submits it again."
        )

    def _await_job(self, run_id: str) -> TrainingRun:
        """Another launch holds the claim: wait for the job it submits."""
        deadline = time.monotonic() + self.claim_wait
        while time.monotonic() < deadline:
            time.sleep(1.0)
            run = self.get(run_id)
            if run is not None:
                return run
        # raising makes the delivery retry; a claim whose launcher died stays until removed
        where = self.claims.where(run_id) if self.claims is not None else "the claim object"
        raise LaunchError(
            f"run {run_id} is claimed but no Vertex AI job appeared within {self.claim_wait:.0f} s;"
            f" if its launch died, delete the claim {where} to let a redelivery submit it"
        )

    def get(self, run_id: str) -> TrainingRun | None:
        """The oldest job labelled with ``run_id``, or None."""
        jobs = self._jobs(f'labels.{RUN_LABEL}="{run_id}"')
        return self._to_run(jobs[0]) if jobs else None

    def list(self) -> builtins.list[TrainingRun]:
        """Every salesmesh training job in the project and location, oldest first."""
        return [self._to_run(job) for job in self._jobs(f"labels.{RUN_LABEL}:*")]

    def _jobs(self, filter_: str) -> builtins.list[Any]:
        """Job resources (the protos) matching ``filter_``, oldest first."""
        jobs = _aiplatform().CustomJob.list(
            filter=filter_, project=self.project, location=self.location
        )
        resources = [job.gca_resource for job in jobs]
        return sorted(resources, key=lambda resource: rfc3339(resource.create_time))

    def _to_run(self, resource: Any) -> TrainingRun:
        """A CustomJob resource proto as a TrainingRun; everything is read from the job itself."""
        spec = resource.job_spec
        args = builtins.list(spec.worker_pool_specs[0].container_spec.args)
        state = _STATES.get(resource.state.name, RunState.RUNNING)  # unknown: not finished
        exit_code = None
        if state is RunState.SUCCEEDED:
            exit_code = 0
        elif state is RunState.FAILED and (found := _EXIT_STATUS.search(resource.error.message)):
            exit_code = int(found.group(1))
        return TrainingRun(
            run_id=resource.labels[RUN_LABEL],
            state=state,
            data_uri=args[args.index("--data") + 1],
            output_uri=model_dir(spec.base_output_directory.output_uri_prefix),
            created=rfc3339(resource.create_time),
            exit_code=exit_code,
            log=self._log_url(resource.name),
            backend_id=resource.name,
        )

    def _log_url(self, job_name: str) -> str:
        """Cloud Logging query for the job's container output (resource type ml_job)."""
        query = f'resource.type="ml_job" resource.labels.job_id="{job_name.rsplit("/", 1)[-1]}"'
        return (
            "https://console.cloud.google.com/logs/query;query="
            f"{quote(query, safe='')}?project={self.project}"
        )


def _aiplatform() -> Any:
    """The Vertex AI SDK, imported on first use.

    Through importlib so mypy does not follow it: the SDK ships ``py.typed``, and once mypy
    reads it, ``google.cloud`` turns into a typed namespace in which the untyped
    ``google.cloud.storage`` that other modules import no longer exists.
    """
    return importlib.import_module("google.cloud.aiplatform")


def model_dir(base_output_dir: str) -> str:
    """Where a custom job's trainer writes: Vertex AI's ``AIP_MODEL_DIR``, without the slash."""
    return f"{base_output_dir.rstrip('/')}/model"
