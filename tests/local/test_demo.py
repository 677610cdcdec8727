"""`make demo` (salesmesh demo): the whole chain on a small sample, seen by a user."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mesh_cli import ROOT, cli_env, cli_json

from salesmesh.sample import write_sample

pytestmark = pytest.mark.slow

STAGES = [
    "start the mesh",
    "upload v1 data (sales_older.csv)",
    "train v1 (train_trigger -> history -> training run)",
    "deploy v1 (deploy_model: gate, canary, promote)",
    "upload v2 data (sales_newer.csv)",
    "train v2 (train_trigger -> history -> training run)",
    "deploy v2 (deploy_model: gate, canary, promote)",
    "a planner's week, with quantiles (salesmesh predict)",
    "inject 800 ms into v2 (local fault switch)",
    "alert: p99 over 500 ms -> incident published",
    "alert_handler: traffic back to v1",
    "incident closes (v2 takes no traffic)",
    "stop the mesh",
]


def test_demo_tells_the_whole_story_with_a_timeline(tmp_path: Path) -> None:
    """v1 and v2 deployed, v2 slowed down, the alert rolls traffic back to v1; --json gives
    every stage in order with its times and ok, and the state left behind tells the same."""
    data = tmp_path / "sales.csv"
    write_sample(data, stores=2, products=3, days=300, seed=7)
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "salesmesh.cli", "demo", "--json", "--data", str(data)],
        cwd=ROOT,  # the demo serves the functions of the checkout it runs in
        env=cli_env(state),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    told = json.loads(result.stdout)
    assert told["ok"] is True
    assert [s["name"] for s in told["stages"]] == STAGES
    for stage in told["stages"]:
        assert stage["finished_at"] >= stage["started_at"], stage
        assert stage["seconds"] >= 0
    week = told["stages"][STAGES.index("a planner's week, with quantiles (salesmesh predict)")]
    assert week["detail"].endswith("7 days, fields date, sales, p10, p25, p50, p75, p90")
    back = told["stages"][STAGES.index("alert_handler: traffic back to v1")]
    assert back["detail"].startswith("rolled_back: rolled back from version 2 to 1")
    assert "Traceback" not in result.stderr, result.stderr

    story = cli_json(state / "demo", "history")
    assert [(r["from_version"], r["to_version"], r["who"]) for r in story["rollbacks"]] == [
        ("2", "1", "alert_handler")
    ]
    assert [i["action"] for i in story["incidents"]] == ["rolled_back"]

    # v2 (the whole sample) was merged into v1's history (the sample less its last 28 days)
    newest, oldest = cli_json(state / "demo", "data")["snapshots"]
    assert (newest["added"], newest["corrected"], newest["rows"]) == (28 * 6, 0, 300 * 6)
    assert [u["rows"] for u in newest["uploads"]] == [272 * 6, 300 * 6]
    assert len(newest["runs"]) == len(oldest["runs"]) == 1
