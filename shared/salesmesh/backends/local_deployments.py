"""The local endpoint's deployments, as long-running operations any process can poll.

Vertex AI keeps a deployment's operation on its side and answers ``GetOperation`` for it from
anywhere; locally the endpoint's record (:mod:`salesmesh.backends.local_record`) does. Each entry
in its ``operations`` holds the name (``deploy-<n>``), the deployed model it will add (with its
server's port, pid and log), the traffic percentage asked for, a wall-clock deadline, and, once
done, the outcome: ``error`` or ``deployed_model_id``. ``stopped`` marks one whose server
stopped with the mesh: still pending, for ``restore`` to start again with a fresh deadline.

:meth:`Deployments.start_deploy` starts the server and records the operation without waiting;
whoever polls :meth:`Deployments.operation` next, from any process, finds the server healthy and
completes it, or dead or late and fails it. Settling takes the record lock and checks that the
entry is still the one it judged, so two pollers make one deployed model.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from salesmesh.backends.local_record import (
    ID_BASE,
    EndpointRecord,
    find_model,
    public,
    split_with,
)
from salesmesh.backends.local_servers import failure, healthy, launch, running, stop_servers
from salesmesh.errors import DeployError
from salesmesh.ports import DeployedModel, ModelVersion, Operation, rfc3339

POLL_SECONDS = 0.1  # deploy()'s pace while a server starts (about 2 s)
# Done operations kept for callers to read back; older ones are dropped (KeyError) so the record,
# which the router rereads on every change, stays small. Pending ones are always kept.
KEPT_DONE = 100


def add(record: dict[str, Any], model: dict[str, Any], percentage: int, deadline: float) -> str:
    """Record a pending deployment of ``model`` and return its new name."""
    name = f"deploy-{record['next_operation']}"
    record["next_operation"] += 1
    record["operations"].append(
        {
            "name": name,
            "model": model,
            "percentage": percentage,
            "started": rfc3339(),
            "deadline": deadline,
            "done": False,
            "stopped": False,
            "error": None,
            "deployed_model_id": None,
        }
    )
    return name


def find(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The operation ``name``, or KeyError."""
    for found in record.get("operations", []):
        if found["name"] == name:
            entry: dict[str, Any] = found
            return entry
    endpoint = record.get("endpoint")
    raise KeyError(f"endpoint {endpoint} has no deployment operation {name!r} (or an old one)")


def pending(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The operations not done yet, oldest first."""
    return [found for found in record.get("operations", []) if not found["done"]]


def finish(record: dict[str, Any], found: dict[str, Any], error: str | None) -> None:
    """Mark ``found`` done: failed with ``error``, or deployed as its model's id.

    Its model shrinks to id and version (the deployed model's entry has the rest), and the
    done operations beyond the newest :data:`KEPT_DONE` are dropped.
    """
    model = found["model"]
    found.update(done=True, stopped=False, finished=rfc3339(), error=error)
    found["model"] = {"id": model["id"], "version_id": model["version_id"]}
    if error is None:
        found["deployed_model_id"] = model["id"]
    done = sorted((e for e in record["operations"] if e["done"]), key=lambda e: e["finished"])
    dropped = {id(entry) for entry in done[:-KEPT_DONE]}
    record["operations"] = [e for e in record["operations"] if id(e) not in dropped]


def outcome(found: Mapping[str, Any]) -> Operation:
    """The port's view of an entry."""
    return Operation(
        found["name"],
        done=bool(found["done"]),
        error=found["error"],
        deployed_model_id=found["deployed_model_id"],
    )


class Deployments(EndpointRecord):
    """Starting deployments and settling them: the deploying half of the local endpoint."""

    def __init__(
        self,
        state_dir: Path,
        name: str = "salesmesh",
        env: Mapping[str, str] | None = None,
        *,
        python: str = sys.executable,
        deploy_timeout: float = 60.0,
    ) -> None:
        super().__init__(state_dir, name)
        self._env = dict(os.environ if env is None else env)
        self._python = python
        self._deploy_timeout = deploy_timeout
        # the servers this object started, by operation: only a parent learns an exit code
        self._launched: dict[str, subprocess.Popen[bytes]] = {}

    def deployed(self) -> builtins.list[DeployedModel]:
        """Every deployed model, oldest first (pending deployments that are due settled)."""
        self._settle_due()
        return super().deployed()

    def traffic(self) -> dict[str, int]:
        """The current split (pending deployments that are due settled first)."""
        self._settle_due()
        return super().traffic()

    def _settle_due(self) -> None:
        """Vertex AI completes a deployment whether or not anyone polls its operation: so here,
        where nothing runs in the background, every look at the endpoint settles pending
        deployments whose server is healthy (or dead, or late). A caller that lost an
        operation's name, such as a step that died before recording it, still sees the model
        arrive."""
        for found in pending(self._read()):
            if not found["stopped"]:
                self.operation(found["name"])

    def start_deploy(self, version: ModelVersion, traffic_percentage: int = 0) -> str:
        """Start a server for ``version``, record the operation and return its name at once.

        ValueError (nothing started) for a percentage Vertex AI would refuse now; the share is
        computed again when the deployment completes, from the split of that moment.
        """
        process = None
        try:
            with self._locked() as record:
                model_id = str(ID_BASE + record["next_id"])
                split_with(record, model_id, traffic_percentage)  # refuse before starting
                record["next_id"] += 1  # claimed even if the deployment fails: never reused
                model = {
                    "id": model_id,
                    "version_id": version.version_id,
                    "artifact_uri": version.artifact_uri,
                    "created": rfc3339(),
                    "log": str(self.dir / f"server-{model_id}.log"),
                }
                # started under the lock, so the record names every server it started
                process = launch(self._python, self._env, model)
                name = add(record, model, traffic_percentage, self._deadline())
        except BaseException:
            if process is not None:
                stop_servers([process.pid])
            raise
        self._launched[name] = process
        return name

    def operation(self, name: str) -> Operation:
        """The deployment ``name`` now; a pending one is completed or failed if it is due.

        Any process may poll: completing takes the record lock and checks the operation is
        still the one it judged, so two pollers make one deployed model.
        """
        found = find(self._read(), name)
        if found["done"] or found["stopped"]:
            return outcome(found)  # stopped with the mesh: restore() starts it again
        model = found["model"]
        pid = model["pid"]
        if running(pid) and healthy(model):
            return self._settle(name, pid, None)
        if running(pid):
            if time.time() <= found["deadline"]:
                return outcome(found)
            return self._settle(name, pid, "did not become healthy in time")
        launched = self._launched.get(name)
        code = launched.poll() if launched is not None and launched.pid == pid else None
        return self._settle(name, pid, "exited" if code is None else f"exited with code {code}")

    def _settle(self, name: str, pid: int, failed: str | None) -> Operation:
        """Complete (``failed`` None) or fail the pending operation whose server is ``pid``.

        A failed server is stopped only after the record says so: stopped before, it could be
        one that another poller just found healthy and deployed.
        """
        with self._locked() as record:
            found = find(record, name)
            if found["done"] or found["model"]["pid"] != pid or (failed and found["stopped"]):
                # settled or restarted meanwhile, or its server stopped with the mesh
                return outcome(found)
            model = found["model"]
            if failed is None:
                try:
                    # recomputed: the split may have changed while the server was starting
                    record["traffic"] = split_with(record, model["id"], found["percentage"])
                except ValueError as exc:
                    failed = f"could not take its traffic share any more: {exc}"
                else:
                    record["deployed_models"].append(model)
            finish(record, found, None if failed is None else failure(model, failed))
        if failed is not None:
            stop_servers([pid])
        self._launched.pop(name, None)
        return outcome(found)

    def deploy(self, version: ModelVersion, traffic_percentage: int) -> DeployedModel:
        """Start the deployment, then poll it until the server serves or fails."""
        name = self.start_deploy(version, traffic_percentage)
        try:
            while not (found := self.operation(name)).done:
                time.sleep(POLL_SECONDS)  # start-up only: bounded by the deploy deadline
        except BaseException:
            # a caller giving up on a blocking deploy cancels it, as the old wait did
            self._cancel(name)
            raise
        if found.error is not None:
            raise DeployError(found.error)
        return public(find_model(self._read(), str(found.deployed_model_id)))

    def _cancel(self, name: str) -> None:
        if (process := self._launched.get(name)) is not None:
            self._settle(name, process.pid, "was stopped: the deploy was interrupted")

    def _relaunch_pending(self, failures: builtins.list[str]) -> builtins.list[str]:
        """Start again the servers of pending deployments that are gone; their model ids."""
        waiting = pending(self._read())
        if all(running(found["model"]["pid"]) and not found["stopped"] for found in waiting):
            return []  # nothing to change: spare the router a reread of the record
        relaunched = []
        with self._locked() as record:
            for found in pending(record):
                if running(found["model"]["pid"]):
                    found["stopped"] = False  # it outlived the stop: polls judge it again
                    continue
                try:
                    process = launch(self._python, self._env, found["model"])
                except DeployError as exc:
                    failures.append(str(exc))  # left pending on a dead pid: next poll fails it
                    continue
                self._launched[found["name"]] = process
                found.update(deadline=self._deadline(), stopped=False)
                relaunched.append(found["model"]["id"])
        return relaunched

    def _deadline(self) -> float:
        # wall-clock: the operation may be polled by another process
        return time.time() + self._deploy_timeout
