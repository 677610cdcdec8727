"""The sound gate through real processes (`salesmesh up`, its functions, trainer jobs, prediction
servers): an unchanged model retrained on a harder month is promoted, scored against the same
actuals as the champion's own forecasts, where the pooled-MASE rule would have kept it out; a
random walk is kept out with a reason; a leaking ``revenue`` column and a series whose rows end
early are reported, and the leak never reaches the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mesh_cli import cli, mesh_started, settled_versions, start_mesh
from mesh_waits import wait_for
from run_folders import random_walk, upload_folder
from test_deploy_e2e import _stop

from salesmesh.sample import generate

pytestmark = pytest.mark.slow

EXTRA = {"SALESMESH_CANARY_SECONDS": "0.5", "SALESMESH_HISTORY_QUIET": "1"}
HARD = 0.5  # log-normal noise multiplied into the last 28 days' sales: a harder month
EARLY = ("S02", "P002")  # this series' rows end 30 days before the first file's


def business() -> tuple[pd.DataFrame, str]:
    """Sixteen series over 330 days, the last 28 noisier, with a ``revenue`` column (sales x
    price, which would leak the answer); and the first date of the harder month. (Sixteen: on
    six, a random walk's backtest on these noisy windows is too close to call.)"""
    frame = generate(stores=4, products=4, days=330, seed=11)
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    last = sorted(frame["date"].unique())[-28]
    hard = frame["date"] >= last
    rng = np.random.default_rng(3)
    frame.loc[hard, "sales"] = np.round(
        frame.loc[hard, "sales"] * rng.lognormal(0, HARD, hard.sum())
    )
    frame["revenue"] = frame["sales"] * frame["price"]
    return frame, last


def _decided(state: Path, count: int) -> list[dict[str, Any]]:
    return settled_versions(state, count, EXTRA, timeout=300)


def test_harder_month_promotes_an_unchanged_model_and_a_random_walk_is_gated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sales, last = business()
    cutoff = sorted(sales["date"].unique())[-58]  # 30 days before the first file's end
    early = (sales["store_id"] == EARLY[0]) & (sales["product_id"] == EARLY[1])
    sales = sales[~early | (sales["date"] < cutoff)]  # the series' rows stop there
    older = sales[sales["date"] < last]
    state = tmp_path / "state"
    mesh = start_mesh(state, EXTRA)
    try:
        mesh_started(state, monkeypatch)
        from salesmesh.artifact import fetch
        from salesmesh.data.source import storage_client

        data = storage_client().bucket("salesmesh-data")
        data.blob("uploads/history.csv").upload_from_string(older.to_csv(index=False))
        (first,) = _decided(state, 1)
        assert first["state"] == "deployed", first
        run, _ = fetch(first["artifact_uri"], tmp_path / "first")

        # the leak is reported and kept out of the model; the early-ending series is flagged
        report = json.loads((run / "validation.json").read_text())
        assert report["stats"]["ignored_columns"] == ["revenue"]
        warnings = " ".join(issue["message"] for issue in report["warnings"])
        assert "revenue" in warnings and "no rows up to the file's last date" in warnings
        assert "revenue" not in (run / "forecaster.json").read_text()
        card = (run / "model_card.md").read_text()
        assert f"{EARLY[0]}/{EARLY[1]}" in card

        # the harder month: a one-file increment with the last 28 days
        data.blob("uploads/latest.csv").upload_from_string(
            sales[sales["date"] >= last].to_csv(index=False)
        )
        first, second = _decided(state, 2)
        assert second["state"] == "deployed", second
        # the new month's actuals scored what version 1 served: every series that still sells
        live = first["live"]
        assert (live["points"], live["series"], live["first"]) == (15 * 28, 15, last), live
        assert live["backtest_mase"] == pytest.approx(first["metrics"]["mase"], rel=1e-3)
        # a month noisier than any it was backtested on: degraded, published, logged, and
        # alert_handler leaves the traffic alone
        assert live["mase"] > 1.25 * live["backtest_mase"] and first["degraded"], live
        log = state / "logs" / "mesh.jsonl"
        wait_for(
            lambda: "a live-accuracy incident: logged, nothing rolled back" in log.read_text(),
            60,
            "alert_handler logging the live-accuracy incident",
        )
        assert "live-accuracy incident published to the alerts topic" in log.read_text()
        gate = second["gate"]
        assert gate["mode"] == "overlap", gate
        assert gate["comparison"]["windows"]["champion"] == [last]
        # the pooled figure got worse with the month: the old rule would have gated this
        assert second["metrics"]["mase"] > 1.05 * first["metrics"]["mase"]

        # a random walk, trained on the same history, is kept out with a reason
        run2, _ = fetch(second["artifact_uri"], tmp_path / "second")
        worse = random_walk(run2, tmp_path / "walk", sales)
        models = storage_client().bucket("salesmesh-models")
        upload_folder(models.client, worse, "gs://salesmesh-models/runs/r-randomwalk")
        third = _decided(state, 3)[2]
        assert third["state"] == "gated", json.dumps(third["gate"])
        assert "credibly worse" in third["reason"], third["reason"]
        assert third["gate"]["comparison"]["relative_difference"] > 0.05
        text = cli(state, "versions", extra=EXTRA).stdout
        assert f"version {third['version_id']} gated: " in text
        assert "naive_relative +" in text and "overlap " in text, text
        assert f"{live['mase']:.4f} ({live['points']} pts)" in text, text
    finally:
        _stop(mesh, state)
