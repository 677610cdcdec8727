"""Publishing run folders to the emulator in tests (a module, not conftest: its name is unique)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


def upload_folder(client: Any, folder: Path, uri: str) -> str:
    """Copy a local run folder to ``gs://bucket/prefix`` on ``client``, manifest last."""
    from salesmesh.artifact import MANIFEST
    from salesmesh.data.source import split_gcs_uri

    bucket_name, prefix = split_gcs_uri(uri.rstrip("/") + "/x")
    prefix = prefix[:-1]
    bucket = client.bucket(bucket_name)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    for path in [*files, folder / MANIFEST]:
        bucket.blob(prefix + path.relative_to(folder).as_posix()).upload_from_filename(str(path))
    return uri.rstrip("/")


def variant(artifact: Path, target: Path, mase: float) -> Path:
    """A copy of a run whose backtest says the model scored ``mase``, manifest rewritten: the
    pooled figure, and in its gate evidence every error of the model and every forecast's
    error, scaled alike, so the gate sees the model that much better or worse throughout."""
    from salesmesh.artifact import MANIFEST, write_manifest
    from salesmesh.gate import FILE

    shutil.copytree(artifact, target)
    metrics = json.loads((target / "metrics.json").read_text())
    factor = mase / metrics["models"]["salesmesh"]["mase"]
    metrics["models"]["salesmesh"]["mase"] = mase
    (target / "metrics.json").write_text(json.dumps(metrics))
    if (target / FILE).exists():
        evidence = json.loads((target / FILE).read_text())
        evidence["backtest"]["model"] = [e * factor for e in evidence["backtest"]["model"]]
        since = evidence["since"]
        since["forecast"] = [
            a + (f - a) * factor for f, a in zip(since["forecast"], since["actual"], strict=True)
        ]
        (target / FILE).write_text(json.dumps(evidence))
    extra = json.loads((target / MANIFEST).read_text())
    (target / MANIFEST).unlink()
    write_manifest(target, {k: extra[k] for k in ("data", "model", "metrics")})
    return target


def random_walk(run: Path, target: Path, sales: Any) -> Path:
    """A copy of ``run`` whose model is a random walk (tomorrow = today, for every step): its
    gate evidence, pooled backtest MASE and served forecasts are recomputed as that model's
    from ``sales`` (the rows the run trained on, store_id, product_id, date, sales), manifest
    rewritten. A genuinely worse model, with the evidence a run of it would leave."""
    import pandas as pd

    from salesmesh.artifact import MANIFEST, write_manifest
    from salesmesh.data.series import series_frame
    from salesmesh.gate import FILE

    shutil.copytree(run, target)
    history, _ = series_frame(sales.assign(date=pd.to_datetime(sales["date"])))
    wide = history.pivot_table(index="series_id", columns="date", values="sales", aggfunc="sum")
    evidence = json.loads((target / FILE).read_text())

    def walk(table: dict[str, list[Any]]) -> tuple[list[float], list[float]]:
        """The random walk's forecast and the actual at each (series, window, step) row."""
        forecasts, actuals = [], []
        for series, window, step in zip(
            table["series"], table["window"], table["step"], strict=True
        ):
            start = pd.Timestamp(window)
            known = wide.loc[series, : start - pd.Timedelta(days=1)].dropna()
            forecasts.append(float(known.iloc[-1]))
            actuals.append(float(wide.loc[series].get(start + pd.Timedelta(days=step - 1), 0.0)))
        return forecasts, actuals

    backtest = evidence["backtest"]
    forecasts, actuals = walk(backtest)
    backtest["model"] = [abs(f - a) for f, a in zip(forecasts, actuals, strict=True)]
    evidence["forecast"]["forecast"] = walk(evidence["forecast"])[0]
    evidence["since"]["forecast"] = walk(evidence["since"])[0]
    (target / FILE).write_text(json.dumps(evidence))
    metrics = json.loads((target / "metrics.json").read_text())
    frame = pd.DataFrame(backtest)
    metrics["models"]["salesmesh"]["mase"] = float((frame["model"] / frame["scale"]).mean())
    (target / "metrics.json").write_text(json.dumps(metrics))
    extra = json.loads((target / MANIFEST).read_text())
    (target / MANIFEST).unlink()
    write_manifest(target, {k: extra[k] for k in ("data", "model", "metrics")})
    return target
