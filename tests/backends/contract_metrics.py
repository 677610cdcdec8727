"""The Metrics contract, run against every backend (fsspec's abstract test style).

A backend's test module subclasses :class:`MetricsContract` and provides a ``traffic`` fixture:
a :class:`Traffic` whose ``metrics`` reads what its ``serve`` sent, on that backend's terms
(real requests through the local router; points in a fake Cloud Monitoring as Vertex AI would
write them).
"""

from __future__ import annotations

from typing import Protocol

import pytest

from salesmesh.ports import Metrics, ModelMetrics

CANARY, STABLE, UNKNOWN = "1000000002", "1000000001", "1000000999"
SLOW_MS = 400.0  # a slow answer's latency; fast answers take a few milliseconds


class Traffic(Protocol):
    """Live traffic to deployed models of one endpoint, and the backend that measures it."""

    metrics: Metrics
    # A window the backend accepts that is short enough to wait past, and one that is long.
    short_window: float
    long_window: float

    def serve(self, model_id: str, *, fast: int = 0, slow: int = 0, errors: int = 0) -> None:
        """Send ``fast`` quick and ``slow`` SLOW_MS successful requests and ``errors`` requests
        answered 5xx, all to ``model_id``, now."""
        ...

    def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass: everything served so far is that much older."""
        ...


class MetricsContract:
    """What every Metrics backend must do."""

    def test_counts_one_models_requests_errors_and_p99(self, traffic: Traffic) -> None:
        """A known number of requests and 5xx errors is reported, with the slow ones' p99."""
        traffic.serve(CANARY, fast=15, slow=2, errors=3)
        seen = traffic.metrics.window(CANARY, 60)
        assert (seen.deployed_model_id, seen.window_seconds) == (CANARY, 60)
        assert (seen.requests, seen.errors) == (20, 3)
        assert seen.error_rate == pytest.approx(3 / 20)
        assert seen.p99_ms is not None and SLOW_MS / 2 <= seen.p99_ms <= SLOW_MS * 2

    def test_fast_traffic_has_a_low_p99(self, traffic: Traffic) -> None:
        """Without slow answers the p99 stays far below the slow latency."""
        traffic.serve(CANARY, fast=10)
        seen = traffic.metrics.window(CANARY, 60)
        assert seen.requests == 10 and seen.errors == 0 and seen.error_rate == 0.0
        assert seen.p99_ms is not None and 0 < seen.p99_ms < SLOW_MS / 2

    def test_another_models_traffic_is_not_counted(self, traffic: Traffic) -> None:
        """Each deployed model reports its own traffic only."""
        traffic.serve(STABLE, fast=7, errors=2, slow=1)
        traffic.serve(CANARY, fast=5)
        canary = traffic.metrics.window(CANARY, 60)
        assert (canary.requests, canary.errors) == (5, 0)
        assert canary.p99_ms is not None and canary.p99_ms < SLOW_MS / 2
        stable = traffic.metrics.window(STABLE, 60)
        assert (stable.requests, stable.errors) == (10, 2)

    def test_unknown_model_has_zeros_and_no_p99(self, traffic: Traffic) -> None:
        """A model that served nothing reports zeros and no latency figure."""
        traffic.serve(CANARY, fast=3)
        assert traffic.metrics.window(UNKNOWN, 60) == ModelMetrics(UNKNOWN, 60, 0, 0, None)

    def test_window_excludes_older_traffic(self, traffic: Traffic) -> None:
        """Traffic older than the window is left out; a longer window takes it back in."""
        traffic.serve(CANARY, fast=4, errors=2, slow=1)
        traffic.elapse(traffic.short_window * 1.5)
        traffic.serve(CANARY, fast=3)
        recent = traffic.metrics.window(CANARY, traffic.short_window)
        assert recent.window_seconds == traffic.short_window
        assert (recent.requests, recent.errors) == (3, 0)
        assert recent.p99_ms is not None and recent.p99_ms < SLOW_MS / 2
        both = traffic.metrics.window(CANARY, traffic.long_window)
        assert (both.requests, both.errors) == (10, 2)
        assert both.p99_ms is not None and both.p99_ms >= SLOW_MS / 2

    @pytest.mark.parametrize("seconds", [0, -5, float("nan")])
    def test_a_window_must_be_positive(self, traffic: Traffic, seconds: float) -> None:
        """A window of no time, negative time or nan is refused."""
        with pytest.raises(ValueError):
            traffic.metrics.window(CANARY, seconds)
