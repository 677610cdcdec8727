"""`make demo` (python -m salesmesh.demo): the whole chain on a small sample, seen by a user."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mesh_cli import ROOT, cli_env

from salesmesh.sample import write_sample

pytestmark = pytest.mark.slow


def test_demo_uploads_trains_deploys_and_prints_a_served_forecast(tmp_path: Path) -> None:
    """The demo ends in a 28-day forecast fetched through the endpoint, with a quiet console."""
    data = tmp_path / "sales.csv"
    write_sample(data, stores=2, products=3, days=300, seed=7)
    result = subprocess.run(
        [sys.executable, "-m", "salesmesh.demo", "--data", str(data)],
        cwd=ROOT,  # the demo serves the functions of the checkout it runs in
        env=cli_env(tmp_path / "state"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "version 1: deployed" in out
    assert re.search(r"traffic split \{'\d+': 100\}", out), out
    served = out.split("== 7.", 1)[1].split("== 8.", 1)[0]
    story = out.split("== 8.", 1)[1]
    for state in ("registered", "deploying", "promoting", "done"):
        assert re.search(rf"version 1 +{state}", story), story
    assert re.search(r"traffic \{\} -> \{v1: 100%\} by deploy_model", story), story
    assert re.search(r"28-day forecast \(deployed model \d+\)", served), served
    assert len(re.findall(r"^  \d{4}-\d{2}-\d{2} +\d+\.\d\d$", served, flags=re.MULTILINE)) == 28
    assert "Resource not found" not in result.stderr, result.stderr
