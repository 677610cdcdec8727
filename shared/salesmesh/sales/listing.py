"""``salesmesh data``: the sales history's snapshots, their uploads, HEAD and the runs on each.

:func:`gather` reads HEAD's lineage (newest first), the runs that resolved a snapshot and the
pending claim into one JSON-ready dict; :func:`render` prints it for people.
"""

from __future__ import annotations

from typing import Any

from salesmesh.sales.pending import PendingRun
from salesmesh.sales.store import HistoryStore

LIMIT = 20


def gather(store: HistoryStore, limit: int = LIMIT) -> dict[str, Any]:
    """HEAD, the newest ``limit`` snapshots of its lineage with their uploads and runs, and
    the run pending, if any."""
    snapshots = store.lineage(limit + 1)
    runs = store.runs()
    by_snapshot: dict[str, list[str]] = {}
    for run in runs:
        by_snapshot.setdefault(str(run.get("snapshot")), []).append(str(run.get("run_id")))
    holder, _ = PendingRun(store).holder()
    listed = []
    for snapshot in snapshots[:limit]:
        entry = snapshot.to_dict()
        entry.pop("seen")  # every correlation id ever merged: for idempotency, not for people
        entry["head"] = snapshot is snapshots[0]
        entry["runs"] = by_snapshot.get(snapshot.id, [])
        listed.append(entry)
    return {
        "model": store.model,
        "location": f"gs://{store.bucket}/{store.prefix}",
        "head": snapshots[0].id if snapshots else None,
        "snapshots": listed,
        "older": len(snapshots) > limit,
        "runs": runs,
        "pending_run": holder,
    }


def render(gathered: dict[str, Any]) -> str:
    """Plain text for people: one block per snapshot, newest first."""
    where = f"sales history of {gathered['model']} ({gathered['location']})"
    if not gathered["snapshots"]:
        return f"{where}: empty; upload a sales file to start it"
    lines = [f"{where}:"]
    for s in gathered["snapshots"]:
        mark = "HEAD " if s["head"] else "     "
        what = "replaced by" if s["mode"] == "replace" else "merged"
        lines.append(
            f"{mark}{s['id']}  {s['created']}  {s['rows']:,} rows, {s['series']} series, "
            f"{s['date_min']} .. {s['date_max']}"
        )
        u = s["upload"]
        lines.append(
            f"       {what} {u['uri']}: {u['rows']:,} rows, {u['added']:,} added, "
            f"{u['corrected']:,} corrected"
        )
        uploads = s["uploads"]
        if s["head"]:
            lines.append(f"       contains {len(uploads)} upload(s):")
            lines += [f"         {x['uri']}  {x['rows']:,} rows" for x in uploads]
        else:
            lines.append(f"       contains {len(uploads)} upload(s)")
        if s["runs"]:
            lines.append(f"       trained by {', '.join(s['runs'])}")
    if gathered["older"]:
        lines.append("     … older snapshots not shown (raise --limit)")
    if gathered["pending_run"]:
        lines.append(
            f"pending: run {gathered['pending_run']} will train on HEAD as it is when it starts"
        )
    return "\n".join(lines)
