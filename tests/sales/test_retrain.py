"""Training without an upload (`salesmesh train`, the retrain schedule): on the real emulator with
the real local launcher and trainer, through train_trigger's own handler for the schedule."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sales_helpers import entry, mesh_parts, rows

from salesmesh import events, intake
from salesmesh.backends.local import LocalTrainingLauncher
from salesmesh.errors import SourceError
from salesmesh.logs import capture
from salesmesh.ports import RunState, TrainingRequest, TrainingRun
from salesmesh.sales import HistoryUri, open_history, retrain
from salesmesh.sample import generate
from salesmesh.settings import Settings

SAMPLE = generate(stores=1, products=3, days=120, seed=5)


@pytest.fixture
def mesh(bucket: Any, tmp_path: Path) -> tuple[Settings, LocalTrainingLauncher]:
    return mesh_parts(bucket, tmp_path, quiet=0.5)


def _finished(launcher: LocalTrainingLauncher, run_id: str, timeout: float = 180) -> TrainingRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = launcher.get(run_id)
        if run is not None and run.state.finished:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} still going after {timeout} s")


def _upload(bucket: Any, settings: Settings, launcher: LocalTrainingLauncher) -> str:
    blob = bucket.blob("uploads/sales.csv")
    blob.upload_from_string(SAMPLE.to_csv(index=False), content_type="text/csv")
    blob.reload()
    upload = events.StorageObject(bucket.name, blob.name, str(blob.generation))
    log = capture("train_trigger")
    outcome = intake.handle_upload(upload, settings, launcher, lambda: bucket.client, log)
    assert outcome.action == "launched", outcome
    assert outcome.run_id is not None
    assert _finished(launcher, outcome.run_id).state == RunState.SUCCEEDED
    return outcome.run_id


def test_an_empty_history_is_refused_saying_what_to_do(bucket, mesh):
    settings, launcher = mesh
    with pytest.raises(SourceError, match="is empty: upload a sales file first"):
        retrain.retrain(settings, launcher, lambda: bucket.client)
    log = capture("train_trigger")
    assert (
        retrain.on_schedule({"who": "schedule"}, settings, launcher, lambda: bucket.client, log)
        is None
    )
    assert "scheduled retrain (schedule): the sales history" in log.records[-1]["message"]
    assert launcher.list() == []


def test_a_trained_head_retrains_nothing_unless_forced_and_a_failed_run_is_replaced(bucket, mesh):
    """HEAD trained by the upload's run: the schedule (twice, as at-least-once delivery may)
    launches nothing. --force trains again under a new id. A run on HEAD that failed is
    replaced by one new run, whose id is the same however often the schedule fires."""
    settings, launcher = mesh
    storage = lambda: bucket.client  # noqa: E731
    first = _upload(bucket, settings, launcher)
    head = open_history(settings, storage).current()
    assert head is not None

    log = capture("train_trigger")
    for _ in range(2):
        done = retrain.on_schedule({"who": "weekly"}, settings, launcher, storage, log)
        assert done is not None
        assert (done.action, done.run_id, done.snapshot) == ("current", first, head.id)
    assert "scheduled retrain (weekly): snapshot" in log.records[-1]["message"]
    assert [r.run_id for r in launcher.list()] == [first]

    forced = retrain.retrain(settings, launcher, storage, force=True, clock=lambda: 1.0e9)
    assert forced.action == "launched" and forced.run_id != first
    assert _finished(launcher, forced.run_id).state == RunState.SUCCEEDED
    runs = open_history(settings, storage).runs()
    assert [(r["run_id"], r["snapshot"]) for r in runs][-1] == (forced.run_id, head.id)

    # a run pinned to HEAD that fails after resolving it (a horizon the history cannot give)
    broken = "r-broken-0001"
    uri = HistoryUri(settings.state_bucket, settings.model_name, snapshot=head.id, run=broken)
    out = f"gs://{settings.model_bucket}/runs/{broken}"
    launcher.launch(TrainingRequest(broken, str(uri), out, 10_000, {}))
    assert _finished(launcher, broken).state == RunState.FAILED
    assert open_history(settings, storage).runs()[-1]["run_id"] == broken

    again = [retrain.retrain(settings, launcher, storage, who="weekly") for _ in range(2)]
    assert {a.action for a in again} <= {"launched", "coalesced"}
    assert again[0].run_id == again[1].run_id != broken
    assert again[0].run_id == retrain.run_id_for(settings.model_name, head.id, f"after-{broken}")
    assert _finished(launcher, again[0].run_id).state == RunState.SUCCEEDED


def test_a_snapshot_of_the_lineage_can_be_trained_pinned(bucket, mesh):
    settings, launcher = mesh
    storage = lambda: bucket.client  # noqa: E731
    first = _upload(bucket, settings, launcher)
    head = open_history(settings, storage).current()
    assert head is not None
    with pytest.raises(SourceError, match="snapshot s000099-000000000000 is not in the history"):
        retrain.retrain(settings, launcher, storage, snapshot="s000099-000000000000")
    same = retrain.retrain(settings, launcher, storage, snapshot=head.id)
    assert (same.action, same.run_id) == ("current", first)
    pinned = retrain.retrain(settings, launcher, storage, snapshot=head.id, force=True)
    assert pinned.action == "launched"
    run = _finished(launcher, pinned.run_id)
    assert run.state == RunState.SUCCEEDED
    assert f"/{head.id}?" in run.data_uri  # pinned to the snapshot, not to HEAD


def test_a_run_resolving_the_history_is_joined_not_doubled(bucket, mesh):
    """Between a run releasing the pending claim and recording the snapshot it resolved, no
    claim and no record say HEAD is covered: the running run does, and a retrain joins it."""
    settings, launcher = mesh
    storage = lambda: bucket.client  # noqa: E731
    _upload(bucket, settings, launcher)  # HEAD, trained
    history = open_history(settings, storage)
    later = SAMPLE.tail(3).assign(sales=SAMPLE.tail(3)["sales"] + 1)  # three corrections
    merged = history.merge(entry("uploads/more.csv"), rows(later), replace=False)  # a new HEAD
    # a run launched on the history that holds no claim and has recorded nothing yet
    resolving = "r-resolving-0001"
    uri = HistoryUri(settings.state_bucket, settings.model_name, run=resolving, quiet=2.0)
    out = f"gs://{settings.model_bucket}/runs/{resolving}"
    launcher.launch(TrainingRequest(resolving, str(uri), out, settings.horizon, {}))
    joined = retrain.retrain(settings, launcher, storage, who="weekly")
    assert (joined.action, joined.run_id, joined.snapshot) == (
        "coalesced",
        resolving,
        merged.snapshot.id,
    )
    assert _finished(launcher, resolving).state == RunState.SUCCEEDED
    after = retrain.retrain(settings, launcher, storage, who="weekly")
    assert (after.action, after.run_id) == ("current", resolving)
