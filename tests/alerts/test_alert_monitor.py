"""The local monitor: open after the duration, close on clear, no data is no breach.

The thing under test is the evaluator, so the Metrics port is a tiny in-test implementation
(what each model served, as the test says) and time is a fake clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from salesmesh.alerts import incident
from salesmesh.alerts.incident import Incident, State
from salesmesh.alerts.monitor import Monitor
from salesmesh.alerts.policies import Policy, load
from salesmesh.errors import MetricsError
from salesmesh.ports import Metrics, ModelMetrics

STABLE, CANARY = "1000000001", "1000000002"


@dataclass
class Served:
    """A Metrics port answering whatever the test set per model; records the windows asked."""

    figures: dict[str, tuple[int, int, float | None]] = field(default_factory=dict)
    asked: list[tuple[str, float]] = field(default_factory=list)
    broken: bool = False

    def set(self, model: str, requests: int, errors: int = 0, p99_ms: float | None = None) -> None:
        self.figures[model] = (requests, errors, p99_ms)

    def window(self, deployed_model_id: str, seconds: float) -> ModelMetrics:
        if self.broken:
            raise MetricsError("no router runs")
        self.asked.append((deployed_model_id, seconds))
        requests, errors, p99 = self.figures.get(deployed_model_id, (0, 0, None))
        return ModelMetrics(deployed_model_id, seconds, requests, errors, p99)


@dataclass
class Clock:
    now: float = 1_764_590_400.0

    def __call__(self) -> float:
        return self.now


def _policy(name: str, scale: float = 1.0) -> Policy:
    return next(p for p in load(scale=scale) if p.name == name)


LATENCY, ERRORS = "prediction-latency-p99", "prediction-error-rate"


def _monitor(
    served: Served, clock: Clock, models: list[str], *names: str, scale: float = 1.0
) -> Monitor:
    metrics: Metrics = served
    policies = [_policy(n, scale) for n in names or (LATENCY,)]
    return Monitor(policies, metrics, lambda: list(models), "ep-1", clock)


def _run(monitor: Monitor, clock: Clock, seconds: float, step: float = 1.0) -> list[Incident]:
    """Evaluate every ``step`` seconds for ``seconds``; everything that opened or closed."""
    seen: list[Incident] = []
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        seen += monitor.evaluate()
    return seen


def test_a_slow_model_opens_only_after_the_duration_once():
    """p99 over 500 ms opens an incident 60 s after the breach began, not at 59 s, and once."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=800.0)
    monitor = _monitor(served, clock, [CANARY])
    assert monitor.evaluate() == []  # the breach starts here
    assert _run(monitor, clock, 59) == []
    opened = _run(monitor, clock, 1)
    assert [(i.state, i.deployed_model_id, i.observed_value) for i in opened] == [
        (State.OPEN, CANARY, 800.0)
    ]
    assert _run(monitor, clock, 120) == []  # still breaching: nothing more is published
    assert monitor.open_incidents() == opened
    assert ("1000000002", 60.0) in served.asked  # the policy's 60 s alignment window


def test_clearing_closes_the_incident_once_with_the_same_id():
    """Back under 500 ms, the open incident closes once, same id, ended_at set."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=800.0)
    monitor = _monitor(served, clock, [CANARY])
    (opened,) = _run(monitor, clock, 61)
    served.set(CANARY, requests=50, p99_ms=120.0)
    (closed,) = _run(monitor, clock, 1)
    assert (closed.incident_id, closed.state, closed.observed_value) == (
        opened.incident_id,
        State.CLOSED,
        120.0,
    )
    assert closed.ended_at == int(clock.now) and closed.started_at == opened.started_at
    assert _run(monitor, clock, 120) == []
    assert monitor.open_incidents() == []


def test_a_break_in_the_breach_restarts_the_duration():
    """A breach must last the whole duration without a break: one fast window resets it."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=800.0)
    monitor = _monitor(served, clock, [CANARY])
    assert _run(monitor, clock, 50) == []
    served.set(CANARY, requests=50, p99_ms=100.0)
    assert _run(monitor, clock, 1) == []
    served.set(CANARY, requests=50, p99_ms=800.0)
    assert _run(monitor, clock, 60) == []  # the new breach began at the first of these
    assert len(_run(monitor, clock, 1)) == 1


def test_no_requests_is_no_data_not_a_breach():
    """A model that served nothing never opens an incident, however long it stays quiet."""
    served, clock = Served(), Clock()
    monitor = _monitor(served, clock, [STABLE, CANARY], LATENCY, ERRORS)
    assert _run(monitor, clock, 600, step=5) == []
    assert monitor.open_incidents() == []


def test_no_data_closes_an_open_incident():
    """After a rollback the bad model takes no traffic: its incident closes with no value."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=800.0)
    monitor = _monitor(served, clock, [CANARY])
    (opened,) = _run(monitor, clock, 61)
    served.set(CANARY, requests=0)
    (closed,) = _run(monitor, clock, 1)
    assert (closed.incident_id, closed.state, closed.observed_value) == (
        opened.incident_id,
        State.CLOSED,
        None,
    )
    assert "returned to normal with no data" in closed.summary


def test_an_undeployed_model_closes_its_incident():
    """A model no longer deployed is no data: its open incident closes once."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=800.0)
    models = [STABLE, CANARY]
    monitor = Monitor([_policy(LATENCY)], served, lambda: list(models), "ep-1", clock)
    (opened,) = _run(monitor, clock, 61)
    models.remove(CANARY)
    (closed,) = _run(monitor, clock, 1)
    assert (closed.incident_id, closed.state) == (opened.incident_id, State.CLOSED)
    assert _run(monitor, clock, 10) == []


def test_one_incident_per_model_and_unique_ids_per_opening():
    """Two slow models open two incidents; a second opening of one model gets a new id."""
    served, clock = Served(), Clock()
    served.set(STABLE, requests=50, p99_ms=700.0)
    served.set(CANARY, requests=50, p99_ms=900.0)
    monitor = _monitor(served, clock, [STABLE, CANARY])
    opened = _run(monitor, clock, 61)
    assert sorted(i.deployed_model_id or "" for i in opened) == [STABLE, CANARY]
    assert len({i.incident_id for i in opened}) == 2
    served.set(CANARY, requests=50, p99_ms=100.0)
    _run(monitor, clock, 1)
    served.set(CANARY, requests=50, p99_ms=900.0)
    (again,) = _run(monitor, clock, 61)
    assert again.incident_id not in {i.incident_id for i in opened}


def test_the_error_rate_policy_needs_enough_requests_and_its_duration():
    """5xx share over 5 % opens after 120 s, but never on fewer than min_requests requests."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=10, errors=5)  # 50 % of too few requests: no data
    monitor = _monitor(served, clock, [CANARY], ERRORS)
    assert _run(monitor, clock, 300) == []
    served.set(CANARY, requests=100, errors=10)
    assert _run(monitor, clock, 120) == []
    (opened,) = _run(monitor, clock, 1)
    assert (opened.policy_name, opened.observed_value, opened.threshold_value) == (
        _policy(ERRORS).display_name,
        0.1,
        0.05,
    )
    assert (CANARY, 300.0) in served.asked


@pytest.mark.parametrize("scale", [30.0, 60.0])
def test_scale_runs_the_same_policy_in_seconds(scale: float):
    """Scaled, the latency policy reads 60/scale s windows and opens after 60/scale s."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=800.0)
    monitor = _monitor(served, clock, [CANARY], scale=scale)
    duration = 60 / scale
    monitor.evaluate()
    assert _run(monitor, clock, duration - 0.25, step=0.25) == []
    assert len(_run(monitor, clock, 0.25, step=0.25)) == 1
    assert served.asked[-1] == (CANARY, pytest.approx(60 / scale))


def test_the_published_notification_parses_back_to_the_incident():
    """monitor.payload() is a 1.2 notification naming the endpoint and model; it round-trips."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=812.4567)
    monitor = _monitor(served, clock, [CANARY])
    (opened,) = _run(monitor, clock, 61)
    served.set(CANARY, requests=50, p99_ms=100.0)
    (closed,) = _run(monitor, clock, 1)
    for change in (opened, closed):
        payload = monitor.payload(change)
        assert incident.parse(payload) == change
        body = json.loads(payload)["incident"]
        assert body["resource"]["labels"]["endpoint_id"] == "ep-1"
        assert body["metric"]["labels"]["deployed_model_id"] == CANARY
    assert opened.observed_value == 812.457


def test_an_unreadable_window_propagates_and_changes_nothing():
    """A MetricsError reaches the caller; the breach in progress is neither reset nor advanced."""
    served, clock = Served(), Clock()
    served.set(CANARY, requests=50, p99_ms=800.0)
    monitor = _monitor(served, clock, [CANARY])
    _run(monitor, clock, 30)
    served.broken = True
    with pytest.raises(MetricsError):
        _run(monitor, clock, 1)
    served.broken = False
    assert len(_run(monitor, clock, 30)) == 1
