"""train_trigger's core: ignore, quarantine with a reason, or merge and make one run pending."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from salesmesh import events, intake
from salesmesh.backends.local import LocalTrainingLauncher
from salesmesh.logs import capture
from salesmesh.sales import HistoryUri, open_history
from salesmesh.sales.pending import PendingRun
from salesmesh.sample import generate
from salesmesh.settings import Settings

VALID = generate(stores=1, products=2, days=120, seed=5).to_csv(index=False)
NEGATIVE = VALID.replace("\n2024-01-05,S01,P001,", "\n2024-01-05,S01,P001,-", 1)


def _upload(bucket: Any, name: str, text: str) -> events.StorageObject:
    blob = bucket.blob(name)
    blob.upload_from_string(text, content_type="text/csv")
    blob.reload()
    return events.StorageObject.from_data(
        {"bucket": bucket.name, "name": name, "generation": str(blob.generation), "size": "1"}
    )


@pytest.fixture
def settings(bucket: Any, tmp_path: Path) -> Settings:
    """The test bucket as data bucket, a fresh model bucket beside it, a private state folder."""
    models = bucket.client.create_bucket(f"{bucket.name[:50]}-models")
    states = bucket.client.create_bucket(f"{bucket.name[:50]}-state")
    return Settings(
        data_bucket=bucket.name,
        model_bucket=models.name,
        state_bucket=states.name,
        horizon=7,
        state_dir=tmp_path / "state",
        history_quiet=0.5,
    )


def _finished(launcher: LocalTrainingLauncher, run_id: str, timeout: float = 120.0) -> Any:
    """Wait for the run's subprocess to end, so no test leaves a trainer running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = launcher.get(run_id)
        if run is not None and run.state.finished:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s: {launcher.get(run_id)}")


@pytest.fixture
def launcher(settings: Settings) -> LocalTrainingLauncher:
    """The real local launcher: each launch starts the trainer as a subprocess, which shares
    the state folder (and so the history's lock) as it does in the mesh."""
    env = {**os.environ, "SALESMESH_STATE_DIR": str(settings.state_dir)}
    return LocalTrainingLauncher(settings.state_dir, env=env)


def _handle(upload: events.StorageObject, settings: Settings, launcher: Any, bucket: Any) -> Any:
    log = capture("train_trigger")
    outcome = intake.handle_upload(upload, settings, launcher, lambda: bucket.client, log)
    return outcome, log


def test_objects_outside_the_upload_prefix_are_ignored_with_the_reason(bucket, settings, launcher):
    """A file elsewhere in the bucket starts nothing and the log says why."""
    outcome, log = _handle(_upload(bucket, "exports/x.csv", VALID), settings, launcher, bucket)
    assert (outcome.action, launcher.list()) == ("ignored", [])
    assert "outside the upload prefix" in log.messages("INFO")[0]


def test_a_bad_file_is_quarantined_with_its_reason_and_starts_no_run(bucket, settings, launcher):
    """Negative sales: the file goes to the state bucket's quarantine/ with a report; no run."""
    upload = _upload(bucket, "uploads/2026/bad.csv", NEGATIVE)
    outcome, log = _handle(upload, settings, launcher, bucket)
    assert outcome.action == "rejected" and "sales_negative" in outcome.reason
    assert launcher.list() == []
    state = bucket.client.bucket(settings.state_bucket)  # no function listens there: no loop
    copy = state.blob("quarantine/2026/bad.csv").download_as_text()
    report = json.loads(state.blob("quarantine/2026/bad.csv.error.json").download_as_text())
    assert not bucket.blob("quarantine/2026/bad.csv").exists()
    assert copy == NEGATIVE  # nothing lost
    assert report["object"] == upload.uri and report["generation"] == upload.generation
    assert [e["rule"] for e in report["report"]["errors"]] == ["sales_negative"]
    assert bucket.blob("uploads/2026/bad.csv").exists()  # the original stays where it was
    [line] = log.records
    assert line["severity"] == "ERROR" and line["correlation_id"] == events.correlation_id(upload)


def test_a_valid_file_trains_one_run_on_the_history_snapshot(bucket, settings, launcher):
    """The upload is merged; the run trains on the snapshot holding it, which its manifest
    names with the upload's generation."""
    upload = _upload(bucket, "uploads/sales.csv", VALID)
    outcome, _ = _handle(upload, settings, launcher, bucket)
    assert outcome.action == "launched" and outcome.run is not None
    assert outcome.run.run_id == events.run_id(upload)
    expected = HistoryUri(settings.state_bucket, settings.model_name, run=outcome.run.run_id)
    assert outcome.run.data_uri == str(dataclasses.replace(expected, quiet=0.5))
    assert [r.run_id for r in launcher.list()] == [events.run_id(upload)]
    run = _finished(launcher, outcome.run.run_id)
    assert (run.state, run.exit_code) == ("succeeded", 0), Path(run.log or "").read_text()
    prefix = outcome.run.output_uri.removeprefix(f"gs://{settings.model_bucket}/")
    manifest = bucket.client.bucket(settings.model_bucket).blob(
        prefix.rstrip("/") + "/manifest.json"
    )
    data = json.loads(manifest.download_as_text())["data"]
    assert data["uri"] == str(expected.pinned(outcome.snapshot))
    assert data["snapshot"]["id"] == outcome.snapshot and data["rows"] == 240
    assert [u["uri"] for u in data["snapshot"]["uploads"]] == [f"{upload.uri}#{upload.generation}"]
    store = open_history(settings, lambda: bucket.client)
    assert store.runs()[0]["snapshot"] == outcome.snapshot  # the run record names it too
    assert PendingRun(store).holder()[0] is None  # the trainer released its claim


def test_a_redelivered_event_finds_the_run_and_starts_nothing(bucket, settings, launcher):
    """The same finalize event twice gives one run and one merge; the second says duplicate."""
    upload = _upload(bucket, "uploads/sales.csv", VALID)
    first, _ = _handle(upload, settings, launcher, bucket)
    run = _finished(launcher, first.run.run_id)  # started and released: nothing is pending
    second, log = _handle(upload, settings, launcher, bucket)
    assert (first.action, second.action) == ("launched", "duplicate")
    assert second.run_id == run.run_id and second.snapshot == first.snapshot
    assert len(launcher.list()) == 1
    assert "duplicate delivery" in log.messages("INFO")[0]
    assert open_history(settings, lambda: bucket.client).current().seq == 1


def test_an_increment_too_short_alone_is_merged_not_quarantined(bucket, settings, launcher):
    """One day of one store is no history on its own, but merged into one it trains."""
    first, _ = _handle(_upload(bucket, "uploads/v1.csv", VALID), settings, launcher, bucket)
    _finished(launcher, first.run.run_id)
    day = "date,store_id,product_id,sales\n2024-04-30,S01,P001,7\n"
    second, _ = _handle(_upload(bucket, "uploads/day.csv", day), settings, launcher, bucket)
    assert second.action == "launched", second.reason
    run = _finished(launcher, second.run.run_id)
    assert run.state == "succeeded", Path(run.log or "").read_text()
    snapshot = open_history(settings, lambda: bucket.client).current()
    assert (snapshot.rows, snapshot.added, snapshot.date_max) == (241, 1, "2024-04-30")


def test_a_first_upload_too_short_is_still_quarantined(bucket, settings, launcher):
    """With no history yet, an upload is the whole history: the history rule applies."""
    day = "date,store_id,product_id,sales\n2024-04-30,S01,P001,7\n"
    outcome, _ = _handle(_upload(bucket, "uploads/day.csv", day), settings, launcher, bucket)
    assert outcome.action == "rejected" and "history_length" in outcome.reason
    assert launcher.list() == []


def test_an_object_deleted_before_delivery_is_reported_not_retried(bucket, settings, launcher):
    """A vanished object returns normally (nothing to retry) with a warning naming it."""
    upload = _upload(bucket, "uploads/gone.csv", VALID)
    bucket.blob("uploads/gone.csv").delete()
    outcome, log = _handle(upload, settings, launcher, bucket)
    assert outcome.action == "missing" and launcher.list() == []
    assert "uploads/gone.csv" in log.messages("WARNING")[0]


def test_an_upload_under_the_replace_prefix_replaces_the_history(bucket, settings, launcher):
    """uploads/replace/… drops the rows it lacks: the next run trains on it alone."""
    first, _ = _handle(_upload(bucket, "uploads/v1.csv", VALID), settings, launcher, bucket)
    _finished(launcher, first.run.run_id)
    only = "\n".join(line for line in VALID.splitlines() if ",P002," not in line) + "\n"
    upload = _upload(bucket, "uploads/replace/p001.csv", only)
    outcome, log = _handle(upload, settings, launcher, bucket)
    assert outcome.action == "launched"
    assert "replaced the history with" in log.messages("INFO")[0]
    run = _finished(launcher, outcome.run.run_id)
    assert run.state == "succeeded", Path(run.log or "").read_text()
    store = open_history(settings, lambda: bucket.client)
    head = store.current()
    assert (head.mode, head.rows, head.series, head.id) == ("replace", 120, 1, outcome.snapshot)
    assert store.runs()[-1]["snapshot"] == head.id
