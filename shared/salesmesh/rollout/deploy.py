"""What ``deploy_model`` does with a finished run: verify, register, gate, canary, promote.

Fired by every object finalized in the model bucket; only a run's ``manifest.json``, written
last, means "complete". The steps, each logged with the upload's correlation id:

1. Verify: download the run and check every file's sha256 against the manifest. A run that
   fails is not registered; the reason is logged at ERROR (nothing is retried: the bytes will
   not change).
2. Register a new version of the one model, labelled with its run, correlation id and source
   data, carrying its backtest summary.
3. Gate (:func:`salesmesh.rollout.policy.gate`): a challenger worse than the champion beyond the
   tolerance stays registered, labelled ``gated``, and takes no traffic.
4. Deploy at 0 % (the first model on an empty endpoint takes all traffic: nothing to canary
   against), probe it, give it the canary share, wait, check it again, then give it all traffic.
   Any failure puts the split back as it was before this run and undeploys the newcomer.
5. Move the aliases (``previous`` <- old champion, ``champion`` <- new) and undeploy models
   beyond ``keep_deployed``; the previous champion stays deployed at 0 % as a warm standby.

Delivery is at least once: the version's ``salesmesh-run`` label makes a redelivery a no-op
once a run reached a final state, and a deployment interrupted half-way resumes from its
registered version. Single flight: steps 2-5 run under ``lock``, so two runs can never
interleave traffic changes.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salesmesh import artifact, events
from salesmesh.errors import ArtifactIntegrityError, DeployError, MeshError, SourceError
from salesmesh.logs import Logger
from salesmesh.ports import (
    CHAMPION,
    PREVIOUS,
    RUN_ID,
    DeployedModel,
    Endpoint,
    ModelRegistry,
    ModelVersion,
)
from salesmesh.rollout import policy
from salesmesh.settings import Settings

RUN_LABEL = "salesmesh-run"
CORRELATION_LABEL = "salesmesh-correlation"
STATE_LABEL = "salesmesh-deploy"  # pending, deploying, then gated, failed or deployed
FINAL_STATES = ("gated", "failed", "deployed")
STARTED_LABEL = "salesmesh-deploy-started"  # unix seconds when the server deployment began
# Vertex AI takes minutes to deploy a model and carries on if the function that asked is killed
# at its timeout; a redelivery then waits for that deployment instead of starting a second one.
# After this long without the model appearing, the deployment counts as lost and is redone.
DEPLOY_GRACE_SECONDS = 1800.0


class DeployInProgressError(MeshError):
    """A deployment of this version started earlier and may still finish; retry later."""


# the files a run must have for it to be served and judged
REQUIRED = ("metrics.json", "series.csv", "forecaster.json")


@dataclass(frozen=True)
class Deployment:
    """What happened to one delivery: ``ignored``, ``duplicate``, ``rejected``, ``gated``,
    ``failed`` or ``deployed``, with the reason and the version concerned."""

    action: str
    reason: str = ""
    version: ModelVersion | None = None
    deployed_model_id: str | None = None


def run_of(name: str) -> tuple[str, str] | None:
    """(run id, run folder) of a manifest object name, or None for any other object.

    ``runs/<run_id>/manifest.json`` locally; Vertex AI nests the artifact one level down, in
    ``runs/<run_id>/model/manifest.json``.
    """
    match = re.fullmatch(r"runs/([^/]+)/(?:model/)?" + re.escape(artifact.MANIFEST), name)
    if match is None or not RUN_ID.fullmatch(match.group(1)):
        return None
    return match.group(1), name.removesuffix(artifact.MANIFEST)


def handle_manifest(
    obj: events.StorageObject,
    settings: Settings,
    registry: ModelRegistry,
    endpoint: Endpoint,
    lock: Callable[[], AbstractContextManager[Any]],
    log: Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> Deployment:
    """Carry a finished run from its manifest to full traffic, or say why not."""
    found = run_of(obj.name)
    if found is None:
        log.debug(f"ignored {obj.uri}: not a run's {artifact.MANIFEST}")
        return Deployment("ignored", f"not a run's {artifact.MANIFEST}")
    run_id, folder = found
    log = log.bind(labels={"run_id": run_id})
    if (done := _final(registry, run_id)) is not None:
        return _duplicate(done, log)

    with tempfile.TemporaryDirectory(prefix="salesmesh-deploy-") as workdir:
        try:
            local, manifest = artifact.fetch(f"gs://{obj.bucket}/{folder}", Path(workdir), REQUIRED)
            metrics = policy.summary(json.loads((local / "metrics.json").read_text()))
            horizon = int((manifest.get("model") or {}).get("horizon") or settings.horizon)
            probe = _probe(local / "series.csv", horizon)
        except (ArtifactIntegrityError, SourceError, ValueError, OSError) as exc:
            log.error(f"refusing to deploy run {run_id}: {exc}", artifact=obj.uri)
            return Deployment("rejected", str(exc))

    data = manifest.get("data") or {}
    upload = events.upload_from_uri(str(data.get("uri", "")), data.get("generation"))
    correlation = events.correlation_id(upload) if upload else f"c-{run_id.removeprefix('r-')}"
    log = log.bind(correlation_id=correlation)
    labels = {RUN_LABEL: run_id, CORRELATION_LABEL: correlation, STATE_LABEL: "pending"}
    if upload is not None:
        labels |= {"salesmesh-data-generation": upload.generation}
    metrics["source"] = {k: data.get(k) for k in ("uri", "generation", "md5", "rows")}

    with lock():
        if (done := _final(registry, run_id)) is not None:  # another delivery finished it
            return _duplicate(done, log)
        existing = registry.find({RUN_LABEL: run_id})
        champion = registry.alias(CHAMPION)
        decision = policy.gate(
            metrics, champion.metrics if champion else None, settings.gate_tolerance
        )
        version = (
            existing[0]
            if existing
            else registry.register(
                f"gs://{obj.bucket}/{folder.rstrip('/')}", labels=labels, metrics=metrics
            )
        )
        log = log.bind(labels={"version": version.version_id})
        log.info(f"registered run {run_id} as version {version.version_id}", gate=decision.reason)
        if not decision.passed:
            registry.update_labels(version.version_id, {STATE_LABEL: "gated"})
            log.warning(f"version {version.version_id} gated, not deployed: {decision.reason}")
            return Deployment("gated", decision.reason, version)
        return _roll_out(version, champion, probe, settings, registry, endpoint, log, sleep)


def _roll_out(
    version: ModelVersion,
    champion: ModelVersion | None,
    probe: Mapping[str, Any],
    settings: Settings,
    registry: ModelRegistry,
    endpoint: Endpoint,
    log: Logger,
    sleep: Callable[[float], None],
) -> Deployment:
    before = endpoint.traffic()
    mine = [d for d in endpoint.deployed() if d.version_id == version.version_id]
    try:
        new = mine[0] if mine else _deploy(version, registry, endpoint)
    except DeployError as exc:
        return _fail(version, registry, log, f"deployment failed: {exc}")
    log.info(f"version {version.version_id} deployed as {new.id}, split {endpoint.traffic()}")
    before = _without(before, new.id)

    ok, reason = policy.canary_ok(endpoint.health(new.id, probe))
    if ok and before:
        canary = policy.canary_split(endpoint.traffic(), new.id, settings.canary_percent)
        endpoint.set_traffic(canary)
        log.info(f"canary {new.id} at {settings.canary_percent}% for {settings.canary_wait:g}s")
        sleep(settings.canary_wait)
        ok, reason = policy.canary_ok(endpoint.health(new.id, probe))
    if not ok:
        if before:
            endpoint.set_traffic(before)
        # even a first model goes: an empty endpoint refuses clearly, a broken one misleads
        endpoint.undeploy(new.id)
        return _fail(version, registry, log, f"health check failed: {reason}")

    endpoint.set_traffic({new.id: 100})
    if champion is not None and champion.version_id != version.version_id:
        registry.set_alias(PREVIOUS, champion.version_id)
    registry.set_alias(CHAMPION, version.version_id)
    registry.update_labels(version.version_id, {STATE_LABEL: "deployed"})
    log.info(f"version {version.version_id} takes 100% of traffic as {new.id}: {reason}")

    by_version = {d.version_id: d.id for d in endpoint.deployed()}
    first = [
        by_version[v.version_id] for v in (version, champion) if v and v.version_id in by_version
    ]
    for old in policy.retire(
        endpoint.deployed(), endpoint.traffic(), settings.keep_deployed, first
    ):
        endpoint.undeploy(old)
        log.info(f"undeployed {old}: beyond the {settings.keep_deployed} models kept")
    return Deployment("deployed", reason, version, new.id)


def _deploy(version: ModelVersion, registry: ModelRegistry, endpoint: Endpoint) -> DeployedModel:
    """Deploy at 0 %, unless an earlier attempt's deployment may still be under way."""
    started = version.labels.get(STARTED_LABEL, "")
    if version.labels.get(STATE_LABEL) == "deploying" and started.isdigit():
        age = time.time() - int(started)
        if age < DEPLOY_GRACE_SECONDS:
            raise DeployInProgressError(
                f"version {version.version_id} has been deploying for {age:.0f} s (an earlier "
                f"delivery started it); not starting a second deployment, retry later"
            )
    marked = {STATE_LABEL: "deploying", STARTED_LABEL: str(int(time.time()))}
    return endpoint.deploy(registry.update_labels(version.version_id, marked), 0)


def _without(split: Mapping[str, int], model: str) -> dict[str, int]:
    """``split`` with ``model`` taken out, its share (a resumed canary's) given back to the
    largest of the others so the split still sums to 100."""
    rest = {k: v for k, v in split.items() if k != model}
    if rest and sum(rest.values()) != 100:
        largest = max(rest, key=lambda k: rest[k])
        rest[largest] += 100 - sum(rest.values())
    return rest


def _fail(version: ModelVersion, registry: ModelRegistry, log: Logger, reason: str) -> Deployment:
    registry.update_labels(version.version_id, {STATE_LABEL: "failed"})
    log.error(f"version {version.version_id} not deployed, traffic unchanged: {reason}")
    return Deployment("failed", reason, version)


def _final(registry: ModelRegistry, run_id: str) -> ModelVersion | None:
    for version in registry.find({RUN_LABEL: run_id}):
        if version.labels.get(STATE_LABEL) in FINAL_STATES:
            return version
    return None


def _duplicate(version: ModelVersion, log: Logger) -> Deployment:
    state = version.labels.get(STATE_LABEL)
    log.info(f"duplicate delivery: run already {state} as version {version.version_id}")
    return Deployment("duplicate", f"already {state}", version)


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
