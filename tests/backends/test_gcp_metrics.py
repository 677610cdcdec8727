"""Cloud Monitoring metrics against the installed SDK, with Cloud Monitoring faked behind it.

Only ``MetricServiceClient.list_time_series`` is patched (autospec, see ``fake_monitoring``); the
fake honours the filter, interval and aggregation each request carries, so a wrong metric type,
label, aligner or period reads wrong figures or fails as the API would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from contract_metrics import CANARY, SLOW_MS, STABLE, MetricsContract
from fake_monitoring import LOCATION, PREFIX, PROJECT, PROJECT_NUMBER, FakeMonitoring, monitoring

# hard imports: the SDK is a dev dependency, and this suite must never skip quietly
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.monitoring_v3 import Aggregation, ListTimeSeriesRequest, MetricServiceClient

from salesmesh.backends import metrics as build_metrics
from salesmesh.backends.gcp_metrics import CloudMonitoringMetrics
from salesmesh.errors import MetricsError

ENDPOINT_ID = "4821730153960275968"
RESOURCE_NAME = f"projects/{PROJECT_NUMBER}/locations/{LOCATION}/endpoints/{ENDPOINT_ID}"


def client() -> MetricServiceClient:
    return MetricServiceClient(credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


@pytest.fixture
def fake() -> Iterator[FakeMonitoring]:
    with monitoring(FakeMonitoring()) as served:
        yield served


class CloudTraffic:
    """Vertex AI's points for the traffic, written to the fake as Vertex AI writes them."""

    short_window = 120.0
    long_window = 600.0

    def __init__(self, fake: FakeMonitoring) -> None:
        self.fake = fake
        self.metrics = CloudMonitoringMetrics(PROJECT, LOCATION, ENDPOINT_ID, client=client())

    def serve(self, model_id: str, *, fast: int = 0, slow: int = 0, errors: int = 0) -> None:
        latencies = [4.0 + i % 7 for i in range(fast)] + [SLOW_MS] * slow + [15.0] * errors
        self.fake.write_minute(ENDPOINT_ID, model_id, latencies, errors)

    def elapse(self, seconds: float) -> None:
        self.fake.elapse(seconds)


@pytest.fixture
def traffic(fake: FakeMonitoring) -> CloudTraffic:
    return CloudTraffic(fake)


class TestCloudMonitoringMetrics(MetricsContract):
    """The shared contract against Cloud Monitoring's answers."""


def test_only_this_endpoint_and_location_count(fake: FakeMonitoring) -> None:
    """The same deployed model id on another endpoint or in another region is not counted."""
    fake.write_minute(ENDPOINT_ID, CANARY, [5.0] * 4, errors=1)
    fake.write_minute("9999999999999999999", CANARY, [5.0] * 50, errors=20)
    fake.write_minute(ENDPOINT_ID, CANARY, [900.0] * 30, errors=9, location="us-central1")
    seen = CloudMonitoringMetrics(PROJECT, LOCATION, RESOURCE_NAME, client=client())
    found = seen.window(CANARY, 60)
    assert (found.requests, found.errors) == (4, 1)
    assert found.p99_ms is not None and found.p99_ms < 10


def test_requests_ask_for_what_the_module_documents(fake: FakeMonitoring) -> None:
    """Three reads, one alignment period the window long, end-to-end latency only."""
    fake.write_minute(ENDPOINT_ID, STABLE, [5.0])
    CloudMonitoringMetrics(PROJECT, LOCATION, ENDPOINT_ID, client=client()).window(STABLE, 300)
    asked = {r.filter.split('"')[1]: r for r in fake.requests}  # metric.type comes first
    assert sorted(asked) == [
        PREFIX + m for m in ("error_count", "prediction_count", "prediction_latencies")
    ]
    for request in asked.values():
        raw = ListTimeSeriesRequest.pb(request)
        assert raw.aggregation.alignment_period.seconds == 300
        span = raw.interval.end_time.ToNanoseconds() - raw.interval.start_time.ToNanoseconds()
        assert span == 300 * 10**9
        assert request.name == f"projects/{PROJECT}"
        assert request.view == ListTimeSeriesRequest.TimeSeriesView.FULL
        assert f'metric.labels.deployed_model_id = "{STABLE}"' in request.filter
    latencies = asked[PREFIX + "prediction_latencies"]
    assert 'metric.labels.latency_type = "total"' in latencies.filter
    aligner = Aggregation.Aligner.ALIGN_PERCENTILE_99
    assert latencies.aggregation.per_series_aligner == aligner


def test_window_limits(fake: FakeMonitoring) -> None:
    """Under 60 s is refused (Cloud Monitoring's shortest period); a fraction rounds up."""
    fake.write_minute(ENDPOINT_ID, CANARY, [5.0] * 2)
    metrics = CloudMonitoringMetrics(PROJECT, LOCATION, ENDPOINT_ID, client=client())
    with pytest.raises(ValueError, match="at least 60 s"):
        metrics.window(CANARY, 59.9)
    found = metrics.window(CANARY, 90.5)
    assert (found.window_seconds, found.requests) == (91, 2)
    with pytest.raises(ValueError, match="deployed model id"):
        metrics.window('1" OR metric.type = "x', 60)
    assert len(fake.requests) == 3  # the one window read; refusals ask nothing


def test_endpoint_forms(fake: FakeMonitoring) -> None:
    """An id, a custom id or a full name is accepted; another region's name or junk is not."""
    assert CloudMonitoringMetrics(PROJECT, LOCATION, RESOURCE_NAME).endpoint_id == ENDPOINT_ID
    assert CloudMonitoringMetrics(PROJECT, LOCATION, "salesmesh").endpoint_id == "salesmesh"
    other = RESOURCE_NAME.replace(LOCATION, "us-central1")
    with pytest.raises(ValueError, match="not in europe-west4"):
        CloudMonitoringMetrics(PROJECT, LOCATION, other)
    for bad in ("", "Salesmesh", "endpoints/1", 'x" OR "1'):
        with pytest.raises(ValueError, match="endpoint"):
            CloudMonitoringMetrics(PROJECT, LOCATION, bad)


def test_permission_denied_says_what_to_grant(fake: FakeMonitoring) -> None:
    """A project the caller cannot read is a MetricsError naming the role to grant."""
    metrics = CloudMonitoringMetrics("other-project", LOCATION, ENDPOINT_ID, client=client())
    with pytest.raises(MetricsError, match=r"roles/monitoring\.viewer") as caught:
        metrics.window(CANARY, 60)
    assert isinstance(caught.value.__cause__, exceptions.PermissionDenied)


def test_the_fake_refuses_what_cloud_monitoring_refuses(fake: FakeMonitoring) -> None:
    """The fake is strict where the API is: unknown type, bad aligner or period, no type."""
    window = {"start_time": {"seconds": 1}, "end_time": {"seconds": 1000}}
    count = f'metric.type = "{PREFIX}prediction_count"'
    cases = [
        (f'metric.type = "{PREFIX}prediction_counts"', "ALIGN_SUM", 60, exceptions.NotFound),
        (count, "ALIGN_PERCENTILE_99", 60, exceptions.InvalidArgument),
        (count, "ALIGN_SUM", 30, exceptions.InvalidArgument),
        (
            'resource.type = "aiplatform.googleapis.com/Endpoint"',
            "ALIGN_SUM",
            60,
            exceptions.InvalidArgument,
        ),
        (
            count + " AND metric.labels.deployed_model_id != 1",
            "ALIGN_SUM",
            60,
            exceptions.InvalidArgument,
        ),
    ]
    for filter_, aligner, period, error in cases:
        aggregation = {"alignment_period": {"seconds": period}, "per_series_aligner": aligner}
        request = {"name": f"projects/{PROJECT}", "filter": filter_, "interval": window}
        with pytest.raises(error):
            client().list_time_series(request={**request, "aggregation": aggregation})


def test_factory_and_lazy_import() -> None:
    """metrics("gcp") builds it; the Monitoring SDK is imported only when a window is read."""
    built = build_metrics("gcp", project=PROJECT, location=LOCATION, endpoint_id=ENDPOINT_ID)
    assert isinstance(built, CloudMonitoringMetrics)
    code = (
        "import sys; from salesmesh.backends import metrics\n"
        f"m = metrics('gcp', project='{PROJECT}', location='{LOCATION}', endpoint_id='1')\n"
        "print('google.cloud.monitoring_v3' in sys.modules)\n"
        "try:\n    m.window('1', 60)\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
        "print('google.cloud.monitoring_v3' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "NO_GCE_CHECK": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert out == ["False", "MetricsError", "True"]  # no credentials here: MetricsError
