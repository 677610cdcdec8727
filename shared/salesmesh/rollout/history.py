"""What ``salesmesh history`` prints: which version served when, and why it changed.

Read from the rollout ledger alone (:mod:`salesmesh.rollout.ledger`): every rollout's
transitions and every traffic split the ledger decided, merged into one timeline.
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
    events.sort(key=lambda e: (e["at"], e["kind"] == "rollout"))
    return {
        "endpoint": ledger.get("endpoint"),
        "timeline": events,
        "traffic": ledger.get("history") or [],
        "rollouts": rollouts,
        "queued": [entry["version_id"] for entry in ledger.get("queue") or []],
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
