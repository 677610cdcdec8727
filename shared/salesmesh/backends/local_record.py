"""The local endpoint's record: what is deployed, the split, and the one lock that guards them.

``endpoint.json`` in the endpoint's folder holds the deployed models (with their server's port,
pid and log), the split, the deployments in progress and recently done
(:mod:`salesmesh.backends.local_deployments`), and the counters ids come from. Every
read-modify-write holds an ``fcntl`` lock on ``endpoint.lock`` (:func:`salesmesh.locks.
file_lock`) and replaces the file atomically, so the router, which rereads it when its inode,
mtime or size changes, sees the old record or the new one, never half of one.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from salesmesh.local.processes import read_json, write_json
from salesmesh.locks import file_lock
from salesmesh.ports import DeployedModel, allocate, check_split

RECORD = "endpoint.json"
LOCK = "endpoint.lock"
# Numeric like Vertex AI's deployed-model ids, and never equal to a registry version id ("1",
# "2", ...), so code that mixes the two up fails at once instead of passing by coincidence.
ID_BASE = 1_000_000_000
# The record lock is held for one read-modify-write (milliseconds): a holder this late is stuck.
LOCK_SECONDS = 60.0
_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


def endpoint_dir(state_dir: Path, name: str) -> Path:
    """``<state_dir>/endpoints/<name>``, for a valid endpoint name."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"endpoint name {name!r} must match {_NAME.pattern}")
    return Path(state_dir) / "endpoints" / name


class EndpointRecord:
    """One endpoint's record: read it, change it under its lock, and the split rules."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.name = name
        self.dir = endpoint_dir(state_dir, name)

    def deployed(self) -> builtins.list[DeployedModel]:
        """Every deployed model, oldest first."""
        return [public(m) for m in self._read()["deployed_models"]]

    def traffic(self) -> dict[str, int]:
        """The current split, every deployed model included (0 where it takes none)."""
        return dict(self._read()["traffic"])

    def set_traffic(self, split: Mapping[str, int]) -> None:
        """Replace the split (ValueError unless it is whole, sums to 100, names deployed ids)."""
        with self._locked() as record:
            ids = [m["id"] for m in record["deployed_models"]]
            record["traffic"] = check_split(split, ids)

    def _read(self) -> dict[str, Any]:
        record = read_json(self.dir / RECORD) or empty(self.name)
        for key, value in empty(self.name).items():
            record.setdefault(key, value)  # a record written before a field existed
        return record

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The record to change in place; written back when the block ends without error."""
        with file_lock(self.dir / LOCK, LOCK_SECONDS, poll=0.01):
            record = self._read()
            yield record
            write_json(self.dir / RECORD, record)


def empty(name: str) -> dict[str, Any]:
    """The record of an endpoint nothing was ever deployed to."""
    return {
        "endpoint": name,
        "next_id": 1,
        "deployed_models": [],
        "traffic": {},
        "next_operation": 1,
        "operations": [],  # deployments in progress and recently done: local_deployments
    }


def find_model(record: Mapping[str, Any], deployed_model_id: str) -> dict[str, Any]:
    """The deployed model's entry, or KeyError naming those deployed."""
    for model in record["deployed_models"]:
        if model["id"] == deployed_model_id:
            found: dict[str, Any] = model
            return found
    ids = [m["id"] for m in record["deployed_models"]]
    raise KeyError(
        f"{deployed_model_id!r} is not deployed on endpoint {record['endpoint']} (deployed: {ids})"
    )


def split_with(record: Mapping[str, Any], model_id: str, percentage: int) -> dict[str, int]:
    """The full split after adding ``model_id``; ValueError as Vertex AI would refuse it."""
    taking = {i: share for i, share in record["traffic"].items() if share}
    # only models with traffic take part: Vertex hands the rounding remainder to them alone
    split = allocate(taking, model_id, percentage)
    ids = [m["id"] for m in record["deployed_models"]] + [model_id]
    return check_split(split, ids)


def public(model: Mapping[str, Any]) -> DeployedModel:
    """The port's view of a deployed model's entry."""
    return DeployedModel(model["id"], model["version_id"], model["created"])
