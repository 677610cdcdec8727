"""`salesmesh predict --future-json`: a plan file is read and checked before any mesh is asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _predict(tmp_path: Path, plan: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "salesmesh.cli", "predict", "--store", "S01"]
    command += ["--product", "P001", "--future-json", str(plan)]
    env = {"SALESMESH_STATE_DIR": str(tmp_path / "no-mesh"), "PATH": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_missing_plan_file_is_a_usage_error(tmp_path):
    """A plan file that does not exist exits 2 naming it."""
    done = _predict(tmp_path, tmp_path / "absent.json")
    assert done.returncode == 2
    assert f"--future-json {tmp_path / 'absent.json'}" in done.stderr


def test_plan_that_is_not_a_json_object_is_a_usage_error(tmp_path):
    """A list, or text that is not JSON, is refused with what a plan looks like."""
    plan = tmp_path / "plan.json"
    plan.write_text("[1, 0, 1]")
    done = _predict(tmp_path, plan)
    assert done.returncode == 2
    assert 'expected an object such as {"price": [...], "promo": [...]}, got list' in done.stderr
    plan.write_text("{promo: [1]")
    assert _predict(tmp_path, plan).returncode == 2


def test_a_good_plan_goes_on_to_the_endpoint(tmp_path):
    """A well-formed plan passes the file check; with no mesh running, that is what fails."""
    plan = tmp_path / "plan.json"
    plan.write_text('{"promo": [1, 0]}')
    done = _predict(tmp_path, plan)
    assert done.returncode == 1
    assert "no local mesh is running" in done.stderr
