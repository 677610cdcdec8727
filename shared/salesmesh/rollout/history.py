"""What ``salesmesh history`` prints: which version served when, and why it changed.

Read from the rollout ledger alone (:mod:`salesmesh.rollout.ledger`): every rollout's
transitions, every traffic split the ledger decided (rollbacks among them, with the incident
that asked for each) and every incident alert_handler heard of, merged into one timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def gather(ledger: Mapping[str, Any]) -> dict[str, Any]:
    """The timeline (oldest first) and the raw records it is made of."""
    rollouts = [*(ledger.get("rollouts") or [])]
    if ledger.get("rollout"):
        rollouts.append(ledger["rollout"])
    events: list[dict[str, Any]] = []
    for rollout in rollouts:
        for step in rollout.get("transitions") or []:
            events.append(
                {
                    "at": step["at"],
                    "kind": "rollout",
                    "version_id": rollout["version_id"],
                    "run_id": rollout.get("run_id"),
                    "state": step["state"],
                    "why": step.get("reason", ""),
                }
            )
    for change in ledger.get("history") or []:
        events.append(
            {
                "at": change["at"],
                "kind": "traffic",
                "from": change.get("from") or {},
                "to": change.get("to") or {},
                "who": change.get("who", ""),
                "why": change.get("why", ""),
            }
        )
    for found in (ledger.get("incidents") or {}).values():
        events.append(
            {
                "at": found.get("received_at", ""),
                "kind": "incident",
                "incident_id": found.get("incident_id"),
                "state": found.get("state"),
                "version_id": found.get("version_id"),
                "action": found.get("action"),
                "why": found.get("summary", ""),
            }
        )
    # an incident before what it caused; a rollout's states after the traffic they made
    order = {"incident": 0, "traffic": 1, "rollout": 2}
    events.sort(key=lambda e: (e["at"], order[e["kind"]]))
    return {
        "endpoint": ledger.get("endpoint"),
        "timeline": events,
        "traffic": ledger.get("history") or [],
        "rollouts": rollouts,
        "queued": [entry["version_id"] for entry in ledger.get("queue") or []],
        "incidents": list((ledger.get("incidents") or {}).values()),
        "rollbacks": ledger.get("rollbacks") or [],
    }


def render(gathered: Mapping[str, Any]) -> str:
    """One line per event: time, what, and why."""
    timeline = gathered["timeline"]
    if not timeline:
        return f"endpoint {gathered['endpoint']}: no rollouts yet"
    lines = [f"endpoint {gathered['endpoint']}: {len(gathered['rollouts'])} rollout(s)"]
    for event in timeline:
        if event["kind"] == "rollout":
            what = f"version {event['version_id']:<4} {event['state']:<10}"
        elif event["kind"] == "incident":
            about = f"version {event['version_id']}" if event["version_id"] else "no version"
            what = f"incident {event['state']} ({about}) -> {event['action']}"
        else:
            what = f"traffic {_split(event['from'])} -> {_split(event['to'])} by {event['who']}"
        lines.append(f"{event['at']}  {what}  {event['why']}".rstrip())
    if gathered["queued"]:
        lines.append("queued for rollout: version(s) " + ", ".join(gathered["queued"]))
    return "\n".join(lines)


def _split(split: Mapping[str, int]) -> str:
    if not split:
        return "{}"
    return "{" + ", ".join(f"v{version}: {share}%" for version, share in split.items()) + "}"
