"""Live accuracy: served forecasts scored against the actuals that arrive, recorded per version
(plain data for the figures; the real storage emulator and a real run for the record)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from salesmesh import accuracy, runtime
from salesmesh.data.source import storage_client
from salesmesh.gate import FILE
from salesmesh.logs import capture
from salesmesh.settings import Settings


def evidence(forecast: dict[str, list[Any]], scale: dict[str, float]) -> dict[str, Any]:
    """A gate.json with a served forecast and a one-window backtest giving each series' scale
    (the model's backtest error is 0.8 x its scale: backtest MASE 0.8)."""
    names = sorted(scale)
    return {
        "forecast": forecast,
        "backtest": {
            "series": names,
            "window": ["2024-01-01"] * len(names),
            "step": [1] * len(names),
            "model": [0.8 * scale[s] for s in names],
            "naive": [scale[s] for s in names],
            "scale": [scale[s] for s in names],
        },
    }


def test_figures_on_plain_data():
    """MASE per series' scale, WAPE and bias over the dates both have; dates without an
    actual yet are left out."""
    served = {
        "series": ["a", "a", "a", "b", "b"],
        "date": ["2024-02-01", "2024-02-02", "2024-02-03", "2024-02-01", "2024-02-02"],
        "forecast": [10.0, 10.0, 10.0, 100.0, 100.0],
    }
    actuals = pd.DataFrame(
        {
            "series_id": ["a", "a", "b", "b", "c"],
            "date": pd.to_datetime(
                ["2024-02-01", "2024-02-02", "2024-02-01", "2024-02-02"] * 1 + ["2024-02-01"]
            ),
            "sales": [12.0, 8.0, 90.0, 130.0, 5.0],
        }
    )
    live = accuracy.score(evidence(served, {"a": 2.0, "b": 20.0}), actuals)
    assert live is not None
    assert (live.points, live.series, live.first, live.last) == (4, 2, "2024-02-01", "2024-02-02")
    # |err|/scale: a 1, 1; b 0.5, 1.5 -> mean 1.0
    assert live.mase == pytest.approx(1.0)
    assert live.wape == pytest.approx(100 * (2 + 2 + 10 + 30) / 240, abs=1e-4)
    assert live.bias == pytest.approx(100 * (220 - 240) / 240, abs=1e-4)
    assert live.backtest_mase == pytest.approx(0.8)
    # 1.0 is 25 % over 0.8: degraded over a 20 % margin, not over 25 % (not "more than")
    assert live.degraded(0.2, 4) and not live.degraded(0.2, 5) and not live.degraded(0.25, 4)
    assert accuracy.score(evidence(served, {"a": 1.0}), actuals.iloc[4:]) is None
    # a series its backtest never scored (no scale) counts in WAPE and bias, not in MASE
    unscaled = accuracy.score(evidence(served, {"a": 4.0}), actuals)
    assert unscaled is not None and (unscaled.points, unscaled.mase) == (4, 0.5)
    assert unscaled.wape == live.wape


@pytest.fixture
def settings(bucket: Any, state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir, state_bucket=bucket.name, live_margin=0.0)


def test_serving_versions_are_scored_recorded_and_reported_degraded_once(
    settings: Settings, model_artifact: Path
):
    """The champion (deployed) and a canary (rolling out) are scored, other versions are not;
    the figures land in the accuracy record; a degraded version is warned about once."""
    ledger = runtime.ledger(settings, storage_client)
    versions = {
        "1": {"state": "standby", "artifact_uri": str(model_artifact)},
        "2": {"state": "deployed", "artifact_uri": str(model_artifact)},
        "3": {"state": "rolling_out", "artifact_uri": str(model_artifact)},
        "4": {"state": "gated", "artifact_uri": str(model_artifact)},
    }
    ledger.update(lambda doc: doc.setdefault("versions", {}).update(versions))
    served = json.loads((model_artifact / FILE).read_text())["forecast"]
    rng = np.random.default_rng(0)
    actuals = pd.DataFrame(
        {
            "series_id": served["series"],
            "date": pd.to_datetime(served["date"]),
            # sales three times what was forecast: far worse than the backtest
            "sales": 3 * np.array(served["forecast"]) * rng.uniform(0.9, 1.1, len(served["date"])),
        }
    )
    log = capture("train_trigger")
    scored = accuracy.update(settings, storage_client, actuals, "s1-abc", log)
    assert sorted(scored) == ["2", "3"]
    assert scored["2"].points == len(served["date"]) and scored["2"].mase > 0
    record = accuracy.recorded(settings, storage_client)
    assert sorted(record) == ["2", "3"] and record["2"]["snapshot"] == "s1-abc"
    assert record["2"]["live"]["mase"] == scored["2"].mase and record["2"]["degraded"]
    degraded = [m for m in log.messages("WARNING") if "live accuracy degraded" in m]
    assert len(degraded) == 2 and "version 2's live accuracy degraded: MASE" in degraded[0]
    accuracy.update(settings, storage_client, actuals, "s2-def", log)
    assert len([m for m in log.messages("WARNING") if "degraded" in m]) == 2  # not again
    assert accuracy.recorded(settings, storage_client)["2"]["snapshot"] == "s2-def"


def test_a_run_that_cannot_be_read_is_skipped_with_a_warning(settings: Settings, tmp_path: Path):
    """A serving version whose run is gone is named; nothing is recorded for it."""
    ledger = runtime.ledger(settings, storage_client)
    gone = {"state": "deployed", "artifact_uri": str(tmp_path / "gone")}
    ledger.update(lambda doc: doc.setdefault("versions", {}).update({"7": gone}))
    log = capture("train_trigger")
    actuals = pd.DataFrame({"series_id": ["a"], "date": ["2024-01-01"], "sales": [1.0]})
    assert accuracy.update(settings, storage_client, actuals, "s1", log) == {}
    assert any("live accuracy of version 7 not scored" in m for m in log.messages("WARNING"))
    assert accuracy.recorded(settings, storage_client) == {}


def test_a_degraded_version_outside_a_mesh_is_logged_and_the_publish_failure_named(
    settings: Settings, model_artifact: Path
):
    """No mesh runs, so no alerts topic: the degradation is recorded and warned about, and
    the warning says the incident could not be published."""
    ledger = runtime.ledger(settings, storage_client)
    entry = {"state": "deployed", "artifact_uri": str(model_artifact)}
    ledger.update(lambda doc: doc.setdefault("versions", {}).update({"2": entry}))
    served = json.loads((model_artifact / FILE).read_text())["forecast"]
    actuals = pd.DataFrame({"series_id": served["series"], "date": served["date"], "sales": 0.0})
    log = capture("train_trigger")
    accuracy.update(settings, storage_client, actuals, "s1", log)
    warnings = log.messages("WARNING")
    assert any("not published to the alerts topic" in m for m in warnings), warnings
    assert accuracy.recorded(settings, storage_client)["2"]["degraded"]
