"""Running ``serve_probe`` in a package's own venv, and the events it delivers.

A module of helpers for the package tests (``test_package_*``): the probe's plan written, the
probe run isolated (``python -I``), its report checked for isolation and its log lines parsed.
"""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent.parent / "events"
PROBE = Path(__file__).parent / "serve_probe.py"
TRAINING_IMAGE = "europe-docker.pkg.dev/demo-project/salesmesh/train:1"


def run_probe(
    python: Path,
    package: str,
    target: str,
    env: dict[str, str],
    cold: Sequence[dict[str, Any]],
    faked: Sequence[dict[str, Any]] = (),
    cloud: Mapping[str, Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``serve_probe`` in the package's venv, isolated (-I), delivering ``cold`` then ``faked``
    with the fakes set up from ``cloud`` (``probe_cloud.FakeCloud``'s arguments)."""
    plan = Path(env["SALESMESH_STATE_DIR"]).parent / f"plan-{uuid.uuid4().hex[:6]}.json"
    steps = {"cold": list(cold), "faked": list(faked), "cloud": dict(cloud or {})}
    plan.write_text(json.dumps(steps))
    return subprocess.run(
        [str(python), "-I", str(PROBE), package, target, str(plan)],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def serve(
    python: Path,
    package: str,
    target: str,
    env: dict[str, str],
    cold: Sequence[dict[str, Any]],
    faked: Sequence[dict[str, Any]] = (),
    cloud: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Deliver events from the package: (the probe's report, the JSON log lines it printed)."""
    result = run_probe(python, package, target, env, cold, faked, cloud)
    assert result.returncode == 0, result.stderr[-5000:]
    return parse(result, package)


def parse(
    result: subprocess.CompletedProcess[str], package: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The probe's report, checked for isolation, and the function's JSON log lines."""
    lines = result.stdout.splitlines()
    assert lines and lines[-1].startswith("PROBE "), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("PROBE "))
    assert report["salesmesh"].startswith(package), report["salesmesh"]
    assert report["foreign_paths"] == []  # nothing of the project, only package and venv
    # an RPC no fake serves failed where it was sent; a caller may have swallowed the error
    assert report.get("unserved", []) == [], report["unserved"]
    logs = [json.loads(line) for line in lines[:-1] if line.startswith('{"severity"')]
    return report, logs


def summary(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(severity, message up to its first colon) of each log line."""
    return [(line["severity"], line["message"].split(":")[0]) for line in logs]


def storage_event(
    bucket: str, name: str, generation: int | str = "1793697267318412"
) -> dict[str, Any]:
    event = json.loads((EVENTS / "storage_finalized.json").read_text())
    event["headers"]["ce-source"] = f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    event["headers"]["ce-subject"] = f"objects/{name}"
    event["data"] |= {"bucket": bucket, "name": name, "generation": str(generation)}
    return event


def without(event: dict[str, Any], field: str) -> dict[str, Any]:
    broken = copy.deepcopy(event)
    del broken["data"][field]
    return broken
