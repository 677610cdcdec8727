"""The Vertex AI launcher against the installed SDK's real signatures (autospec), faked service.

``aiplatform.CustomJob`` is patched with ``autospec=True``: a wrong argument name to the
constructor, ``submit`` or ``list`` raises TypeError here as it would in the cloud. Behind it a
small in-memory job service builds the real ``CustomJob`` proto from the arguments, so a
malformed worker pool spec fails too, and answers ``list`` by label like Vertex AI does.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from contract_launcher import LauncherContract, RequestFor

# hard imports: the SDK is a dev dependency, and this suite must never skip quietly
from google.api_core import exceptions
from google.cloud import aiplatform
from google.cloud.aiplatform import jobs
from google.cloud.aiplatform_v1 import types
from google.rpc import status_pb2

from salesmesh.backends import training_launcher
from salesmesh.backends.gcp import RUN_LABEL, VertexTrainingLauncher
from salesmesh.backends.gcp_claims import GcsClaims
from salesmesh.errors import LaunchError
from salesmesh.ports import RunState, TrainingRequest, TrainingRun

PROJECT, LOCATION = "demo-project", "europe-west4"
IMAGE = "europe-docker.pkg.dev/demo-project/salesmesh/trainer:1"
SERVICE_ACCOUNT = "trainer@demo-project.iam.gserviceaccount.com"


class FakeJobService:
    """Vertex AI's custom jobs in memory, reached only through the patched CustomJob class."""

    def __init__(self, custom_job: Any) -> None:
        self.custom_job = custom_job
        self.jobs: list[Any] = []  # submitted job objects, as list() would return them
        self.arguments: dict[str, dict[str, Any]] = {}  # constructor kwargs by job name
        self._ids = itertools.count(1)
        self.refusals: list[Exception] = []  # what the next submits raise instead, in order
        custom_job.side_effect = self._construct
        custom_job.list.side_effect = self._list

    def _construct(self, **kwargs: Any) -> Any:
        job = mock.create_autospec(jobs.CustomJob, instance=True)
        job.gca_resource = types.CustomJob(
            display_name=kwargs["display_name"],
            job_spec=types.CustomJobSpec(
                worker_pool_specs=kwargs["worker_pool_specs"],
                base_output_directory=types.GcsDestination(
                    output_uri_prefix=kwargs["base_output_dir"]
                ),
            ),
            labels=kwargs["labels"],
        )
        job.submit.side_effect = lambda **_: self._create(job, kwargs)
        return job

    def _create(self, job: Any, kwargs: dict[str, Any]) -> None:
        if self.refusals:
            raise self.refusals.pop(0)
        number = next(self._ids)
        resource = job.gca_resource
        resource.name = (
            f"projects/{kwargs['project']}/locations/{kwargs['location']}/customJobs/{number}"
        )
        resource.state = types.JobState.JOB_STATE_PENDING
        resource.create_time = datetime(2026, 11, 3, tzinfo=UTC) + timedelta(seconds=number)
        self.jobs.append(job)
        self.arguments[resource.name] = kwargs

    def _list(self, filter: str, project: str, location: str) -> list[Any]:
        """Jobs in the project and location matching a label equality or existence filter."""
        prefix = f"projects/{project}/locations/{location}/"
        value: str | None
        if found := re.fullmatch(r'labels\.([\w-]+)="([^"]*)"', filter):
            key, value = found.groups()
        elif found := re.fullmatch(r"labels\.([\w-]+):\*", filter):
            key, value = found.group(1), None
        else:
            raise AssertionError(f"filter the fake does not know: {filter!r}")
        return [
            job
            for job in self.jobs
            if job.gca_resource.name.startswith(prefix)
            and key in job.gca_resource.labels
            and value in (None, job.gca_resource.labels[key])
        ]

    def created(self, run: TrainingRun) -> dict[str, Any]:
        """The constructor arguments of the job behind ``run``."""
        return self.arguments[run.backend_id]

    def finish(self, run_id: str, state: str, message: str = "") -> None:
        """Move the job labelled ``run_id`` to ``state``, with an error message if it failed."""
        (job,) = [j for j in self.jobs if j.gca_resource.labels[RUN_LABEL] == run_id]
        job.gca_resource.state = types.JobState[state]
        job.gca_resource.error = status_pb2.Status(message=message)


@pytest.fixture
def vertex() -> Iterator[FakeJobService]:
    with mock.patch("google.cloud.aiplatform.CustomJob", autospec=True) as custom_job:
        yield FakeJobService(custom_job)


@pytest.fixture
def launcher(vertex: FakeJobService) -> VertexTrainingLauncher:
    return VertexTrainingLauncher(
        PROJECT, LOCATION, "gs://demo-staging", IMAGE, service_account=SERVICE_ACCOUNT
    )


@pytest.fixture
def request_for() -> RequestFor:
    def build(run_id: str) -> TrainingRequest:
        return TrainingRequest(
            run_id,
            "gs://demo-data/uploads/sales.csv",
            f"gs://demo-models/runs/{run_id}",
            14,
            labels={"correlation-id": "abc123"},
        )

    return build


class TestVertexLauncherContract(LauncherContract):
    @pytest.fixture(autouse=True)
    def _service(self, vertex: FakeJobService) -> None:
        self.vertex = vertex

    def job_inputs(self, launcher: Any, run: TrainingRun) -> dict[str, Any]:
        """Read back from the submitted job's container args and output directory."""
        kwargs = self.vertex.created(run)
        args = kwargs["worker_pool_specs"][0]["container_spec"]["args"]
        return {
            "data": args[args.index("--data") + 1],
            "horizon": int(args[args.index("--horizon") + 1]),
            "model_dir": kwargs["base_output_dir"] + "/model",
        }


def test_submits_the_trainer_as_a_custom_job(
    launcher: VertexTrainingLauncher, vertex: FakeJobService, request_for: RequestFor
) -> None:
    """The job runs the trainer image's command with the request's data, labels and output."""
    run = launcher.launch(request_for("r1"))
    vertex.custom_job.assert_called_once_with(
        display_name="salesmesh-train-r1",
        worker_pool_specs=[
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": {
                    "image_uri": IMAGE,
                    "command": ["python", "-m", "salesmesh.train"],
                    "args": ["--data", "gs://demo-data/uploads/sales.csv", "--horizon", "14"],
                },
            }
        ],
        base_output_dir="gs://demo-models/runs/r1",
        labels={"correlation-id": "abc123", RUN_LABEL: "r1"},
        project=PROJECT,
        location=LOCATION,
        staging_bucket="gs://demo-staging",
    )
    (job,) = vertex.jobs
    job.submit.assert_called_once_with(service_account=SERVICE_ACCOUNT)
    assert run.backend_id == f"projects/{PROJECT}/locations/{LOCATION}/customJobs/1"
    assert run.state is RunState.QUEUED


def test_launch_does_not_wait_for_the_job(
    launcher: VertexTrainingLauncher, vertex: FakeJobService, request_for: RequestFor
) -> None:
    """launch() submits and returns: it never calls the blocking run() or wait_for_completion()."""
    launcher.launch(request_for("r1"))
    (job,) = vertex.jobs
    job.run.assert_not_called()
    job.wait_for_completion.assert_not_called()


def test_output_uri_is_vertex_model_dir(
    launcher: VertexTrainingLauncher, request_for: RequestFor
) -> None:
    """The run reports <base_output_dir>/model, the AIP_MODEL_DIR Vertex AI gives the job."""
    assert launcher.launch(request_for("r1")).output_uri == "gs://demo-models/runs/r1/model"


def test_existing_job_is_found_before_creating(
    launcher: VertexTrainingLauncher, vertex: FakeJobService, request_for: RequestFor
) -> None:
    """A launch lists jobs by run label first, and a job found there prevents a new one."""
    other_process = VertexTrainingLauncher(PROJECT, LOCATION, "gs://demo-staging", IMAGE)
    first = other_process.launch(request_for("r1"))
    vertex.custom_job.reset_mock()
    again = launcher.launch(request_for("r1"))
    assert again.backend_id == first.backend_id
    assert vertex.custom_job.mock_calls == [
        mock.call.list(filter=f'labels.{RUN_LABEL}="r1"', project=PROJECT, location=LOCATION)
    ]


def test_list_is_consulted_before_the_job_is_built(
    launcher: VertexTrainingLauncher, vertex: FakeJobService, request_for: RequestFor
) -> None:
    """On a first launch the label lookup happens before the CustomJob is constructed."""
    launcher.launch(request_for("r1"))
    names = [name for name, _, _ in vertex.custom_job.mock_calls]
    assert names[:2] == ["list", ""]  # "" is the call of the class itself: the constructor


@pytest.mark.parametrize(
    ("job_state", "run_state", "exit_code"),
    [
        ("JOB_STATE_QUEUED", RunState.QUEUED, None),
        ("JOB_STATE_PENDING", RunState.QUEUED, None),
        ("JOB_STATE_RUNNING", RunState.RUNNING, None),
        ("JOB_STATE_SUCCEEDED", RunState.SUCCEEDED, 0),
        ("JOB_STATE_FAILED", RunState.FAILED, 1),
        ("JOB_STATE_CANCELLED", RunState.FAILED, None),
    ],
)
def test_job_state_maps_to_run_state(
    launcher: VertexTrainingLauncher,
    vertex: FakeJobService,
    request_for: RequestFor,
    job_state: str,
    run_state: RunState,
    exit_code: int | None,
) -> None:
    """Vertex AI's job state and a failed worker's exit status show in get()."""
    launcher.launch(request_for("r1"))
    message = "The replica workerpool0-0 exited with a non-zero status of 1." * (exit_code == 1)
    vertex.finish("r1", job_state, message)
    run = launcher.get("r1")
    assert run is not None
    assert (run.state, run.exit_code) == (run_state, exit_code)


def test_every_sdk_job_state_is_mapped() -> None:
    """Each JobState the installed SDK knows maps to a RunState (none falls to the default)."""
    from salesmesh.backends.gcp import _STATES

    assert {state.name for state in types.JobState} <= set(_STATES)


def test_patched_sdk_rejects_wrong_argument_names(vertex: FakeJobService) -> None:
    """The autospec boundary is real: a misspelt keyword fails as it would against Vertex AI."""
    with pytest.raises(TypeError):
        aiplatform.CustomJob(display_nam="x", worker_pool_specs=[])
    with pytest.raises(TypeError):
        aiplatform.CustomJob.list(filtr="x")


def test_gcp_launcher_imports_the_sdk_only_when_used() -> None:
    """training_launcher('gcp', ...) builds without importing google.cloud.aiplatform."""
    code = textwrap.dedent(
        """
        import sys
        from salesmesh.backends import training_launcher
        training_launcher("gcp", project="p", location="l", staging_bucket="gs://s",
                          container_uri="i")
        print("google.cloud.aiplatform" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "False"


def test_registry_builds_vertex_launcher() -> None:
    """training_launcher('gcp', ...) is a VertexTrainingLauncher with the given settings."""
    launcher = training_launcher(
        "gcp", project=PROJECT, location=LOCATION, staging_bucket="gs://s", container_uri=IMAGE
    )
    assert isinstance(launcher, VertexTrainingLauncher)
    assert (launcher.project, launcher.machine_type) == (PROJECT, "n1-standard-4")


class FixedClaims:
    """Claims whose outcome the test decides: a lost race the emulator cannot produce."""

    def __init__(self, won: bool) -> None:
        self.won = won
        self.released: list[tuple[str, int]] = []

    def acquire(self, run_id: str) -> int | None:
        return 7 if self.won else None

    def release(self, run_id: str, handle: int) -> None:
        self.released.append((run_id, handle))

    def where(self, run_id: str) -> str:
        return f"gs://demo-state/salesmesh/claims/{run_id}"


def _claiming(won: bool, wait: float = 10.0) -> VertexTrainingLauncher:
    return VertexTrainingLauncher(
        PROJECT, LOCATION, "gs://demo-staging", IMAGE, claims=FixedClaims(won), claim_wait=wait
    )


def test_a_launch_that_loses_the_claim_waits_for_the_winners_job(vertex, request_for):
    """Two deliveries at once: the claim loser submits nothing and returns the winner's job."""
    import threading

    results: list[TrainingRun] = []
    loser = threading.Thread(
        target=lambda: results.append(_claiming(False).launch(request_for("r-race")))
    )
    loser.start()
    time.sleep(0.3)  # the loser has looked, found no job, lost the claim and is waiting
    winner = _claiming(True).launch(request_for("r-race"))
    loser.join(timeout=15)
    assert results == [winner]
    assert vertex.custom_job.call_count == 1  # one CustomJob built, by the winner


def test_a_claim_without_a_job_ends_in_a_launch_error_that_says_what_to_do(vertex, request_for):
    """If the claim's holder never submits, the waiter raises naming the claim to delete."""
    with pytest.raises(LaunchError, match="delete the claim gs://demo-state/salesmesh/claims/r-o"):
        _claiming(False, wait=1.2).launch(request_for("r-orphan"))
    assert vertex.custom_job.call_count == 0


ACT_AS = exceptions.PermissionDenied(
    "Permission 'iam.serviceAccounts.actAs' denied on service account " + SERVICE_ACCOUNT
)


def test_a_refused_submit_releases_the_claim_so_the_next_delivery_submits(
    vertex, request_for, bucket
):
    """Submit denied (no actAs): LaunchError, the GCS claim is gone, the redelivery submits."""
    claims = GcsClaims(bucket.client, bucket.name)
    launcher = VertexTrainingLauncher(
        PROJECT, LOCATION, "gs://demo-staging", IMAGE, SERVICE_ACCOUNT, claims=claims
    )
    vertex.refusals.append(ACT_AS)
    with pytest.raises(LaunchError) as caught:
        launcher.launch(request_for("r-1"))
    assert caught.value.__cause__ is ACT_AS
    assert bucket.get_blob("salesmesh/claims/r-1") is None
    assert vertex.jobs == []
    # the permission granted, Eventarc delivers the upload again
    run = launcher.launch(request_for("r-1"))
    assert [job.gca_resource.name for job in vertex.jobs] == [run.backend_id]
    assert bucket.get_blob("salesmesh/claims/r-1") is not None  # held by the submitted run


@pytest.mark.parametrize(
    ("refusal", "advice"),
    [
        (
            ACT_AS,
            "To fix: the function's service account needs roles/aiplatform.user in demo-project "
            f"and roles/iam.serviceAccountUser on {SERVICE_ACCOUNT} (actAs) to run the job as it.",
        ),
        (
            exceptions.ResourceExhausted("Quota exceeded for custom_model_training_cpus"),
            "To fix: a Vertex AI quota is used up: request more for n1-standard-4 in "
            "europe-west4, or wait for running jobs to finish.",
        ),
        (
            exceptions.InvalidArgument("Invalid image URI"),
            f"To fix: check SALESMESH_TRAINING_IMAGE ({IMAGE}), SALESMESH_SERVICE_ACCOUNT "
            f"({SERVICE_ACCOUNT}) and the staging bucket (gs://demo-staging).",
        ),
    ],
)
def test_a_refused_submit_says_what_to_fix(vertex, request_for, refusal, advice):
    """The LaunchError names the run, Vertex AI's reason, the fix and the released claim."""
    claims = FixedClaims(won=True)
    launcher = VertexTrainingLauncher(
        PROJECT, LOCATION, "gs://demo-staging", IMAGE, SERVICE_ACCOUNT, claims=claims
    )
    vertex.refusals.append(refusal)
    with pytest.raises(LaunchError) as caught:
        launcher.launch(request_for("r-1"))
    message = str(caught.value)
    assert message.startswith(f"Vertex AI did not accept the training job for run r-1: {refusal}.")
    assert advice in message
    assert message.endswith("Its claim was released: a redelivery of the upload submits it again.")
    assert claims.released == [("r-1", 7)]


def test_a_refused_submit_without_claims_is_a_launch_error_too(launcher, vertex, request_for):
    """Without claims the refusal is still a LaunchError, and nothing claims a release."""
    vertex.refusals.append(ACT_AS)
    with pytest.raises(LaunchError, match=r"\. A redelivery of the upload submits it again\.$"):
        launcher.launch(request_for("r-1"))


def test_runtime_gives_the_gcp_launcher_claims_in_the_state_bucket(bucket):
    """The train_trigger's launcher claims runs with create-only objects in the state bucket."""
    from salesmesh import runtime
    from salesmesh.settings import Settings

    settings = Settings.from_env(
        {
            "SALESMESH_BACKEND": "gcp",
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "SALESMESH_STATE_BUCKET": bucket.name,
            "SALESMESH_TRAINING_IMAGE": IMAGE,
        }
    )
    launcher = runtime.launcher(settings)
    assert isinstance(launcher, VertexTrainingLauncher)
    assert isinstance(launcher.claims, GcsClaims)
    assert launcher.claims.where("r-1") == f"gs://{bucket.name}/salesmesh/claims/r-1"


def test_declared_regressors_reach_the_trainers_container(vertex, request_for, bucket):
    """SALESMESH_REGRESSORS travels into the job's container env, in the API's own EnvVar shape."""
    from google.cloud.aiplatform_v1.types import WorkerPoolSpec

    from salesmesh import runtime
    from salesmesh.settings import Settings

    env = {
        "SALESMESH_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SALESMESH_STATE_BUCKET": bucket.name,
        "SALESMESH_TRAINING_IMAGE": IMAGE,
        "SALESMESH_REGRESSORS": "holiday,planned_discount",
    }
    run = runtime.launcher(Settings.from_env(env)).launch(request_for("r1"))
    spec = WorkerPoolSpec(vertex.created(run)["worker_pool_specs"][0])  # unknown fields raise
    assert [(v.name, v.value) for v in spec.container_spec.env] == [
        ("SALESMESH_REGRESSORS", "holiday,planned_discount")
    ]
    plain = runtime.launcher(Settings.from_env({**env, "SALESMESH_REGRESSORS": ""}))
    assert plain.launch(request_for("r2")) is not None
    assert "env" not in vertex.created(plain.get("r2"))["worker_pool_specs"][0]["container_spec"]
