"""The local endpoint's deployment operations, as entries of its record (``endpoint.json``).

Vertex AI keeps a deployment's long-running operation on its side and answers ``GetOperation``
for it from anywhere; locally the endpoint's record does. Each entry holds the operation's name
(``deploy-<n>``), the deployed model it will add (with its server's port, pid and log), the
traffic percentage asked for, a wall-clock deadline, and, once done, the outcome: ``error`` or
``deployed_model_id``. ``stopped`` marks one whose server stopped with the mesh: still pending,
for :meth:`~salesmesh.backends.local_endpoint.LocalEndpoint.restore` to start again.

These functions change a record the caller holds under the endpoint's lock; they do no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from salesmesh.ports import Operation, rfc3339

# Done operations kept for callers to read back; older ones are dropped (KeyError) so the record,
# which the router rereads on every change, stays small. Pending ones are always kept.
KEPT_DONE = 100


def upgrade(record: dict[str, Any]) -> None:
    """Give a record written before operations existed their fields."""
    record.setdefault("next_operation", 1)
    record.setdefault("operations", [])


def add(record: dict[str, Any], model: dict[str, Any], percentage: int, deadline: float) -> str:
    """Record a pending deployment of ``model`` and return its new name."""
    upgrade(record)
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
