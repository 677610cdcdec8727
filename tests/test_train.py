"""The training entrypoint end to end, as a real subprocess, on local folders and GCS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from salesmesh import train
from salesmesh.artifact import sha256_file
from salesmesh.errors import SourceError
from salesmesh.forecast import card, load
from salesmesh.sample import generate, write_sample

RUN_FILES = {
    "model.lgb.txt",
    "state.npz",
    "forecaster.json",
    "metrics.json",
    "gate.json",
    "model_card.md",
    "forecast_vs_actual.png",
    "error_by_horizon.png",
    "quantile_fan.png",
    "validation.json",
    "series.csv",
    "manifest.json",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# the entrypoint end to end: two tests train on real sample data in a subprocess
pytestmark = pytest.mark.slow


def _train(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m salesmesh.train`` with ``env`` on top of this environment minus Vertex's."""
    base = {k: v for k, v in os.environ.items() if k != "AIP_MODEL_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "salesmesh.train", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 stores x 4 products x 400 days of sample sales as CSV."""
    path = tmp_path_factory.mktemp("data") / "sales.csv"
    write_sample(path, stores=3, products=4, days=400, seed=1)
    return path


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 stores x 2 products x 150 days: the least a run with horizon 7 trains quickly on."""
    path = tmp_path_factory.mktemp("small") / "sales.csv"
    write_sample(path, stores=2, products=2, days=150, seed=2)
    return path


@pytest.fixture(scope="module")
def trained(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One training run to a local --output, with an AIP_MODEL_DIR set that it must not use."""
    root = tmp_path_factory.mktemp("train")
    output, unused = root / "run", root / "aip-unused"
    result = _train(
        "--data", str(sample_csv), "--output", str(output), "--horizon", "7", "--origins", "2",
        env={"AIP_MODEL_DIR": str(unused)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((output / "manifest.json").read_text())
    return {"result": result, "output": output, "unused": unused, "manifest": manifest}


def test_training_exits_zero_and_prints_the_summary(trained):
    """A good file trains: exit 0, the accuracy table and the artifact location on stdout."""
    stdout = trained["result"].stdout
    assert "12 series, frequency D, horizon 7" in stdout
    for line in card.summary_lines({"models": trained["manifest"]["metrics"]}):
        assert line in stdout.splitlines()
    assert f"artifact: {trained['output']}" in stdout


def test_run_folder_holds_model_metrics_card_plots_and_manifest(trained):
    """The run folder has exactly the model files, reports, plots and the manifest."""
    assert {p.name for p in trained["output"].iterdir()} == RUN_FILES


def test_the_trained_model_serves_the_quantiles_its_backtest_calibrated(trained):
    """The run's model gives p10..p90 around its forecast, the backtest scored them on origins
    that did not calibrate them, and the card shows the scores and the fan chart."""
    from salesmesh.forecast.model import load

    output = trained["output"]
    model = load(output)
    assert model.quantiles == (0.1, 0.25, 0.5, 0.75, 0.9)
    frame = model.predict(quantiles=model.quantiles)
    values = frame[["p10", "p25", "p50", "p75", "p90"]].to_numpy()
    assert (values >= 0).all() and (values[:, 1:] >= values[:, :-1]).all()
    assert (frame["p90"] > frame["p10"]).mean() > 0.9  # real intervals, not a line
    figures = json.loads((output / "metrics.json").read_text())["models"]["salesmesh"]
    assert 0 < figures["coverage_50"] <= figures["coverage_80"] <= 1 and figures["spl"] > 0
    text = (output / "model_card.md").read_text()
    assert "## Quantiles" in text and "![quantile_fan.png](quantile_fan.png)" in text
    assert "backtest quantiles: scaled pinball loss" in trained["result"].stderr


def test_gate_evidence_holds_the_backtest_points_and_what_the_model_serves(trained):
    """gate.json reads back as the gate reads it: the backtest's points match metrics.json's
    pooled MASE, and the forecast table is what the saved model serves."""
    from salesmesh.forecast.model import load
    from salesmesh.gate import FILE, read

    output = trained["output"]
    evidence = read({"gate": json.loads((output / FILE).read_text())})
    assert evidence is not None
    points = evidence.backtest
    mase = float((points["model"] / points["scale"]).mean())
    figures = json.loads((output / "metrics.json").read_text())["models"]["salesmesh"]
    assert mase == pytest.approx(figures["mase"], rel=1e-4)
    assert sorted(points["window"].unique()) == figures_origins(output)
    served = load(output).predict()
    assert evidence.forecast is not None and evidence.window == str(served["date"].min().date())
    assert evidence.forecast["forecast"].to_numpy() == pytest.approx(
        served["forecast"].to_numpy(), rel=1e-5
    )
    assert evidence.series == set(served["series_id"]) and not evidence.inactive
    assert evidence.since is not None and evidence.since.empty  # a lone file: no earlier runs


def figures_origins(output: Path) -> list[str]:
    return list(json.loads((output / "metrics.json").read_text())["protocol"]["origins"])


def test_manifest_covers_every_other_file_with_its_sha256(trained):
    """Every file but the manifest is listed with its true sha256 and size."""
    output, files = trained["output"], trained["manifest"]["files"]
    assert set(files) == RUN_FILES - {"manifest.json"}
    for name, entry in files.items():
        assert entry == {
            "sha256": sha256_file(output / name),
            "bytes": (output / name).stat().st_size,
        }


def test_manifest_records_data_identity_and_library_versions(trained, sample_csv):
    """The manifest names the data (uri, md5, rows, bytes), the model and the libraries."""
    manifest = trained["manifest"]
    raw = sample_csv.read_bytes()
    assert manifest["data"] == {
        "uri": str(sample_csv),
        "generation": None,
        "md5": base64.b64encode(hashlib.md5(raw).digest()).decode(),
        "bytes": len(raw),
        "rows": 4800,
    }
    assert {"python", "numpy", "pandas", "lightgbm", "salesmesh"} <= set(manifest["libraries"])
    assert (manifest["model"]["freq"], manifest["model"]["horizon"]) == ("D", 7)
    assert manifest["model"]["series"] == 12
    assert {"salesmesh", "seasonal_naive", "ets"} <= set(manifest["metrics"])


def test_metrics_json_follows_the_requested_protocol(trained):
    """metrics.json has 2 origins, 7-step curves, and the manifest repeats its headline figures."""
    metrics = json.loads((trained["output"] / "metrics.json").read_text())
    assert len(metrics["protocol"]["origins"]) == 2
    assert metrics["protocol"]["horizon"] == 7
    assert set(metrics["models"]) == set(trained["manifest"]["metrics"])
    for name, figures in metrics["models"].items():
        assert len(figures["by_horizon"]["mase"]) == 7
        headline = {k: v for k, v in figures.items() if k != "by_horizon"}
        assert trained["manifest"]["metrics"][name] == headline


@pytest.mark.parametrize("name", ["forecast_vs_actual.png", "error_by_horizon.png"])
def test_plots_are_png_images(trained, name):
    """Both plots are real PNG files."""
    data = (trained["output"] / name).read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000


def test_series_table_maps_ids_to_store_and_product(trained):
    """series.csv lists each store/product series once with its parts and whether it is
    forecast (every series of the sample sells to its last day)."""
    table = pd.read_csv(trained["output"] / "series.csv", dtype=str)
    assert list(table.columns) == [
        "series_id",
        "store_id",
        "product_id",
        "active",
        "silent_periods",
    ]
    assert len(table) == 12
    assert (table["active"] == "True").all() and (table["silent_periods"] == "0").all()
    assert (table["series_id"] == table["store_id"] + "/" + table["product_id"]).all()


def test_validation_report_and_card_are_saved(trained, sample_csv):
    """validation.json holds the accepted report; the card names the data and shows both plots."""
    report = json.loads((trained["output"] / "validation.json").read_text())
    assert report["ok"] is True
    assert report["stats"]["rows"] == 4800
    text = (trained["output"] / "model_card.md").read_text()
    assert f"`{sample_csv}`" in text
    assert "![forecast_vs_actual.png](forecast_vs_actual.png)" in text
    assert "![error_by_horizon.png](error_by_horizon.png)" in text


def test_output_loads_and_forecasts_every_series(trained, sample_csv):
    """load() accepts the run folder and forecasts 7 days past the data for all 12 series."""
    forecast = load(trained["output"]).predict()
    table = pd.read_csv(trained["output"] / "series.csv", dtype=str)
    assert sorted(forecast["series_id"].unique()) == sorted(table["series_id"])
    last = pd.Timestamp(pd.read_csv(sample_csv, usecols=["date"])["date"].max())
    assert forecast.groupby("series_id")["date"].min().eq(last + pd.Timedelta(days=1)).all()
    assert forecast.groupby("series_id").size().eq(7).all()


def test_output_flag_wins_over_aip_model_dir(trained):
    """With --output given, AIP_MODEL_DIR is not touched."""
    assert not trained["unused"].exists()


def test_no_output_and_no_aip_model_dir_is_a_usage_error(sample_csv, capsys):
    """Neither --output nor AIP_MODEL_DIR: exit 2 and a message saying what is needed."""
    with pytest.raises(SystemExit) as exit_:
        train.main(["--data", str(sample_csv)], env={})
    assert exit_.value.code == 2
    assert "--output is required when AIP_MODEL_DIR is not set" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--horizon", "--origins"])
def test_non_positive_horizon_or_origins_is_a_usage_error(sample_csv, tmp_path, capsys, flag):
    """--horizon 0 or --origins 0 exits 2 before anything is read or written."""
    with pytest.raises(SystemExit) as exit_:
        train.main(["--data", str(sample_csv), "--output", str(tmp_path / "run"), flag, "0"])
    assert exit_.value.code == 2
    assert "must be positive" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_rejected_data_exits_one_and_publishes_nothing(tmp_path):
    """Negative sales: exit 1, the broken rule on stderr, and no output folder or manifest."""
    frame = generate(stores=1, products=2, days=120, seed=0)
    frame.loc[50, "sales"] = -3
    data = tmp_path / "sales.csv"
    frame.to_csv(data, index=False, date_format="%Y-%m-%d")
    output = tmp_path / "run"
    result = _train("--data", str(data), "--output", str(output), "--horizon", "7")
    assert result.returncode == 1
    assert "sales_negative" in result.stderr
    assert "column 'sales' is negative on 1 row(s)" in result.stderr
    assert not output.exists()


def test_missing_data_file_exits_two(tmp_path):
    """A data path that does not exist is an unreadable source: exit 2, named in the message."""
    missing = tmp_path / "nope.csv"
    result = _train("--data", str(missing), "--output", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"no such file: {missing}" in result.stderr
    assert not (tmp_path / "run").exists()


def test_folder_holding_a_finished_run_is_refused_before_training(sample_csv, tmp_path):
    """An output with a manifest is never overwritten; the refusal comes before any work."""
    output = tmp_path / "run"
    output.mkdir()
    (output / "manifest.json").write_text('{"earlier": "run"}')
    result = _train("--data", str(sample_csv), "--output", str(output), "--horizon", "7")
    assert result.returncode == 2
    assert "already holds a finished run" in result.stderr
    assert "reading" not in result.stderr
    assert [p.name for p in output.iterdir()] == ["manifest.json"]
    assert (output / "manifest.json").read_text() == '{"earlier": "run"}'


def test_publish_refuses_a_run_that_finished_there_meanwhile(tmp_path):
    """If another run's manifest appeared while training, publishing copies nothing."""
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "model.lgb.txt").write_text("tree")
    (staging / "manifest.json").write_text("{}")
    output = tmp_path / "run"
    output.mkdir()
    (output / "manifest.json").write_text('{"other": "run"}')
    with pytest.raises(SourceError, match="already holds a finished run"):
        train.publish(staging, str(output))
    assert [p.name for p in output.iterdir()] == ["manifest.json"]


def test_vertex_style_gcs_run_publishes_to_aip_model_dir_with_the_manifest_last(
    bucket, small_csv, tmp_path
):
    """gs:// data and no --output: the run goes to $AIP_MODEL_DIR (a gs:// prefix, as Vertex AI
    sets it), the manifest is uploaded after every other object, and the output loads."""
    source = bucket.blob("uploads/sales.csv")
    source.upload_from_filename(str(small_csv))
    source.reload()
    data_uri = f"gs://{bucket.name}/uploads/sales.csv"
    env = {
        "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
        "AIP_MODEL_DIR": f"gs://{bucket.name}/runs/1/",
    }
    result = _train("--data", data_uri, "--horizon", "7", "--origins", "1", env=env)
    assert result.returncode == 0, result.stderr

    blobs = {blob.name.removeprefix("runs/1/"): blob for blob in bucket.list_blobs(prefix="runs/")}
    assert set(blobs) == RUN_FILES - {"quantile_fan.png"}  # one origin: no honest fan chart
    manifest_blob = blobs.pop("manifest.json")
    assert manifest_blob.generation > max(blob.generation for blob in blobs.values())
    assert manifest_blob.time_created >= max(blob.time_created for blob in blobs.values())

    manifest = json.loads(manifest_blob.download_as_bytes())
    assert manifest["data"]["uri"] == data_uri
    assert manifest["data"]["generation"] == str(source.generation)
    assert manifest["data"]["md5"] == source.md5_hash
    assert manifest["data"]["rows"] == 2 * 2 * 150

    local = tmp_path / "downloaded"
    local.mkdir()
    for name, blob in [*blobs.items(), ("manifest.json", manifest_blob)]:
        blob.download_to_filename(str(local / name))
    forecast = load(local).predict()
    assert forecast.groupby("series_id").size().eq(7).all()
    assert forecast["series_id"].nunique() == 4


def test_gcs_output_holding_a_finished_run_is_refused(bucket, small_csv):
    """A gs:// prefix that already holds manifest.json is refused with nothing uploaded."""
    bucket.blob("runs/old/manifest.json").upload_from_string('{"earlier": "run"}')
    bucket.blob("uploads/sales.csv").upload_from_filename(str(small_csv))
    result = _train(
        "--data", f"gs://{bucket.name}/uploads/sales.csv",
        "--output", f"gs://{bucket.name}/runs/old", "--horizon", "7",
        env={"STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"]},
    )  # fmt: skip
    assert result.returncode == 2
    assert "already holds a finished run" in result.stderr
    assert [blob.name for blob in bucket.list_blobs(prefix="runs/old/")] == [
        "runs/old/manifest.json"
    ]


def test_series_ids_keep_stores_and_products_with_slashes_apart():
    """Store 'a/b' + product 'c' and store 'a' + product 'b/c' stay two series."""
    sales = pd.DataFrame(
        {
            "store_id": ["a/b", "a"],
            "product_id": ["c", "b/c"],
            "date": ["2024-01-01"] * 2,
            "sales": [1.0, 100.0],
        }
    )
    history, table = train.series_frame(sales)
    assert history["series_id"].nunique() == 2
    assert table.set_index("series_id").loc["a%2Fb/c", "store_id"] == "a/b"


def test_output_that_is_a_file_is_refused_before_training(small_csv, tmp_path):
    """--output naming an existing file exits 2 at once, with no traceback."""
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = _train("--data", str(small_csv), "--output", str(target))
    assert result.returncode == 2
    assert "is a file" in result.stderr and "Traceback" not in result.stderr
    assert "reading" not in result.stderr  # refused before the data was read
