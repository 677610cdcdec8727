"""What ``deploy_model`` does with a finished run: verify, register, queue, and start rolling.

Fired by every object finalized in the model bucket; only a run's ``manifest.json``, written
last, means "complete". The steps, each logged with the upload's correlation id:

1. Verify: download the run and check every file's sha256 against the manifest. A run that
   fails is not registered; the reason is logged at ERROR (nothing is retried: the bytes will
   not change).
2. Register a new version of the one model, labelled with its run, correlation id and source
   data, carrying its backtest summary. A redelivery finds the version by its artifact folder
   (per version, unlike labels, which Vertex AI merges from the model into every version).
3. Queue it in the endpoint's rollout ledger (:mod:`salesmesh.rollout.ledger`) and take the
   first step of the rollout (:func:`salesmesh.rollout.steps.advance`): gate it against the
   champion and start its deployment, without waiting for it. Later steps arrive as
   ``dev.salesmesh.rollout.v1.step`` events (:func:`handle_step`).

Delivery is at least once: the ledger knows every run it queued, so a redelivered manifest is a
no-op (it only nudges the rollout on); the ledger's compare-and-swap writes make simultaneous
deliveries queue one version and start one deployment.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salesmesh import artifact, events
from salesmesh.errors import ArtifactIntegrityError, BadEventError, MeshError, SourceError
from salesmesh.logs import Logger
from salesmesh.ports import RUN_ID, ModelVersion
from salesmesh.rollout import policy, record
from salesmesh.rollout.steps import STATE_LABEL, STEP_EVENT, Rollouts, advance

RUN_LABEL = "salesmesh-run"
# A registration claimed by one delivery (see _claim) is waited for by the others this long,
# and taken over once it is older than CLAIM_SECONDS: its holder died.
CLAIM_WAIT_SECONDS, CLAIM_POLL_SECONDS, CLAIM_SECONDS = 60.0, 0.25, 300.0


class DeployInProgressError(MeshError):
    """Another delivery of the same run is registering it; the event should come again."""


CORRELATION_LABEL = "salesmesh-correlation"
# the files a run must have for it to be served and judged
REQUIRED = ("metrics.json", "series.csv", "forecaster.json")


@dataclass(frozen=True)
class Deployment:
    """What happened to one delivery: ``ignored``, ``duplicate``, ``rejected`` or ``queued``,
    with the reason, the version concerned and what the first rollout step did."""

    action: str
    reason: str = ""
    version: ModelVersion | None = None
    step: str = ""


def run_of(name: str) -> tuple[str, str] | None:
    """(run id, run folder) of a manifest object name, or None for any other object.

    ``runs/<run_id>/manifest.json`` locally; Vertex AI nests the artifact one level down, in
    ``runs/<run_id>/model/manifest.json``.
    """
    match = re.fullmatch(r"runs/([^/]+)/(?:model/)?" + re.escape(artifact.MANIFEST), name)
    if match is None or not RUN_ID.fullmatch(match.group(1)):
        return None
    return match.group(1), name.removesuffix(artifact.MANIFEST)


def handle_manifest(obj: events.StorageObject, world: Rollouts) -> Deployment:
    """Register a finished run as a version, queue it for a rollout and take the first step."""
    log = world.log
    found = run_of(obj.name)
    if found is None:
        log.debug(f"ignored {obj.uri}: not a run's {artifact.MANIFEST}")
        return Deployment("ignored", f"not a run's {artifact.MANIFEST}")
    run_id, folder = found
    log = log.bind(labels={"run_id": run_id})
    if (known := _known(world, run_id)) is not None:
        state = known.get("state", "")
        log.info(
            f"duplicate delivery: run {run_id} is already {state} as version "
            f"{known.get('version_id')}"
        )
        return Deployment("duplicate", f"already {state}", step=advance(world))

    with tempfile.TemporaryDirectory(prefix="salesmesh-deploy-") as workdir:
        try:
            local, manifest = artifact.fetch(f"gs://{obj.bucket}/{folder}", Path(workdir), REQUIRED)
            metrics = policy.summary(json.loads((local / "metrics.json").read_text()))
            horizon = int((manifest.get("model") or {}).get("horizon") or world.settings.horizon)
            probe = _probe(local / "series.csv", horizon)
        except (ArtifactIntegrityError, SourceError, ValueError, OSError) as exc:
            log.error(f"refusing to deploy run {run_id}: {exc}", artifact=obj.uri)
            return Deployment("rejected", str(exc))

    data = manifest.get("data") or {}
    upload = events.upload_from_uri(str(data.get("uri", "")), data.get("generation"))
    correlation = events.correlation_id(upload) if upload else f"c-{run_id.removeprefix('r-')}"
    log = log.bind(correlation_id=correlation)
    labels = {RUN_LABEL: run_id, CORRELATION_LABEL: correlation, STATE_LABEL: "registered"}
    if upload is not None:
        labels |= {"salesmesh-data-generation": upload.generation}
    metrics["source"] = {k: data.get(k) for k in ("uri", "generation", "md5", "rows")}
    uri = f"gs://{obj.bucket}/{folder.rstrip('/')}"
    if not _claim(world, run_id, log):
        log.info(f"duplicate delivery: run {run_id} was registered by another delivery")
        return Deployment("duplicate", "registered by another delivery", step=advance(world))
    # the artifact folder identifies a run's version: labels may carry the model's, merged in
    existing = [v for v in world.registry.versions() if v.artifact_uri == uri]
    version = (
        existing[0] if existing else world.registry.register(uri, labels=labels, metrics=metrics)
    )
    log = log.bind(labels={"version": version.version_id})
    entry = {
        "version_id": version.version_id,
        "run_id": run_id,
        "correlation_id": correlation,
        "artifact_uri": uri,
        "probe": probe,
    }
    queued: list[bool] = []
    now = world.clock()

    def queue(doc: dict[str, Any]) -> None:
        queued.append(record.queue_version(doc, entry, now))
        doc.get("registering", {}).pop(run_id, None)

    world.ledger.update(queue)
    log.info(f"registered run {run_id} as version {version.version_id}; queued for rollout")
    return Deployment("queued" if queued[-1] else "duplicate", "", version, advance(world))


def _claim(world: Rollouts, run_id: str, log: Logger) -> bool:
    """Whether this delivery registers ``run_id``: True for exactly one of any number of
    simultaneous deliveries; False once another has queued it. While another holds the claim,
    wait for it (a registration takes seconds); raise DeployInProgressError, so the event is
    delivered again later, if it takes too long or its holder died."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while (verdict := _try_claim(world, run_id, token)) is None:
        if time.monotonic() > deadline:
            raise DeployInProgressError(
                f"run {run_id} is being registered by another delivery; retry later (a "
                f"registration unfinished after {CLAIM_SECONDS:.0f} s is taken over)"
            )
        log.debug(f"run {run_id} is being registered by another delivery: waiting")
        time.sleep(CLAIM_POLL_SECONDS)  # another delivery is registering: seconds at most
    return verdict


def _try_claim(world: Rollouts, run_id: str, token: str) -> bool | None:
    """One attempt at :func:`salesmesh.rollout.record.claim_registration`, written if won."""
    verdict: list[bool | None] = []

    def claim(doc: dict[str, Any]) -> bool:
        now = world.clock()
        verdict.append(record.claim_registration(run_id, token, now, CLAIM_SECONDS, doc))
        return verdict[-1] is True

    world.ledger.update(claim)
    return verdict[-1]


def handle_event(event: Any, world: Rollouts) -> str:
    """Either event ``deploy_model`` gets: a finalized object, or a step of the rollout.

    A malformed event is logged whole at ERROR and acknowledged: redelivering it cannot fix it.
    """
    if event["type"] == STEP_EVENT:
        try:
            return handle_step(event.data, world)
        except BadEventError as exc:
            world.log.error(f"malformed rollout step {event['id']}: {exc}", data=event.data)
            return "malformed"
    from salesmesh import runtime

    found = runtime.storage_object(event, world.log)
    return "malformed" if found is None else handle_manifest(found, world).action


def handle_step(data: Any, world: Rollouts) -> str:
    """A ``dev.salesmesh.rollout.v1.step`` event: one step of the endpoint's rollout."""
    if not isinstance(data, Mapping):
        raise BadEventError(f"a rollout step's data must be a JSON object, got {data!r}")
    endpoint, seq = data.get("endpoint"), data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadEventError(f"a rollout step needs a whole 'seq' >= 0, got {seq!r}")
    if endpoint != world.ledger.endpoint:
        raise BadEventError(
            f"a rollout step for endpoint {endpoint!r} reached the function serving "
            f"{world.ledger.endpoint!r}: check SALESMESH_ENDPOINT"
        )
    return advance(world, seq)


def _known(world: Rollouts, run_id: str) -> dict[str, Any] | None:
    """The ledger's entry for the version of ``run_id`` once it is queued or decided."""
    doc = world.ledger.read().document
    version_id = doc["runs"].get(run_id)
    entry = doc["versions"].get(version_id) if version_id else None
    if entry is None or entry.get("state") == "registered":
        return None
    return dict(entry)


def _probe(series_csv: Path, horizon: int) -> dict[str, Any]:
    """One instance the new model must answer: its first series, a week ahead."""
    with series_csv.open(newline="") as handle:
        first = next(csv.DictReader(handle), None)
    if first is None:
        raise ValueError(f"{series_csv.name} lists no series")
    return {
        "store_id": first["store_id"],
        "product_id": first["product_id"],
        "horizon": min(7, horizon),
    }
