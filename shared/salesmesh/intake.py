"""What ``train_trigger`` does with an uploaded object: ignore, quarantine or launch one run.

The handler must be safe under Eventarc's at-least-once delivery: the run id derives from the
object's (bucket, name, generation), the launcher refuses to start a run id twice, and every
path returns normally (a rejected file is quarantined and logged at ERROR rather than raised,
so the event is not redelivered forever). Only unexpected failures raise, and those the
delivery layer retries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from salesmesh import events
from salesmesh.data import Contract, ValidationReport, load_sales
from salesmesh.errors import SourceError
from salesmesh.logs import Logger
from salesmesh.ports import TrainingLauncher, TrainingRequest, TrainingRun
from salesmesh.settings import Settings


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery: ``ignored``, ``missing``, ``duplicate``, ``rejected``
    or ``launched``, with the reason or the run."""

    action: str
    reason: str = ""
    run: TrainingRun | None = None


def handle_upload(
    upload: events.StorageObject,
    settings: Settings,
    launcher: TrainingLauncher,
    storage: Callable[[], Any],
    log: Logger,
) -> Outcome:
    """Validate ``upload`` and launch one training run for it, or say why not.

    ``storage`` makes a google-cloud-storage client (real GCS or the emulator) when one is
    needed: ignored and duplicate deliveries never pay for one.
    """
    run_id = events.run_id(upload)
    log = log.bind(
        correlation_id=events.correlation_id(upload),
        labels={"run_id": run_id, "object": upload.uri, "generation": upload.generation},
    )
    check = events.is_data_file(upload, settings.upload_prefix, settings.quarantine_prefix)
    if not check.accepted:
        log.info(f"ignored {upload.uri}: {check.reason}")
        return Outcome("ignored", check.reason)

    existing = launcher.get(run_id)
    if existing is not None:
        log.info(f"duplicate delivery of {upload.uri}: run {run_id} is {existing.state}")
        return Outcome("duplicate", "run already launched", existing)

    pinned = f"{upload.uri}#{upload.generation}"  # exactly the version this event announced
    try:
        loaded = load_sales(pinned, Contract(horizon=settings.horizon))
    except SourceError as exc:
        # deleted or replaced before we read it: nothing to train on, nothing to retry
        log.warning(f"cannot read {upload.uri}: {exc}")
        return Outcome("missing", str(exc))
    if not loaded.report.ok:
        reason = _quarantine(upload, loaded.report, settings, storage())
        log.error(f"rejected {upload.uri}: {reason}", rules=loaded.report.rules)
        return Outcome("rejected", reason)

    request = TrainingRequest(
        run_id=run_id,
        data_uri=pinned,
        output_uri=f"gs://{settings.model_bucket}/runs/{run_id}",
        horizon=settings.horizon,
        labels={"salesmesh-correlation": events.correlation_id(upload)},
    )
    run = launcher.launch(request)
    log.info(
        f"training run {run_id} {run.state} for {upload.uri}",
        rows=loaded.report.stats.get("rows"),
        series=loaded.report.stats.get("series"),
        output=run.output_uri,
    )
    return Outcome("launched", "", run)


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
