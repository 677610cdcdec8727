"""The trainer and extra columns: no leakage through columns nobody knows in advance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from salesmesh import train
from salesmesh.sample import generate

pytestmark = pytest.mark.slow


def _quiet(message: str) -> None:
    """Progress sink: the tests read the run folder, not the progress lines."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One business trained three ways: plain, with revenue = sales x price, revenue declared."""
    root = tmp_path_factory.mktemp("leak")
    sales = generate(stores=2, products=3, days=240, seed=4)
    plain, leaky = root / "plain.csv", root / "revenue.csv"
    sales.to_csv(plain, index=False)
    sales.assign(revenue=(sales["sales"] * sales["price"]).round(2)).to_csv(leaky, index=False)
    out = {}
    for name, data, declared in (
        ("plain", plain, ()),
        ("revenue", leaky, ()),
        ("declared", leaky, ("revenue",)),
    ):
        out[name] = root / name
        train.run(str(data), str(out[name]), 7, 2, progress=_quiet, regressors=declared)
    return out


def _read(folder: Path, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / name).read_text())
    return loaded


def test_a_revenue_column_does_not_improve_the_backtest(runs):
    """revenue = sales x price is ignored: the backtest is exactly the plain file's, not better."""
    plain = _read(runs["plain"], "metrics.json")
    leaky = _read(runs["revenue"], "metrics.json")
    assert leaky["models"]["salesmesh"]["mase"] == plain["models"]["salesmesh"]["mase"]
    assert leaky["known_plan"] == plain["known_plan"]


def test_only_declared_regressors_reach_the_model(runs):
    """Undeclared, revenue is reported ignored and is no model input; declared, it is one."""
    report = _read(runs["revenue"], "validation.json")["stats"]
    assert (report["regressors"], report["ignored_columns"]) == (["price", "promo"], ["revenue"])
    assert _read(runs["revenue"], "forecaster.json")["regressors"] == ["price", "promo"]
    declared = _read(runs["declared"], "forecaster.json")
    assert declared["regressors"] == ["price", "promo", "revenue"]
    assert _read(runs["declared"], "validation.json")["stats"]["ignored_columns"] == []


def test_metrics_keep_served_figures_where_the_gate_reads_them(runs):
    """metrics.json keeps models.salesmesh (as served) and adds the known plan beside it."""
    metrics = _read(runs["plain"], "metrics.json")
    manifest = _read(runs["plain"], "manifest.json")
    assert set(metrics["models"]) == {"salesmesh", "seasonal_naive", "ets", "theta"}
    assert metrics["known_plan"]["regressors"] == ["price", "promo"]
    served = metrics["models"]["salesmesh"]["mase"]
    assert manifest["metrics"]["salesmesh"]["mase"] == served
    plan = metrics["known_plan"]["models"]["salesmesh"]["mase"]
    assert manifest["metrics_known_plan"]["mase"] == plan
    assert "salesmesh, known plan" in (runs["plain"] / "model_card.md").read_text()


def test_the_command_reads_declared_regressors_from_flag_and_setting(tmp_path):
    """SALESMESH_REGRESSORS and --regressor both declare columns (the setting's first)."""
    sales = generate(stores=1, products=2, days=120, seed=5)
    data = tmp_path / "sales.csv"
    sales.assign(revenue=sales["sales"] * 2.0, holiday=0).to_csv(data, index=False)
    argv = ["--data", str(data), "--output", str(tmp_path / "run"), "--horizon", "7"]
    argv += ["--origins", "1", "--regressor", "holiday"]
    assert train.main(argv, env={"SALESMESH_REGRESSORS": "revenue"}) == 0
    assert _read(tmp_path / "run", "forecaster.json")["regressors"] == [
        "price",
        "promo",
        "revenue",
        "holiday",
    ]
