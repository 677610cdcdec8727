"""Google Cloud metrics: one deployed model's traffic as Cloud Monitoring recorded it.

Vertex AI writes online-prediction metrics for every endpoint to Cloud Monitoring; this reads
three of them with ``MetricServiceClient.list_time_series``, one request each, over the interval
``(now - window, now]`` aligned as one period of the window's length:

- ``prediction/online/prediction_count`` (DELTA, INT64, 1): ALIGN_SUM, then REDUCE_SUM;
- ``prediction/online/error_count`` (DELTA, INT64, 1): ALIGN_SUM, then REDUCE_SUM;
- ``prediction/online/prediction_latencies`` (DELTA, DISTRIBUTION, ms): ALIGN_PERCENTILE_99,
  then REDUCE_MAX;

all three under ``aiplatform.googleapis.com/``.

What this relies on, from Google Cloud's metrics list (the ``aiplatform`` section) and the
Monitoring API reference:

- All three are written on the monitored resource ``aiplatform.googleapis.com/Endpoint``
  (resource labels ``resource_container``, ``location``, ``endpoint_id``) with the metric labels
  ``deployed_model_id``, ``spot``, ``model_display_name`` and ``endpoint_display_name``; the
  filter pins the resource type, ``endpoint_id``, ``location`` and ``deployed_model_id``, and
  the sums run across whatever label sets remain (REDUCE_SUM), so nothing is counted twice or
  missed.
- ``prediction_latencies`` also has ``latency_type``: "overhead", "model" or "total", of which
  only "total" (end to end, what a caller waits) is always populated; the filter takes "total".
  Its p99 is Cloud Monitoring's percentile of the merged distribution buckets, so it is as fine
  as Vertex AI's buckets are, not a nearest-rank figure like the local router's. REDUCE_MAX
  keeps the worst series should more than one match (normally exactly one does).
- An alignment period must be at least 60 s, so a window under 60 s is refused; a fractional
  window is rounded up to whole seconds and reported as such in ``window_seconds``.
- The list calls the three metrics BETA and documents neither whether ``prediction_count``
  counts requests or instances (the console's chart counts each instance of a multi-instance
  request; the mesh's requests carry one) nor whether ``error_count`` counts 4xx answers (the
  port counts 5xx only). Where Vertex AI counts them, so does this.

**Ingestion delay.** Vertex AI samples these metrics every 60 s, and its sibling endpoint
metrics are documented as "not visible for up to 360 seconds" after sampling: the last minutes
of any window are under-counted or empty. Zeros mean "nothing recorded yet" as much as "no
traffic", and p99 None means "no figure", never "fast": a caller must require a minimum number
of requests before trusting a window (the canary verdict does) and must not read absence as
health.

The Monitoring client is imported on first use and created once per instance; failures of the
API (permissions, quota) are :class:`~salesmesh.errors.MetricsError` saying what to grant.
"""

from __future__ import annotations

import importlib
import math
import re
import time
from typing import Any

from salesmesh.errors import MetricsError
from salesmesh.ports import ModelMetrics

METRIC_PREFIX = "aiplatform.googleapis.com/prediction/online/"
PREDICTIONS = METRIC_PREFIX + "prediction_count"
ERRORS = METRIC_PREFIX + "error_count"
LATENCIES = METRIC_PREFIX + "prediction_latencies"
RESOURCE_TYPE = "aiplatform.googleapis.com/Endpoint"
MIN_WINDOW = 60  # seconds: Cloud Monitoring's shortest alignment period
# Vertex AI endpoint ids: numeric (generated) or a custom id of lowercase letters, digits and '-'.
_ENDPOINT_ID = re.compile(r"[0-9]{1,19}|[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RESOURCE = re.compile(
    r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/(?P<id>[^/]+)"
)
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # nothing that could end a quoted filter value


class CloudMonitoringMetrics:
    """Per deployed model requests, errors and p99 latency of one Vertex AI endpoint."""

    def __init__(
        self, project: str, location: str, endpoint_id: str, *, client: Any = None
    ) -> None:
        """``endpoint_id`` is the endpoint's id or its ``projects/P/locations/L/endpoints/ID``
        name; ``client`` a ``monitoring_v3.MetricServiceClient`` (one is made on first use)."""
        if not project or not _LABEL_VALUE.fullmatch(project):
            raise ValueError(f"project {project!r} is not a Google Cloud project id or number")
        if not _LABEL_VALUE.fullmatch(location):
            raise ValueError(f"location {location!r} is not a Google Cloud region")
        named = _RESOURCE.fullmatch(endpoint_id)
        if named:
            if named["location"] != location:
                msg = (
                    f"endpoint {endpoint_id} is in {named['location']}, not in {location}: "
                    "give the endpoint's own location"
                )
                raise ValueError(msg)
            endpoint_id = named["id"]
        if not _ENDPOINT_ID.fullmatch(endpoint_id):
            raise ValueError(
                f"endpoint {endpoint_id!r} is neither a Vertex AI endpoint id (digits, or a "
                "custom id of lowercase letters, digits and '-') nor "
                "projects/P/locations/L/endpoints/ID"
            )
        self.project = project
        self.location = location
        self.endpoint_id = endpoint_id
        self._client = client

    def window(self, deployed_model_id: str, seconds: float) -> ModelMetrics:
        """What ``deployed_model_id`` served over the last ``seconds`` (zeros if nothing
        recorded yet: see the module's note on ingestion delay).

        ValueError for a window under 60 s or a malformed id; MetricsError when Cloud
        Monitoring refuses to answer.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or math.isnan(seconds):
            raise ValueError(f"seconds must be a number, got {seconds!r}")
        if not MIN_WINDOW <= seconds < math.inf:
            raise ValueError(
                f"a Cloud Monitoring window must be at least {MIN_WINDOW} s (its shortest "
                f"alignment period; Vertex AI samples once a minute), got {seconds!r}"
            )
        if not _LABEL_VALUE.fullmatch(deployed_model_id):
            raise ValueError(f"{deployed_model_id!r} is not a Vertex AI deployed model id")
        period = math.ceil(seconds)
        end = time.time_ns()
        interval = {"end_time": _timestamp(end), "start_time": _timestamp(end - period * 10**9)}
        scope = (
            f'resource.type = "{RESOURCE_TYPE}"'
            f' AND resource.labels.endpoint_id = "{self.endpoint_id}"'
            f' AND resource.labels.location = "{self.location}"'
            f' AND metric.labels.deployed_model_id = "{deployed_model_id}"'
        )
        requests = self._read(PREDICTIONS, scope, interval, period, "ALIGN_SUM", "REDUCE_SUM")
        errors = self._read(ERRORS, scope, interval, period, "ALIGN_SUM", "REDUCE_SUM")
        latency_scope = scope + ' AND metric.labels.latency_type = "total"'
        p99 = self._read(
            LATENCIES, latency_scope, interval, period, "ALIGN_PERCENTILE_99", "REDUCE_MAX"
        )
        return ModelMetrics(
            deployed_model_id,
            float(period),
            requests=int(sum(p.value.int64_value for p in requests)),
            errors=int(sum(p.value.int64_value for p in errors)),
            p99_ms=max((float(p.value.double_value) for p in p99), default=None),
        )

    def _read(
        self,
        metric_type: str,
        scope: str,
        interval: dict[str, Any],
        period: int,
        aligner: str,
        reducer: str,
    ) -> list[Any]:
        """Every aligned point of ``metric_type`` within ``scope`` over ``interval``."""
        monitoring = _monitoring()
        aggregation = monitoring.Aggregation(
            alignment_period={"seconds": period},
            per_series_aligner=getattr(monitoring.Aggregation.Aligner, aligner),
            cross_series_reducer=getattr(monitoring.Aggregation.Reducer, reducer),
        )
        request = monitoring.ListTimeSeriesRequest(
            name=f"projects/{self.project}",
            filter=f'metric.type = "{metric_type}" AND {scope}',
            interval=monitoring.TimeInterval(interval),
            aggregation=aggregation,
            view=monitoring.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        exceptions = importlib.import_module("google.api_core.exceptions")
        try:
            found = self._api().list_time_series(request=request)
            return [point for series in found for point in series.points]
        except exceptions.PermissionDenied as exc:
            raise MetricsError(
                f"Cloud Monitoring refused to read {metric_type} in project {self.project}: "
                f"{exc.message}; grant the caller roles/monitoring.viewer on it"
            ) from exc
        except exceptions.GoogleAPICallError as exc:
            raise MetricsError(
                f"Cloud Monitoring could not read {metric_type} for endpoint "
                f"{self.endpoint_id} in project {self.project}: {exc}"
            ) from exc

    def _api(self) -> Any:
        if self._client is None:
            auth = importlib.import_module("google.auth.exceptions")
            try:
                self._client = _monitoring().MetricServiceClient()
            except auth.DefaultCredentialsError as exc:
                raise MetricsError(
                    f"no Google credentials to read Cloud Monitoring: {exc}; run "
                    "gcloud auth application-default login, or run as a service account"
                ) from exc
        return self._client


def _timestamp(nanoseconds: int) -> dict[str, int]:
    seconds, nanos = divmod(nanoseconds, 10**9)
    return {"seconds": seconds, "nanos": nanos}


def _monitoring() -> Any:
    """``google.cloud.monitoring_v3``, imported on first use (seconds and many modules).

    Through importlib so mypy does not follow it into the typed ``google.cloud`` namespace
    (see :func:`salesmesh.backends.gcp._aiplatform`).
    """
    return importlib.import_module("google.cloud.monitoring_v3")
