"""What the local mesh has done: runs, quarantined files with reasons, dead letters.

Read from the state folder (run records, dead-letter file) and, when the data bucket can be
reached, from its quarantine prefix. ``salesmesh status`` prints it; ``--json`` gives at least
``runs: [{run_id, state, source}]``, ``quarantine: [{name, reason}]`` and ``dead_letters: []``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from salesmesh import events, runtime
from salesmesh.settings import Settings

DEAD_LETTERS = "dead_letters.jsonl"


def gather(settings: Settings, storage: Callable[[], Any] | None = None) -> dict[str, Any]:
    """The mesh's state as a JSON-friendly dict; ``storage`` makes a GCS client if reachable."""
    runs = [
        {
            "run_id": run.run_id,
            "state": str(run.state),
            "source": run.data_uri,
            "output": run.output_uri,
            "created": run.created,
            "exit_code": run.exit_code,
            "log": run.log,
        }
        for run in runtime.launcher(settings).list()
    ]
    status: dict[str, Any] = {
        "runs": runs,
        "quarantine": [],
        "dead_letters": dead_letters(settings.state_dir),
        "incidents": [],
        "notes": [],
    }
    if storage is None:
        status["notes"].append(
            "quarantine not listed, incidents not read: no storage emulator or project configured"
        )
        return status
    try:
        client = storage()
        status["quarantine"] = quarantined(client, settings)
        ledger = runtime.ledger(settings, client=lambda: client).read().document
        status["incidents"] = incidents(ledger)
    except Exception as exc:  # an unreachable bucket must not hide the runs
        status["notes"].append(f"quarantine not listed, incidents not read: {exc}")
    return status


def incidents(ledger: dict[str, Any]) -> list[dict[str, Any]]:
    """The incidents the rollout ledger heard of (newest last) and what was done about each."""
    return list((ledger.get("incidents") or {}).values())


def quarantined(client: Any, settings: Settings) -> list[dict[str, Any]]:
    """Each quarantined file with the first reasons of its error report."""
    bucket = client.bucket(settings.state_bucket)
    out = []
    for blob in client.list_blobs(bucket, prefix=settings.quarantine_prefix):
        if not blob.name.endswith(events.ERROR_REPORT_SUFFIX):
            continue
        try:
            report = json.loads(blob.download_as_text())
            errors = report["report"]["errors"]
            reason = "; ".join(f"[{e['rule']}] {e['message']}" for e in errors[:3])
            source = report.get("object")
        except (ValueError, KeyError, TypeError) as exc:
            reason, source = f"unreadable error report: {exc}", None
        out.append(
            {
                "name": blob.name.removesuffix(events.ERROR_REPORT_SUFFIX),
                "reason": reason,
                "source": source,
            }
        )
    return out


def dead_letters(state_dir: Path) -> list[dict[str, Any]]:
    """The dead-letter records (one JSON object per line); damaged lines are reported as such."""
    path = state_dir / DEAD_LETTERS
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            records.append({"damaged_line": number})
    return records


def render(status: dict[str, Any]) -> str:
    """Plain text for people."""
    lines = [f"runs ({len(status['runs'])}):"]
    for run in status["runs"]:
        code = "" if run["exit_code"] is None else f" exit {run['exit_code']}"
        lines.append(f"  {run['run_id']}  {run['state']:<9}{code}  {run['source']}")
    lines.append(f"quarantine ({len(status['quarantine'])}):")
    lines += [f"  {item['name']}: {item['reason']}" for item in status["quarantine"]]
    lines.append(f"dead letters ({len(status['dead_letters'])}):")
    for letter in status["dead_letters"]:
        what = letter.get("function", "?"), letter.get("event_id", "?"), letter.get("attempts")
        lines.append(f"  {what[0]} event {what[1]} after {what[2]} attempt(s)")
    found = status.get("incidents") or []
    lines.append(f"incidents ({len(found)}):")
    for item in found[-20:]:
        version = item.get("version_id") or "?"
        lines.append(
            f"  {item.get('incident_id')}  {item.get('state', '?'):<6}  version {version}  "
            f"{item.get('action', '?')}: {item.get('why', '')}"
        )
    lines += [f"note: {note}" for note in status["notes"]]
    return "\n".join(lines)
