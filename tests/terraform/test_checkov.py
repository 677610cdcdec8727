"""checkov over terraform/, from its own virtualenv (`make test` makes .venv-checkov): no failed
check, and every skip carries its reason inline. A mutated copy shows checkov does fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tf_checks import ROOT, TERRAFORM

CHECKOV = Path(os.environ.get("SALESMESH_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
JSON = ("--output", "json")
NO_REASON = "No comment provided"  # what checkov records for a skip without one


def checkov(folder: Path) -> dict[str, Any]:
    """checkov's JSON report of ``folder``, offline (--skip-download: no platform policies)."""
    assert CHECKOV.is_file(), (
        f"no checkov at {CHECKOV}: `make test` installs it into .venv-checkov (or run "
        "python3.11 -m venv .venv-checkov && .venv-checkov/bin/pip install -r "
        "tests/terraform/requirements-checkov.txt)"
    )
    run = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--framework", "terraform", "--skip-download", *JSON],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr  # 1: checks failed; anything else: it broke
    report = json.loads(run.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["results"]["parsing_errors"]
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """Each failed check, and each skip without a reason, as a line naming the resource."""
    results = report["results"]
    lines = [
        f"{c['check_id']} {c['check_name']!r} failed for {c['resource']} ({c['file_path']})"
        for c in results["failed_checks"]
    ]
    lines += [
        f"{c['check_id']} is skipped for {c['resource']} without a reason: write "
        f"# checkov:skip={c['check_id']}:<why> in the resource"
        for c in results["skipped_checks"]
        if c["check_result"].get("suppress_comment", NO_REASON).strip() in ("", NO_REASON)
    ]
    return lines


def test_checkov_finds_nothing_and_every_skip_says_why():
    report = checkov(TERRAFORM)
    assert failures(report) == []
    assert report["summary"]["resource_count"] >= 40  # it read the whole folder
    assert report["summary"]["passed"] >= 90


def test_checkov_fails_a_public_bucket_and_a_skip_without_reason(tmp_path: Path):
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy)
    storage = copy / "storage.tf"
    storage.write_text(storage.read_text().replace('"enforced"', '"inherited"'))
    pubsub = copy / "pubsub.tf"
    text = pubsub.read_text()
    reasoned = text.split("\n")[next(i for i, t in enumerate(text.split("\n")) if "skip=" in t)]
    pubsub.write_text(text.replace(reasoned, "  # checkov:skip=CKV_GCP_83", 1))
    found = failures(checkov(copy))
    assert any(
        line.startswith("CKV_GCP_114") and "google_storage_bucket.access_logs" in line
        for line in found
    ), found
    assert any(
        "CKV_GCP_83 is skipped for google_pubsub_topic.alerts without a reason" in line
        for line in found
    ), found
