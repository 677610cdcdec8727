"""What ``train_trigger`` does with an uploaded object: ignore, quarantine, or merge and train.

An accepted upload is merged into the model's sales history (:mod:`salesmesh.sales`), and one
run is made sure to be pending for it: launched now, or the one launched before that has not
started yet, which will train on whatever the history is when it starts. An upload under the
replace prefix replaces the history instead.

The handler must be safe under Eventarc's at-least-once delivery: an upload that was handled
leaves ``sales/<model>/uploads/<correlation id>.json``, found first by a redelivery, which then
reads nothing and launches nothing; a redelivery of one whose handling died part-way merges
nothing twice (the history's lineage knows the upload) and launches under the upload's own run
id, which the launcher starts at most once. Every path returns normally (a rejected file is
quarantined and logged at ERROR rather than raised, so the event is not redelivered forever).
Only unexpected failures raise, and those the delivery layer retries.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from salesmesh import events
from salesmesh.cas import CasConflictError
from salesmesh.data import Contract, ValidationReport, load_sales
from salesmesh.errors import MeshError, SourceError
from salesmesh.logs import Logger
from salesmesh.ports import TrainingLauncher, TrainingRequest, TrainingRun, rfc3339
from salesmesh.sales import HistoryUri, UploadEntry, open_history
from salesmesh.sales.pending import PendingRun, ensure_pending
from salesmesh.settings import Settings


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery: ``ignored``, ``missing``, ``duplicate``, ``rejected``,
    ``launched`` (a new run will train on the history) or ``coalesced`` (a run launched before
    and not started yet will), with the reason, the run and the history's snapshot."""

    action: str
    reason: str = ""
    run: TrainingRun | None = None
    run_id: str | None = None
    snapshot: str | None = None


def handle_upload(
    upload: events.StorageObject,
    settings: Settings,
    launcher: TrainingLauncher,
    storage: Callable[[], Any],
    log: Logger,
) -> Outcome:
    """Validate ``upload``, merge it into the history and make sure a run is pending for it,
    or say why not.

    ``storage`` makes a google-cloud-storage client (real GCS or the emulator) when one is
    needed: ignored deliveries never pay for one.
    """
    run_id = events.run_id(upload)
    correlation = events.correlation_id(upload)
    log = log.bind(
        correlation_id=correlation,
        labels={"run_id": run_id, "object": upload.uri, "generation": upload.generation},
    )
    check = events.is_data_file(upload, settings.upload_prefix, settings.quarantine_prefix)
    if not check.accepted:
        log.info(f"ignored {upload.uri}: {check.reason}")
        return Outcome("ignored", check.reason)

    history = open_history(settings, storage)
    handled = history.record("uploads", correlation)
    if (done := handled.read().document) is not None:
        log.info(
            f"duplicate delivery of {upload.uri}: merged into snapshot {done['snapshot']}, "
            f"trained by run {done['run_id']}"
        )
        return Outcome(
            "duplicate", "upload already handled", None, done["run_id"], done["snapshot"]
        )

    replace = settings.replaces_history(upload.name)
    # an increment need not hold a season of history on its own: the merged whole is checked
    # when a run trains on it; a first upload or a replacement is the whole history
    increment = not replace and history.head.read().document is not None
    contract = Contract(horizon=settings.horizon, require_history=not increment)
    pinned = f"{upload.uri}#{upload.generation}"  # exactly the version this event announced
    try:
        loaded = load_sales(pinned, contract)
    except SourceError as exc:
        # deleted or replaced before we read it: nothing to train on, nothing to retry
        log.warning(f"cannot read {upload.uri}: {exc}")
        return Outcome("missing", str(exc))
    if not loaded.report.ok or loaded.frame is None:
        reason = _quarantine(upload, loaded.report, settings, storage())
        log.error(f"rejected {upload.uri}: {reason}", rules=loaded.report.rules)
        return Outcome("rejected", reason)

    entry = UploadEntry(pinned, correlation, len(loaded.frame), 0, 0, 0, rfc3339())
    merged = history.merge(entry, loaded.frame, replace=replace)
    snapshot = merged.snapshot
    if merged.action == "duplicate":
        log.info(f"{upload.uri} is already in the history (snapshot {snapshot.id})")
    else:
        verb = "replaced the history with" if replace else "merged"
        log.info(
            f"{verb} {upload.uri}: {snapshot.upload.rows:,} rows: {snapshot.added:,} added, "
            f"{snapshot.corrected:,} corrected, {snapshot.upload.unchanged:,} unchanged; "
            f"snapshot {snapshot.id} holds {snapshot.rows:,} rows of {snapshot.series} series",
            snapshot=snapshot.id,
            added=snapshot.added,
            corrected=snapshot.corrected,
        )

    source = HistoryUri(history.bucket, history.model, run=run_id, quiet=settings.history_quiet)
    request = TrainingRequest(
        run_id=run_id,
        data_uri=str(source),
        output_uri=f"gs://{settings.model_bucket}/runs/{run_id}",
        horizon=settings.horizon,
        labels={"salesmesh-correlation": correlation},
    )
    pending = ensure_pending(PendingRun(history), launcher, request, correlation)
    record = {
        "upload": pinned,
        "snapshot": snapshot.id,
        "run_id": pending.run_id,
        "action": pending.action,
        "handled": rfc3339(),
    }
    # a concurrent delivery of the same upload may have recorded it first: same upload, done
    with contextlib.suppress(CasConflictError):
        handled.write(record, 0)
    if pending.action == "launched":
        state = pending.run.state if pending.run else "launched"
        log.info(f"training run {run_id} {state} on the history", output=request.output_uri)
    else:
        log.info(f"run {pending.run_id} has not started yet: it will train on this upload too")
    if merged.rows is not None:  # after the launch: scoring must not delay the training
        _score_live(settings, storage, merged.rows, snapshot.id, log)
    return Outcome(pending.action, "", pending.run, pending.run_id, snapshot.id)


def _score_live(
    settings: Settings, storage: Callable[[], Any], rows: Any, snapshot: str, log: Logger
) -> None:
    """New actuals arrived: score what the serving versions forecast for them
    (:mod:`salesmesh.accuracy`). Never in the upload's way: a failure is logged, and the next
    merge scores again."""
    from salesmesh import accuracy
    from salesmesh.data.series import series_frame

    try:
        actuals, _ = series_frame(rows)
        for version, live in accuracy.update(settings, storage, actuals, snapshot, log).items():
            log.info(
                f"live accuracy of version {version}: MASE {live.mase:.3f} over {live.points} "
                f"points of {live.series} series ({live.first}..{live.last}); backtest "
                f"{live.backtest_mase if live.backtest_mase is not None else '-'}",
                version=version,
            )
    except (MeshError, ValueError, KeyError) as exc:
        log.warning(f"live accuracy not scored for snapshot {snapshot}: {exc}")


def _quarantine(
    upload: events.StorageObject, report: ValidationReport, settings: Settings, storage: Any
) -> str:
    """Copy the file to the state bucket's quarantine prefix with ``<name>.error.json`` beside it.

    The state bucket, because no function listens to it: quarantining must not fire
    train_trigger again. The copy keeps the path under the upload prefix, so
    ``uploads/2026/x.csv`` lands at ``quarantine/2026/x.csv``; the report is written second, so
    its presence means "done". The original upload stays where it was.
    """
    relative = upload.name.removeprefix(settings.upload_prefix)
    target = settings.quarantine_prefix + relative
    source_bucket = storage.bucket(upload.bucket)
    bucket = storage.bucket(settings.state_bucket)
    source = source_bucket.blob(upload.name, generation=int(upload.generation))
    source_bucket.copy_blob(source, bucket, target, source_generation=int(upload.generation))
    summary = "; ".join(f"[{f.rule}] {f.message}" for f in report.errors[:5])
    document = {
        "object": upload.uri,
        "generation": upload.generation,
        "quarantined_as": f"gs://{settings.state_bucket}/{target}",
        "run_id": events.run_id(upload),
        "correlation_id": events.correlation_id(upload),
        "report": report.to_dict(),
    }
    bucket.blob(target + events.ERROR_REPORT_SUFFIX).upload_from_string(
        json.dumps(document, indent=2, default=str), content_type="application/json"
    )
    return summary
