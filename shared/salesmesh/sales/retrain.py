"""Training without an upload: by hand (``salesmesh train``) or on a schedule (Cloud Scheduler on
Google Cloud, ``salesmesh up --retrain-every`` locally), on the sales history.

The same path as an upload's run: the request goes through the pending claim (:mod:`.pending`)
and the backend's launcher, so a retrain asked for while an upload's run has not started yet
folds into that run, and the launcher starts one run id at most once.

- **HEAD** (the default): a run on the history as it is when the run starts. Its id is derived
  from HEAD's snapshot, so asking twice (a scheduler delivers at least once) launches once.
  When a run already trained on HEAD, nothing is launched and the answer says which run: a
  weekly schedule on a history that did not change retrains nothing. Unless that run failed:
  then one new run (its id derived from the failed one's). ``force`` trains anyway, under a
  new id.
- **A snapshot** (``--snapshot ID``): a run pinned to that snapshot of HEAD's lineage, e.g. to
  rebuild the model a snapshot gave. It takes no pending claim: it never folds into, nor holds
  back, the runs that follow the uploads.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from salesmesh.errors import SourceError
from salesmesh.local.binary import RETRAIN_EVENT
from salesmesh.logs import Logger
from salesmesh.ports import RunState, TrainingLauncher, TrainingRequest, TrainingRun
from salesmesh.sales.pending import PendingRun, ensure_pending
from salesmesh.sales.store import open_history
from salesmesh.sales.uri import HistoryUri, is_history
from salesmesh.settings import Settings

LAUNCHED, COALESCED, CURRENT = "launched", "coalesced", "current"
EVENT_TYPE = RETRAIN_EVENT  # the CloudEvent a schedule sends train_trigger


@dataclass(frozen=True)
class Retrained:
    """What a retrain did: ``launched`` a run, ``coalesced`` into the pending one, or found the
    snapshot ``current`` (already trained by ``run_id``)."""

    action: str
    run_id: str
    snapshot: str
    message: str
    run: TrainingRun | None = None


def run_id_for(model: str, snapshot: str, nonce: str = "") -> str:
    """``r-`` and 16 hex of the model, snapshot and (for a forced retrain) a nonce."""
    digest = hashlib.sha256(f"retrain/{model}/{snapshot}/{nonce}".encode()).hexdigest()
    return f"r-{digest[:16]}"


def retrain(
    settings: Settings,
    launcher: TrainingLauncher,
    storage: Callable[[], Any],
    *,
    snapshot: str | None = None,
    force: bool = False,
    who: str = "manual",
    clock: Callable[[], float] = time.time,
) -> Retrained:
    """Make sure a run trains on HEAD (or on ``snapshot``); SourceError when there is nothing
    to train on (an empty history, a snapshot not in it)."""
    history = open_history(settings, storage)
    head = history.current()
    if head is None:
        raise SourceError(
            f"the sales history of {settings.model_name} is empty: upload a sales file first "
            "(salesmesh upload FILE), then train"
        )
    lineage = {s.id for s in history.lineage()}
    target = head
    if snapshot is not None:
        if snapshot not in lineage:
            raise SourceError(
                f"snapshot {snapshot} is not in the history of {settings.model_name} (HEAD "
                f"{head.id}); `salesmesh data` lists them"
            )
        target = history.snapshot(snapshot)
    records = history.runs()
    trained = [str(r["run_id"]) for r in records if r.get("snapshot") == target.id]
    nonce = f"{who}-{clock():.0f}" if force else ""
    if not trained and not force and snapshot is None:
        # a run that released the pending claim but has not yet recorded the snapshot it
        # resolved will train on HEAD (or later): another run now would train it twice
        resolved = {str(r["run_id"]) for r in records}
        for run in launcher.list():
            uri = HistoryUri.parse(run.data_uri) if is_history(run.data_uri) else None
            unpinned = uri is not None and uri.snapshot is None and uri.model == history.model
            if unpinned and not run.state.finished and run.run_id not in resolved:
                return Retrained(
                    COALESCED,
                    run.run_id,
                    head.id,
                    f"run {run.run_id} is resolving the history: it will train on HEAD ({head.id})",
                    run,
                )
    if trained and not force:
        last = launcher.get(trained[-1])
        if last is None or last.state != RunState.FAILED:
            return Retrained(
                CURRENT,
                trained[-1],
                target.id,
                f"snapshot {target.id} was trained by run {trained[-1]}"
                f"{f' ({last.state})' if last else ''}: nothing to do (force to train it again)",
            )
        nonce = f"after-{last.run_id}"  # that run failed: a new one, once
    run_id = run_id_for(settings.model_name, target.id, nonce)
    labels = {"salesmesh-retrain": who}
    output = f"gs://{settings.model_bucket}/runs/{run_id}"
    if snapshot is not None:  # pinned: launched directly, no claim to fold into
        uri = HistoryUri(history.bucket, history.model, snapshot=target.id, run=run_id)
        request = TrainingRequest(run_id, str(uri), output, settings.horizon, labels)
        run = launcher.launch(request)
        return Retrained(
            LAUNCHED, run_id, target.id, f"run {run_id} {run.state} on snapshot {target.id}", run
        )
    uri = HistoryUri(history.bucket, history.model, run=run_id, quiet=settings.history_quiet)
    request = TrainingRequest(run_id, str(uri), output, settings.horizon, labels)
    pending = ensure_pending(PendingRun(history), launcher, request, f"{who}:{run_id}")
    if pending.action == "launched":
        state = pending.run.state if pending.run else "launched"
        message = f"run {run_id} {state} on the history (HEAD {head.id})"
        return Retrained(LAUNCHED, run_id, head.id, message, pending.run)
    return Retrained(
        COALESCED,
        pending.run_id,
        head.id,
        f"run {pending.run_id} has not started yet: it will train on HEAD ({head.id})",
        pending.run,
    )


def on_schedule(
    data: Any,
    settings: Settings,
    launcher: TrainingLauncher,
    storage: Callable[[], Any],
    log: Logger,
) -> Retrained | None:
    """train_trigger's handling of a scheduled retrain (CloudEvent :data:`EVENT_TYPE`, data
    ``{"who": "..."}``): retrain HEAD, logged. An empty history is logged, not raised: a
    redelivery cannot fill it. Any other failure raises, so the delivery is retried."""
    who = str(data.get("who") or "schedule") if isinstance(data, dict) else "schedule"
    who = "".join(c for c in who if c.isalnum() or c in "-_")[:40] or "schedule"
    try:
        done = retrain(settings, launcher, storage, who=who)
    except SourceError as exc:
        log.warning(f"scheduled retrain ({who}): {exc}")
        return None
    log.bind(labels={"run_id": done.run_id}).info(
        f"scheduled retrain ({who}): {done.message}", action=done.action, snapshot=done.snapshot
    )
    return done
