"""`salesmesh validate` run as a real process: exit codes 0/1/2 and the --json shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _validate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "salesmesh.cli", "validate", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_valid_file_exits_zero_with_ok_text(write_file, sales_text):
    """A valid file exits 0 and the text report starts with OK."""
    done = _validate(write_file("sales.csv", sales_text()))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")
    assert "freq: D" in done.stdout


def test_invalid_file_exits_one_with_rule_in_text(write_file, sales_text):
    """An invalid file exits 1 and the text names the broken rule and the line."""
    text = sales_text().replace("2024-01-03,S1,P1,2", "2024-01-03,S1,P1,-2")
    done = _validate(write_file("sales.csv", text))
    assert done.returncode == 1
    assert done.stdout.startswith("REJECTED: ")
    assert "ERROR [sales_negative]" in done.stdout
    assert "line 4, column='sales', value='-2'" in done.stdout


def test_json_output_shape(write_file, sales_text):
    """--json prints ok, errors, warnings and stats; findings carry rule/message/examples."""
    done = _validate(write_file("sales.csv", sales_text(days=20)), "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert set(report) == {"ok", "errors", "warnings", "stats"}
    assert report["ok"] is False
    assert [error["rule"] for error in report["errors"]] == ["history_length"]
    assert set(report["errors"][0]) == {"rule", "message", "examples"}
    assert report["stats"]["rows"] == 40
    assert report["stats"]["source"]["size"] > 0


def test_horizon_and_map_flags_reach_the_contract(write_file, sales_text):
    """--map names the date column and --horizon 7 lets 21 days of history pass."""
    path = write_file("sales.csv", sales_text(days=21, header=("dt", "store", "sku", "qty")))
    assert "[required_columns]" in _validate(path, "--horizon", "7").stdout
    assert "[history_length]" in _validate(path, "--map", "dt=date").stdout
    assert _validate(path, "--horizon", "7", "--map", "dt=date").returncode == 0


def test_date_format_flag(write_file, sales_text):
    """--date-format reads a format detection does not know."""
    path = write_file("sales.csv", sales_text(date_format="%d %b %Y"))
    assert _validate(path).returncode == 1
    assert _validate(path, "--date-format", "%d %b %Y").returncode == 0


def test_missing_path_exits_two(tmp_path):
    """An unreadable path is a usage error: exit 2 with the reason on stderr."""
    done = _validate(tmp_path / "absent.csv")
    assert done.returncode == 2
    assert "no such file" in done.stderr


def test_bad_flag_exits_two(write_file, sales_text):
    """A malformed --map is an argparse usage error: exit 2."""
    done = _validate(write_file("sales.csv", sales_text()), "--map", "nodelimiter")
    assert done.returncode == 2
    assert "--map expects SOURCE=TARGET" in done.stderr


def test_regressor_flag_and_setting_declare_columns_known_in_advance(write_file, sales_text):
    """--regressor and SALESMESH_REGRESSORS both declare regressors; the rest are ignored."""
    text = sales_text().replace("sales\n", "sales,revenue,holiday\n", 1)
    text = "\n".join(
        line if i == 0 else f"{line},{i},{i % 2}" for i, line in enumerate(text.splitlines())
    )
    path = write_file("sales.csv", text + "\n")
    plain = json.loads(_validate(path, "--json").stdout)["stats"]
    assert (plain["regressors"], plain["ignored_columns"]) == ([], ["revenue", "holiday"])
    flagged = json.loads(_validate(path, "--json", "--regressor", "holiday").stdout)["stats"]
    assert (flagged["regressors"], flagged["ignored_columns"]) == (["holiday"], ["revenue"])
    command = [sys.executable, "-m", "salesmesh.cli", "validate", str(path), "--json"]
    env = {**os.environ, "SALESMESH_REGRESSORS": "revenue,holiday"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert json.loads(done.stdout)["stats"]["regressors"] == ["revenue", "holiday"]
