"""Alert policies: one file, ``policies.json`` beside this module, read by Terraform and the mesh.

Terraform creates each policy in Cloud Monitoring from the file (``jsondecode``: ``filter``,
``aligner``, ``alignment_period_seconds``, ``comparison``, ``threshold_value``,
``duration_seconds``, ...); the local monitor evaluates the same policies over the ``Metrics``
port. ``min_requests`` is the local evaluator's only extra: Cloud Monitoring has no minimum
count for a condition, while a window with two requests says nothing about a p99 or a rate.

``scale`` runs the same policies faster: windows and durations are divided by it, thresholds
stay as they are, so a demo sees a one-minute policy fire in seconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from importlib import resources
from typing import Any

from salesmesh.errors import ConfigError

# Cloud Monitoring's shortest alignment period; the file must hold the real policy, so a
# shorter one is refused there (a scaled copy may go below it, locally).
MIN_ALIGNMENT_SECONDS = 60
# A policy name is a Terraform key and part of local incident ids: keep it to what both accept.
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


class PolicyError(ConfigError):
    """The alert policy file is malformed; the message names the policy and the field."""


class Kind(StrEnum):
    """What a policy measures, and so which figure of ``ModelMetrics`` the monitor reads."""

    LATENCY_P99 = "latency_p99"  # p99_ms, in milliseconds
    ERROR_RATE = "error_rate"  # errors / requests, a fraction 0-1


_ALIGNERS = {Kind.LATENCY_P99: ("ALIGN_PERCENTILE_99",), Kind.ERROR_RATE: ("ALIGN_DELTA",)}
_COMPARISONS = ("COMPARISON_GT",)  # the only one the mesh needs; a new one needs monitor code
_MISSING_DATA = ("EVALUATION_MISSING_DATA_INACTIVE",)  # what the monitor implements


@dataclass(frozen=True)
class Policy:
    """One alert policy with one threshold condition, possibly scaled (see :meth:`scaled`)."""

    name: str
    display_name: str
    kind: Kind
    metric_type: str
    metric_display_name: str
    resource_type: str
    filter: str
    denominator_filter: str | None
    aligner: str
    reducer: str
    group_by: tuple[str, ...]
    alignment_period_seconds: float
    comparison: str
    threshold_value: float
    unit: str
    duration_seconds: float
    min_requests: int
    evaluation_missing_data: str
    documentation: str
    scale: float = 1.0

    @property
    def window_seconds(self) -> float:
        """The window the monitor reads: one alignment period."""
        return self.alignment_period_seconds

    def scaled(self, factor: float) -> Policy:
        """This policy with windows and duration divided by ``factor``, thresholds unchanged."""
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor > 0:
            raise PolicyError(
                f"policy {self.name!r}: scale must be a positive number, got {factor!r}"
            )
        return replace(
            self,
            alignment_period_seconds=self.alignment_period_seconds / factor,
            duration_seconds=self.duration_seconds / factor,
            scale=self.scale * factor,
        )

    def breached(self, value: float) -> bool:
        """True when ``value`` violates the threshold (the condition is met)."""
        return value > self.threshold_value  # COMPARISON_GT, the only comparison allowed

    def condition(self, project_id: str) -> dict[str, Any]:
        """The condition as Cloud Monitoring's API and incidents spell it (camelCase JSON)."""
        aggregation = {
            "alignmentPeriod": _seconds(self.alignment_period_seconds),
            "perSeriesAligner": self.aligner,
            "crossSeriesReducer": self.reducer,
            "groupByFields": list(self.group_by),
        }
        threshold: dict[str, Any] = {
            "filter": self.filter,
            "aggregations": [aggregation],
            "comparison": self.comparison,
            "thresholdValue": self.threshold_value,
            "duration": _seconds(self.duration_seconds),
            "trigger": {"count": 1},
            "evaluationMissingData": self.evaluation_missing_data,
        }
        if self.denominator_filter is not None:
            threshold["denominatorFilter"] = self.denominator_filter
            threshold["denominatorAggregations"] = [aggregation]
        return {
            "name": f"projects/{project_id}/alertPolicies/{self.name}/conditions/{self.name}",
            "displayName": self.display_name,
            "conditionThreshold": threshold,
        }


def _seconds(value: float) -> str:
    """A protobuf Duration in JSON: ``"60s"``, ``"0.5s"``."""
    return f"{value:g}s"


def load(text: str | None = None, *, scale: float = 1.0) -> list[Policy]:
    """The policies in ``text`` (default: the packaged ``policies.json``), validated, scaled."""
    if text is None:
        text = resources.files("salesmesh.alerts").joinpath("policies.json").read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"policies.json is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != 1:
        raise PolicyError('policies.json must be an object with "version": 1')
    entries = document.get("policies")
    if not isinstance(entries, list) or not entries:
        raise PolicyError('policies.json needs a non-empty "policies" list')
    policies = [_policy(i, entry) for i, entry in enumerate(entries)]
    names = [p.name for p in policies]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise PolicyError(f"policies named twice: {duplicated}")
    return [p.scaled(scale) for p in policies] if scale != 1.0 else policies


def _policy(index: int, entry: Any) -> Policy:
    where = f"policy #{index + 1}"
    if not isinstance(entry, dict):
        raise PolicyError(f"{where} is not an object")
    name = _text(entry, "name", where)
    if not _NAME.fullmatch(name):
        raise PolicyError(f"{where}: 'name' {name!r} must match {_NAME.pattern}")
    where = f"policy {name!r}"
    raw_kind = _text(entry, "kind", where)
    if raw_kind not in set(Kind):
        raise PolicyError(f"{where}: 'kind' {raw_kind!r} is not one of {[k.value for k in Kind]}")
    kind = Kind(raw_kind)
    metric_type = _text(entry, "metric_type", where)
    resource_type = _text(entry, "resource_type", where)
    filter_ = _text(entry, "filter", where)
    for needed in (f'metric.type = "{metric_type}"', f'resource.type = "{resource_type}"'):
        if needed not in filter_:
            raise PolicyError(
                f"{where}: 'filter' must contain {needed} (metric_type/resource_type)"
            )
    denominator = entry.get("denominator_filter")
    if kind is Kind.ERROR_RATE and (not isinstance(denominator, str) or not denominator):
        raise PolicyError(f"{where}: 'denominator_filter' must be a non-empty string for a rate")
    if kind is not Kind.ERROR_RATE and denominator is not None:
        raise PolicyError(f"{where}: 'denominator_filter' belongs to error_rate policies only")
    aligner = _choice(entry, "aligner", _ALIGNERS[kind], where)
    group_by = entry.get("group_by")
    if not isinstance(group_by, list) or not all(isinstance(g, str) and g for g in group_by):
        raise PolicyError(f"{where}: 'group_by' must be a list of field names, got {group_by!r}")
    period = _number(entry, "alignment_period_seconds", where, minimum=MIN_ALIGNMENT_SECONDS)
    threshold = _number(entry, "threshold_value", where, minimum=0)
    if kind is Kind.ERROR_RATE and threshold >= 1:
        raise PolicyError(
            f"{where}: 'threshold_value' of a rate is a fraction below 1, got {threshold}"
        )
    min_requests = entry.get("min_requests")
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 1:
        raise PolicyError(f"{where}: 'min_requests' must be an integer >= 1, got {min_requests!r}")
    return Policy(
        name=name,
        display_name=_text(entry, "display_name", where),
        kind=kind,
        metric_type=metric_type,
        metric_display_name=_text(entry, "metric_display_name", where),
        resource_type=resource_type,
        filter=filter_,
        denominator_filter=denominator,
        aligner=aligner,
        reducer=_text(entry, "reducer", where),
        group_by=tuple(group_by),
        alignment_period_seconds=period,
        comparison=_choice(entry, "comparison", _COMPARISONS, where),
        threshold_value=threshold,
        unit=_text(entry, "unit", where),
        duration_seconds=_number(entry, "duration_seconds", where, minimum=0),
        min_requests=min_requests,
        evaluation_missing_data=_choice(entry, "evaluation_missing_data", _MISSING_DATA, where),
        documentation=_text(entry, "documentation", where),
    )


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise PolicyError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _choice(entry: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = _text(entry, key, where)
    if value not in allowed:
        raise PolicyError(f"{where}: {key!r} {value!r} is not one of {list(allowed)}")
    return value


def _number(entry: dict[str, Any], key: str, where: str, *, minimum: float) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise PolicyError(f"{where}: {key!r} must be a number >= {minimum:g}, got {value!r}")
    return float(value)
