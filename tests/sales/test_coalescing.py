"""A burst of uploads folds into one pending run, through intake and the real local launcher."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sales_helpers import mesh_parts

from salesmesh import events, intake
from salesmesh.backends.local import LocalTrainingLauncher
from salesmesh.logs import capture
from salesmesh.ports import RunState, TrainingRequest, TrainingRun
from salesmesh.sales import open_history
from salesmesh.sales.pending import PendingRun, ensure_pending, stale_reason
from salesmesh.sample import generate
from salesmesh.settings import Settings

SAMPLE = generate(stores=2, products=10, days=120, seed=11)


@pytest.fixture
def mesh(bucket: Any, tmp_path: Path) -> tuple[Settings, LocalTrainingLauncher]:
    """The mesh's buckets and launcher; HEAD must be still for 3 s before a run trains."""
    return mesh_parts(bucket, tmp_path, quiet=3.0)


def _upload(bucket: Any, name: str, text: str) -> events.StorageObject:
    blob = bucket.blob(name)
    blob.upload_from_string(text, content_type="text/csv")
    blob.reload()
    return events.StorageObject(bucket.name, name, str(blob.generation))


def _all_finished(launcher: LocalTrainingLauncher, timeout: float = 240.0) -> list[TrainingRun]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = launcher.list()
        if runs and all(r.state.finished for r in runs):
            return runs
        time.sleep(0.3)
    raise AssertionError(f"runs still going after {timeout} s: {launcher.list()}")


def test_twenty_uploads_in_seconds_train_at_most_twice_and_the_last_covers_all(bucket, mesh):
    """20 one-series uploads at once: at most 2 runs; the last trains on every row of all 20."""
    settings, launcher = mesh
    parts = [p for _, p in SAMPLE.groupby(["store_id", "product_id"])]
    uploads = [
        _upload(bucket, f"uploads/burst/{i:02d}.csv", part.to_csv(index=False))
        for i, part in enumerate(parts)
    ]

    def deliver(upload: events.StorageObject) -> intake.Outcome:
        log = capture("train_trigger")
        return intake.handle_upload(upload, settings, launcher, lambda: bucket.client, log)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(deliver, uploads))
    handled_in = time.monotonic() - started
    runs = _all_finished(launcher)

    assert all(r.state == RunState.SUCCEEDED for r in runs), [Path(r.log).read_text() for r in runs]
    assert 1 <= len(runs) <= 2, (handled_in, [o.action for o in outcomes])
    assert sorted(o.action for o in outcomes).count("launched") == len(runs)
    store = open_history(settings, lambda: bucket.client)
    head = store.current()
    assert head.rows == len(SAMPLE) and len(head.uploads) == 20
    last = store.runs()[-1]
    assert last["snapshot"] == head.id
    manifest = bucket.client.bucket(settings.model_bucket).blob(
        f"runs/{last['run_id']}/manifest.json"
    )
    data = json.loads(manifest.download_as_text())["data"]
    assert data["rows"] == len(SAMPLE) and data["snapshot"]["id"] == head.id
    assert sorted(u["uri"] for u in data["snapshot"]["uploads"]) == sorted(
        f"{u.uri}#{u.generation}" for u in uploads
    )
    assert PendingRun(store).holder()[0] is None


def test_a_claim_whose_run_died_is_taken_over(bucket, mesh):
    """A trainer that failed before releasing its claim does not hold later uploads back."""
    settings, launcher = mesh
    store = open_history(settings, lambda: bucket.client)
    dead = launcher.launch(
        TrainingRequest("r-dead", "salesmesh-history://x/y?quiet=never", "gs://m/runs/r-dead", 7)
    )
    PendingRun(store).acquire(dead.run_id, "c-dead")
    _all_finished(launcher)
    upload = _upload(bucket, "uploads/sales.csv", SAMPLE.to_csv(index=False))
    log = capture("train_trigger")
    outcome = intake.handle_upload(upload, settings, launcher, lambda: bucket.client, log)
    assert outcome.action == "launched" and outcome.run_id == events.run_id(upload)
    runs = {r.run_id: r for r in _all_finished(launcher)}
    assert runs["r-dead"].state == "failed" and runs[outcome.run_id].state == "succeeded"
    assert store.runs()[-1]["run_id"] == outcome.run_id


def test_a_claim_no_launcher_knows_blocks_only_for_the_grace_period(bucket, mesh):
    """A claim whose launch died (no run) coalesces uploads within its grace, not after."""
    settings, launcher = mesh
    store = open_history(settings, lambda: bucket.client)
    now = [1000.0]
    pending = PendingRun(store, grace=60.0, lease=600.0, clock=lambda: now[0])
    pending.acquire("r-lost", "c-lost")
    request = TrainingRequest(
        "r-next", "salesmesh-history://x/y/s000001-000000000000", "gs://m/runs/r-next", 7
    )
    now[0] += 59.0
    assert ensure_pending(pending, launcher, request, "c-next").action == "coalesced"
    assert launcher.list() == []
    now[0] += 2.0
    taken = ensure_pending(pending, launcher, request, "c-next")
    assert (taken.action, pending.holder()[0]) == ("launched", "r-next")
    _all_finished(launcher)


def test_a_claim_past_its_lease_is_stale_whatever_its_run_says():
    """Queued or running, a claim older than its lease can be taken over; a finished run's
    at once; a young one with a live run cannot."""
    claim = {"run_id": "r-1", "claimed_at": 0.0}
    running = TrainingRun("r-1", RunState.RUNNING, "d", "o", "t")
    queued = TrainingRun("r-1", RunState.QUEUED, "d", "o", "t")
    failed = TrainingRun("r-1", RunState.FAILED, "d", "o", "t")
    assert stale_reason(claim, running, 99.0, lease=100.0, grace=10.0) is None
    assert stale_reason(claim, queued, 99.0, lease=100.0, grace=10.0) is None
    assert "lease" in (stale_reason(claim, running, 101.0, lease=100.0, grace=10.0) or "")
    assert "never released" in (stale_reason(claim, failed, 1.0, lease=100.0, grace=10.0) or "")
