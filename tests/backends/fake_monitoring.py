"""Cloud Monitoring in memory behind the installed SDK: Vertex AI's online-prediction metrics.

:func:`monitoring` patches ``MetricServiceClient.list_time_series`` with ``autospec=True`` (a
wrong argument fails as it would against the API) and answers with real ``TimeSeries`` protos in
the SDK's own pager. :class:`FakeMonitoring` is the server side. It stores the points Vertex AI
writes for a deployed model (:meth:`FakeMonitoring.write_minute`: ``prediction_count``,
``error_count`` and ``prediction_latencies`` for latency types total, model and overhead, on the
``aiplatform.googleapis.com/Endpoint`` resource with the documented labels) and honours what a
request asks:

- the filter: ``key = "value"`` terms joined by ``AND`` over ``metric.type``,
  ``resource.type`` and ``metric.labels.*`` / ``resource.labels.*`` (``label`` too); exactly one
  metric type, which must exist (NotFound otherwise, as for a misspelt type);
- the interval ``(start, end]`` (a point counts by its end time);
- the aggregation: periods of ``alignment_period`` (at least 60 s) ending at ``end``,
  ``end - period``, ...; aligners ALIGN_SUM / ALIGN_DELTA (counts and distributions) and
  ALIGN_PERCENTILE_99/95/50/05 (distributions only, by linear interpolation within a bucket);
  reducers REDUCE_SUM and REDUCE_MAX (numbers only), without ``group_by_fields``. Combinations
  the API refuses are InvalidArgument; ones this fake does not implement fail the test.

Latency distributions use exponential buckets (scale 1 ms, growth 1.25): Vertex AI's own bucket
layout is not documented, so a percentile read here is as coarse as a realistic one.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from unittest import mock

from google.api import distribution_pb2, metric_pb2
from google.api_core import exceptions
from google.cloud.monitoring_v3 import (
    Aggregation,
    ListTimeSeriesRequest,
    ListTimeSeriesResponse,
    MetricServiceClient,
    Point,
    TimeSeries,
)
from google.cloud.monitoring_v3.services.metric_service.pagers import ListTimeSeriesPager

PROJECT, PROJECT_NUMBER, LOCATION = "demo-project", "123456789012", "europe-west4"
PREFIX = "aiplatform.googleapis.com/prediction/online/"
RESOURCE = "aiplatform.googleapis.com/Endpoint"
Kind, Value = metric_pb2.MetricDescriptor.MetricKind, metric_pb2.MetricDescriptor.ValueType
# What Vertex AI registers (Google Cloud's metrics list, aiplatform section)
DESCRIPTORS = {
    PREFIX + "prediction_count": (Kind.DELTA, Value.INT64),
    PREFIX + "error_count": (Kind.DELTA, Value.INT64),
    PREFIX + "prediction_latencies": (Kind.DELTA, Value.DISTRIBUTION),
}
BUCKETS = distribution_pb2.Distribution.BucketOptions(
    exponential_buckets={"num_finite_buckets": 60, "growth_factor": 1.25, "scale": 1.0}
)
_TERM = re.compile(
    r"\s*(?P<key>metric\.type|resource\.type|(?:metric|resource)\.labels?\.[a-z_]+)"
    r'\s*=\s*"(?P<value>[^"]*)"\s*'
)
_PERCENTILES = {"ALIGN_PERCENTILE_99": 99, "ALIGN_PERCENTILE_95": 95}
_PERCENTILES |= {"ALIGN_PERCENTILE_50": 50, "ALIGN_PERCENTILE_05": 5}


@contextlib.contextmanager
def monitoring(fake: FakeMonitoring) -> Iterator[FakeMonitoring]:
    """Route ``MetricServiceClient.list_time_series`` to ``fake``."""
    with mock.patch.object(
        MetricServiceClient, "list_time_series", autospec=True, side_effect=fake.list_time_series
    ):
        yield fake


@dataclass
class Stored:
    """One point Vertex AI wrote: a minute of one label set of one metric, ending at ``end``."""

    metric_type: str
    labels: dict[str, str]
    resource: dict[str, str]
    end: int  # nanoseconds since the epoch
    value: Any  # an int, or a Distribution


class FakeMonitoring:
    """Stored points and the ``list_time_series`` side."""

    def __init__(self) -> None:
        self.points: list[Stored] = []
        self.requests: list[ListTimeSeriesRequest] = []

    def write_minute(
        self,
        endpoint_id: str,
        deployed_model_id: str,
        latencies_ms: Sequence[float],
        errors: int = 0,
        location: str = LOCATION,
    ) -> None:
        """What Vertex AI writes for one deployed model's last minute of traffic, ending now."""
        resource = {"resource_container": PROJECT_NUMBER, "location": location}
        resource["endpoint_id"] = endpoint_id
        labels = {"deployed_model_id": deployed_model_id, "spot": "False"}
        labels |= {"model_display_name": "salesmesh-demand", "endpoint_display_name": "salesmesh"}
        end = time.time_ns()
        for name, count in (("prediction_count", len(latencies_ms)), ("error_count", errors)):
            if count:
                self.points.append(Stored(PREFIX + name, labels, resource, end, count))
        for latency_type, share in (("total", 1.0), ("model", 0.9), ("overhead", 0.1)):
            latencies = distribution([share * ms for ms in latencies_ms])
            typed = {**labels, "latency_type": latency_type}
            self.points.append(
                Stored(PREFIX + "prediction_latencies", typed, resource, end, latencies)
            )

    def elapse(self, seconds: float) -> None:
        """Make every stored point ``seconds`` older."""
        for point in self.points:
            point.end -= round(seconds * 1e9)

    def list_time_series(self, _client: Any, request: Any = None, **flattened: Any) -> Any:
        """The API's answer: the series ``request`` selects, aligned and reduced as it asks."""
        fields = {k: v for k, v in flattened.items() if k in ("name", "filter", "interval", "view")}
        if request is not None and any(v is not None for v in fields.values()):
            raise ValueError(
                "If the `request` argument is set, then none of the individual "
                "field arguments should be set."
            )
        req = ListTimeSeriesRequest(request or {k: v for k, v in fields.items() if v is not None})
        self.requests.append(req)
        if req.name not in (f"projects/{PROJECT}", f"projects/{PROJECT_NUMBER}"):
            raise exceptions.PermissionDenied(
                "Permission monitoring.timeSeries.list denied (or the resource may not exist) "
                f"on {req.name}"
            )
        terms = _parse(req.filter)
        raw = ListTimeSeriesRequest.pb(req)
        start, end = raw.interval.start_time.ToNanoseconds(), raw.interval.end_time.ToNanoseconds()
        if not start < end:
            raise exceptions.InvalidArgument("The start time must be before the end time.")
        matching = [p for p in self.points if _matches(p, terms) and start < p.end <= end]
        period = raw.aggregation.alignment_period.ToNanoseconds()
        kind = DESCRIPTORS[terms["metric.type"]]
        found = _aggregate(matching, req.aggregation, period, end, kind)
        return ListTimeSeriesPager(
            method=lambda *_, **__: ListTimeSeriesResponse(),
            request=req,
            response=ListTimeSeriesResponse(time_series=found),
        )


def distribution(latencies: Sequence[float]) -> distribution_pb2.Distribution:
    """``latencies`` as a Cloud Monitoring distribution over :data:`BUCKETS`."""
    counts = [0] * (BUCKETS.exponential_buckets.num_finite_buckets + 2)
    for value in latencies:
        counts[_bucket(value)] += 1
    mean = sum(latencies) / len(latencies) if latencies else 0.0
    return distribution_pb2.Distribution(
        count=len(latencies),
        mean=mean,
        sum_of_squared_deviation=sum((v - mean) ** 2 for v in latencies),
        bucket_options=BUCKETS,
        bucket_counts=counts,
    )


def _bucket(value: float) -> int:
    options = BUCKETS.exponential_buckets
    if value < options.scale:
        return 0
    index = 1 + math.floor(math.log(value / options.scale, options.growth_factor))
    return min(index, options.num_finite_buckets + 1)


def _bounds(index: int) -> tuple[float, float]:
    options = BUCKETS.exponential_buckets
    if index == 0:
        return 0.0, options.scale
    lower = options.scale * options.growth_factor ** (index - 1)
    return lower, lower * options.growth_factor


def _merge(parts: Sequence[distribution_pb2.Distribution]) -> distribution_pb2.Distribution:
    merged = distribution_pb2.Distribution(bucket_options=BUCKETS)
    counts = [0] * (BUCKETS.exponential_buckets.num_finite_buckets + 2)
    total = sum(p.count for p in parts)
    mean = sum(p.mean * p.count for p in parts) / total if total else 0.0
    merged.count, merged.mean = total, mean
    merged.sum_of_squared_deviation = sum(
        p.sum_of_squared_deviation + p.count * (p.mean - mean) ** 2 for p in parts
    )
    for part in parts:
        for index, count in enumerate(part.bucket_counts):
            counts[index] += count
    merged.bucket_counts.extend(counts)
    return merged


def _percentile(merged: distribution_pb2.Distribution, rank: float) -> float:
    target, before = rank / 100 * merged.count, 0
    for index, count in enumerate(merged.bucket_counts):
        if count and before + count >= target:
            lower, upper = _bounds(index)
            return lower + (target - before) / count * (upper - lower)
        before += count
    raise AssertionError("unreachable for a non-empty distribution")


def _parse(text: str) -> dict[str, str]:
    terms: dict[str, str] = {}
    for term in text.split(" AND "):
        found = _TERM.fullmatch(term)
        if not found:
            raise exceptions.InvalidArgument(f"Could not parse filter {text!r} at {term!r}")
        key = re.sub(r"^(metric|resource)\.label\.", r"\1.labels.", found["key"])
        if key in terms:
            raise exceptions.InvalidArgument(f"{key} is restricted twice in {text!r}")
        terms[key] = found["value"]
    if "metric.type" not in terms:
        raise exceptions.InvalidArgument("A filter must specify a single metric type.")
    if terms["metric.type"] not in DESCRIPTORS:
        raise exceptions.NotFound(f"Cannot find metric(s) that match type = {terms['metric.type']}")
    return terms


def _matches(point: Stored, terms: dict[str, str]) -> bool:
    seen = {"metric.type": point.metric_type, "resource.type": RESOURCE}
    seen |= {f"metric.labels.{k}": v for k, v in point.labels.items()}
    seen |= {f"resource.labels.{k}": v for k, v in point.resource.items()}
    return all(seen.get(key) == value for key, value in terms.items())


def _aggregate(
    matching: list[Stored], aggregation: Aggregation, period: int, end: int, kind: Any
) -> list[TimeSeries]:
    align = Aggregation.Aligner(aggregation.per_series_aligner).name
    reduce = Aggregation.Reducer(aggregation.cross_series_reducer).name
    if align == "ALIGN_NONE":
        if reduce != "REDUCE_NONE":
            raise exceptions.InvalidArgument("A cross-series reducer needs a per-series aligner.")
        raise AssertionError("the fake answers aligned requests only")
    if period < 60 * 10**9:
        raise exceptions.InvalidArgument("The alignment period must be at least 60 seconds.")
    assert not aggregation.group_by_fields, "the fake does not implement group_by_fields"
    metric_kind, value_type = kind
    distributions = value_type == Value.DISTRIBUTION
    if align in _PERCENTILES and not distributions:
        raise exceptions.InvalidArgument(f"{align} is only valid for distribution metrics.")
    if align not in (*_PERCENTILES, "ALIGN_SUM", "ALIGN_DELTA"):
        raise AssertionError(f"the fake does not implement {align}")
    numbers = align in _PERCENTILES or not distributions
    if reduce == "REDUCE_MAX" and not numbers:
        raise exceptions.InvalidArgument("REDUCE_MAX is not valid for distribution values.")
    if reduce not in ("REDUCE_NONE", "REDUCE_SUM", "REDUCE_MAX"):
        raise AssertionError(f"the fake does not implement {reduce}")

    # per label set, per alignment period (0 ends at ``end``, 1 a period before, ...)
    grouped: dict[tuple[Any, ...], dict[int, list[Any]]] = {}
    for point in matching:
        key = (tuple(sorted(point.labels.items())), tuple(sorted(point.resource.items())))
        grouped.setdefault(key, {}).setdefault((end - point.end) // period, []).append(point.value)
    aligned: list[tuple[dict[str, Any], dict[int, Any]]] = []
    for (labels, resource), periods in grouped.items():
        if align in _PERCENTILES:
            values = {k: _percentile(_merge(v), _PERCENTILES[align]) for k, v in periods.items()}
        else:
            values = {k: _merge(v) if distributions else sum(v) for k, v in periods.items()}
        head = {"metric": {"labels": dict(labels)}, "resource": {"labels": dict(resource)}}
        aligned.append((head, values))
    if reduce != "REDUCE_NONE" and aligned:
        combined: dict[int, Any] = {}
        for k in sorted({k for _, values in aligned for k in values}):
            parts = [values[k] for _, values in aligned if k in values]
            if reduce == "REDUCE_MAX":
                combined[k] = max(parts)
            else:
                combined[k] = sum(parts) if numbers else _merge(parts)
        aligned = [({"metric": {}, "resource": {}}, combined)]  # labels reduced away
    out_kind = Kind.GAUGE if align in _PERCENTILES else metric_kind
    metric_type = matching[0].metric_type if matching else ""
    return [
        TimeSeries(
            metric={"type": metric_type, **head["metric"]},
            resource={"type": RESOURCE, **head["resource"]},
            metric_kind=out_kind,
            value_type=Value.DOUBLE if align in _PERCENTILES else value_type,
            points=[
                _point(end - k * period, period, v, out_kind) for k, v in sorted(values.items())
            ],
        )
        for head, values in aligned
    ]


def _point(at: int, step: int, value: Any, kind: Any) -> Point:
    interval = {"end_time": _timestamp(at)}
    interval["start_time"] = _timestamp(at if kind == Kind.GAUGE else at - step)
    if isinstance(value, distribution_pb2.Distribution):
        typed: dict[str, Any] = {"distribution_value": value}
    elif isinstance(value, float):
        typed = {"double_value": value}
    else:
        typed = {"int64_value": value}
    return Point(interval=interval, value=typed)


def _timestamp(nanoseconds: int) -> dict[str, int]:
    seconds, nanos = divmod(nanoseconds, 10**9)
    return {"seconds": seconds, "nanos": nanos}
