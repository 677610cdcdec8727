"""Training entrypoint: ``python -m salesmesh.train --data URI [--output URI] [--horizon N]``.

The same command runs as a Vertex AI custom job (output defaults to ``AIP_MODEL_DIR``), as the
local mesh's training subprocess and by hand. It validates the data, backtests, fits the final
model and publishes one run folder: model files, ``metrics.json``, ``model_card.md`` with plots,
``validation.json``, ``series.csv`` and, last, ``manifest.json``, whose arrival means "complete".
``--data`` may name the sales history instead of a file: the trainer resolves its HEAD when it
starts (:mod:`salesmesh.sales.resolve`) and the manifest names the snapshot and its uploads.
Exit codes: 0 trained, 1 rejected data or failed run, 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from salesmesh.artifact import MANIFEST, write_manifest
from salesmesh.data.series import series_frame
from salesmesh.errors import InvalidDatasetError, MeshError, SourceError, exit_status
from salesmesh.logs import Logger
from salesmesh.runtime import LOG_FILE


class _Progress:
    """Timestamped progress lines on stderr, so a long job shows where it is.

    Inside the local mesh (``SALESMESH_STATE_DIR`` set) each line also goes to the mesh's
    structured log, carrying the run and correlation ids of the upload it trains on, so
    ``salesmesh logs --run ID`` tells the whole story from upload to artifact.
    """

    def __init__(self, data: str, env: Mapping[str, str] = os.environ) -> None:
        self._start = time.perf_counter()
        self._log = _mesh_logger(data, env)

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self._start
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
        if self._log is not None:
            self._log.info(message, elapsed_seconds=round(elapsed, 3))


def _mesh_logger(data: str, env: Mapping[str, str]) -> Logger | None:
    """A structured logger bound to the upload's ids, when running inside the local mesh."""
    if not env.get("SALESMESH_STATE_DIR"):
        return None
    log = Logger("trainer", stream=None, path=Path(env["SALESMESH_STATE_DIR"]) / "logs" / LOG_FILE)
    from salesmesh import events
    from salesmesh.sales.uri import HistoryUri, is_history

    if is_history(data):
        run = HistoryUri.parse(data).run
        if run is None:
            return log
        # the run is named after the upload that launched it: its story carries both ids
        return log.bind(correlation_id=f"c-{run.removeprefix('r-')}", labels={"run_id": run})
    upload = events.upload_from_uri(data)
    if upload is None:
        return log
    # the same ids train_trigger derived from the event, recomputed from the pinned URI
    return log.bind(
        correlation_id=events.correlation_id(upload), labels={"run_id": events.run_id(upload)}
    )


def run(
    data: str,
    output: str,
    horizon: int = 28,
    origins: int = 3,
    mapping: Mapping[str, str] | None = None,
    progress: Any = None,
    regressors: Sequence[str] = (),
) -> dict[str, Any]:
    """Train on ``data`` and publish the run to ``output`` (local folder or ``gs://`` prefix).

    ``regressors`` declares extra columns known in advance, beside price and promo.
    Returns the manifest. Raises :class:`InvalidDatasetError` when the data breaks the contract.
    """
    from salesmesh import gate
    from salesmesh.data import Contract
    from salesmesh.forecast import backtest, card, describe
    from salesmesh.forecast.model import Params, fit_panel
    from salesmesh.forecast.panel import to_panel

    say = progress or _Progress(data)
    refuse_finished(output)  # before the data is read: a refused run should cost nothing
    say(f"reading {data}")
    contract = Contract(mapping=dict(mapping or {}), horizon=horizon, regressors=tuple(regressors))
    loaded, data_identity, earlier = _load(data, contract, say)
    if not loaded.report.ok or loaded.frame is None:
        raise InvalidDatasetError(f"{data} was rejected:\n{loaded.report.to_text()}")
    stats = loaded.report.stats
    say(
        f"validated {len(loaded.frame):,} rows, {stats.get('series')} series, "
        f"frequency {stats.get('freq')}"
    )

    history, table = series_frame(loaded.frame)
    panel = to_panel(history, stats.get("freq"), stats.get("regressors", []))
    params = Params()
    say(f"backtesting: {origins} origin(s) x {horizon} steps against seasonal naive, ETS, Theta")
    ends = [pd.Timestamp(end) for end in earlier]
    result = backtest.run(panel, horizon, origins, params, since=ends)
    if ends:
        starts = sorted(set(result.since["window"]))
        say(
            f"gate evidence: forecasts from the data end of {len(starts)} earlier run(s) "
            f"({', '.join(starts) or 'none inside the backtest'})"
        )
    plan = _headline(result.metrics.get("known_plan"))
    say(
        "backtest MASE as served "
        + ", ".join(
            f"{name} {card.fmt(figures['mase'])}"
            for name, figures in result.metrics["models"].items()
        )
        + ("" if plan is None else f"; salesmesh with a known plan {card.fmt(plan['mase'])}")
    )
    ours = result.metrics["models"][backtest.MODEL]
    if "coverage_80" in ours:
        say(
            f"backtest quantiles: scaled pinball loss {card.fmt(ours['spl'])}, the 50 % and "
            f"80 % intervals held {card.pct(ours['coverage_50'])} and "
            f"{card.pct(ours['coverage_80'])} of the actuals"
        )
    say("fitting the final model on all history")
    # the backtest's errors calibrate the final model's quantiles: no extra fit
    forecaster = fit_panel(panel, horizon, params, result.calibration, result.member)

    with tempfile.TemporaryDirectory(prefix="salesmesh-run-") as staging_name:
        staging = Path(staging_name)
        forecaster.save(staging)
        (staging / MANIFEST).unlink()  # the run's manifest below covers every file
        # which series the model forecasts, readable without loading it; active ones first,
        # because a deployment's health probe asks for the first series listed
        silent = table["series_id"].map(forecaster.silence).fillna(0).astype(int)
        active = ~table["series_id"].isin(list(forecaster.inactive))
        listed = table.assign(active=active, silent_periods=silent)
        listed.sort_values(["active", "series_id"], ascending=[False, True]).to_csv(
            staging / "series.csv", index=False
        )
        (staging / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        (staging / gate.FILE).write_text(
            json.dumps(_gate_evidence(output, forecaster, result), separators=(",", ":")) + "\n"
        )
        (staging / "validation.json").write_text(
            json.dumps(loaded.report.to_dict(), indent=2, default=str) + "\n"
        )
        plots = card.write_plots(result, staging)
        model_info = describe(forecaster, params)
        (staging / "model_card.md").write_text(
            card.render(result.metrics, model_info, data_identity, plots)
        )
        manifest = write_manifest(
            staging,
            {
                "data": data_identity,
                # the per-feature and per-series lists stay in the run's own files
                "model": {k: v for k, v in model_info.items() if k not in ("features", "silence")},
                "metrics": {
                    name: {k: v for k, v in figures.items() if k != "by_horizon"}
                    for name, figures in result.metrics["models"].items()
                },
                "metrics_known_plan": _headline(result.metrics.get("known_plan")),
            },
        )
        say(f"publishing {len(manifest['files']) + 1} files to {output}")
        publish(staging, output)
    say("done")
    return manifest


def _gate_evidence(run_id: str, forecaster: Any, result: Any) -> dict[str, Any]:
    """The run's ``gate.json`` (:mod:`salesmesh.gate.evidence`): its backtest's points, what
    it will serve, and its forecasts from earlier runs' data ends."""
    from salesmesh import gate

    served = forecaster.predict()
    first = served["date"].min()
    forecast = pd.DataFrame(
        {
            "series": served["series_id"],
            "window": "" if pd.isna(first) else pd.Timestamp(first).date().isoformat(),
            "step": served.groupby("series_id").cumcount() + 1,
            "date": pd.to_datetime(served["date"]).dt.strftime("%Y-%m-%d"),
            "forecast": served["forecast"],
        }
    )
    inactive = list(forecaster.inactive)
    series = [s for s in forecaster.series if s not in forecaster.inactive]
    return gate.block(run_id, series, inactive, result.points, forecast, result.since)


def _load(data: str, contract: Any, say: Any) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    """The checked rows of ``data``, its identity for the manifest and the data ends of the
    runs before it: a file as it is (none known), or the sales history's snapshot the run
    resolves (:mod:`salesmesh.sales.resolve`)."""
    from salesmesh.data import load_sales
    from salesmesh.sales.uri import is_history

    if is_history(data):
        from salesmesh.data.source import storage_client
        from salesmesh.sales import HistoryUri, open_history
        from salesmesh.sales.resolve import resolve
        from salesmesh.settings import Settings

        uri = HistoryUri.parse(data)
        store = open_history(
            Settings.from_env(), storage_client, bucket=uri.bucket, model=uri.model
        )
        resolved = resolve(uri, store, contract, say)
        return resolved.loaded, resolved.identity(), resolved.earlier_ends
    loaded = load_sales(data, contract)
    source = loaded.source
    rows = None if loaded.frame is None else len(loaded.frame)
    identity = {
        "uri": source.uri,
        "generation": source.generation,
        "md5": source.md5,
        "bytes": source.size,
        "rows": rows,
    }
    return loaded, identity, ()


def _headline(plan: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The model's known-plan figures without the per-step breakdown (None without a plan)."""
    if not plan:
        return None
    return {k: v for k, v in plan["models"]["salesmesh"].items() if k != "by_horizon"}


def _gcs_prefix(output: str) -> tuple[str, str]:
    """('bucket', 'runs/1/') from 'gs://bucket/runs/1'."""
    from salesmesh.data.source import split_gcs_uri

    bucket_name, name = split_gcs_uri(output.rstrip("/") + "/" + MANIFEST)
    return bucket_name, name.removesuffix(MANIFEST)


def refuse_finished(output: str) -> None:
    """Raise :class:`SourceError` if ``output`` already holds a manifest, i.e. a finished run.

    Overwriting one would leave its old manifest describing files that are being replaced.
    """
    if output.startswith("gs://"):
        from salesmesh.data.source import storage_client

        bucket_name, prefix = _gcs_prefix(output)
        finished = storage_client().bucket(bucket_name).blob(prefix + MANIFEST).exists()
    else:
        if Path(output).exists() and not Path(output).is_dir():
            raise SourceError(f"{output} is a file; --output must name a folder")
        finished = (Path(output) / MANIFEST).exists()
    if finished:
        raise SourceError(f"{output} already holds a finished run; choose a new output folder")


def publish(staging: Path, output: str) -> None:
    """Copy a finished run to ``output``, the manifest last so its arrival means complete.

    Every object is created only if absent (generation 0), so of two runs racing to one GCS
    prefix the loser fails on its first file instead of overwriting the winner's. Locally the
    manifest is renamed into place, so a watcher never reads half of one.
    """
    files = sorted(p for p in staging.rglob("*") if p.is_file() and p.name != MANIFEST)
    refuse_finished(output)  # again: another run may have finished there while this one trained
    if output.startswith("gs://"):
        from google.api_core import exceptions

        from salesmesh.data.source import storage_client

        bucket_name, prefix = _gcs_prefix(output)
        bucket = storage_client().bucket(bucket_name)
        for path in [*files, staging / MANIFEST]:
            name = prefix + path.relative_to(staging).as_posix()
            try:
                bucket.blob(name).upload_from_filename(str(path), if_generation_match=0)
            except exceptions.PreconditionFailed as exc:
                msg = f"gs://{bucket_name}/{name} already exists: another run is writing {output}"
                raise SourceError(msg) from exc
        return
    target = Path(output)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            destination = target / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        shutil.copyfile(staging / MANIFEST, target / f"{MANIFEST}.tmp")
        (target / f"{MANIFEST}.tmp").replace(target / MANIFEST)
    except OSError as exc:
        raise SourceError(f"cannot write the run to {output}: {exc}") from exc


def summary(manifest: dict[str, Any]) -> str:
    """Console summary of a run: data, model and the backtest table."""
    from salesmesh.forecast import card

    model, data = manifest["model"], manifest["data"]
    snapshot = data.get("snapshot")
    source = data["uri"]
    if snapshot:
        source += f" (snapshot {snapshot['id']}: {len(snapshot['uploads'])} upload(s))"
    lines = [
        f"trained on {data['rows']:,} rows of {source}: {model['series']} series, "
        f"frequency {model['freq']}, horizon {model['horizon']}",
        f"blend: {model['blend_weight_gbm']:.2f} GBM / {1 - model['blend_weight_gbm']:.2f} "
        "ETS+Theta",
        "",
        *card.summary_lines(_table(manifest)),
    ]
    return "\n".join(lines)


def _table(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's figures in the shape :func:`card.summary_lines` reads."""
    plan = manifest.get("metrics_known_plan")
    return {
        "models": manifest["metrics"],
        "known_plan": None if plan is None else {"models": {"salesmesh": plan}},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m salesmesh.train",
        description="Validate a sales file, backtest, train and publish a model run.",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="sales file (local path or gs:// URI) or sales history "
        "(salesmesh-history://BUCKET/MODEL[/SNAPSHOT])",
    )
    parser.add_argument(
        "--output",
        help="run folder: local path or gs:// prefix (default: $AIP_MODEL_DIR, set by Vertex AI)",
    )
    parser.add_argument("--horizon", type=int, default=28, help="periods to forecast (28)")
    parser.add_argument("--origins", type=int, default=3, help="backtest origins (3)")
    parser.add_argument(
        "--map",
        action="append",
        metavar="SOURCE=TARGET",
        help="map a column name to a canonical one; repeatable",
    )
    parser.add_argument(
        "--regressor",
        action="append",
        metavar="NAME",
        help="declare a column known in advance (planned, like price and promo), so the model "
        "reads it on the forecast dates; repeatable, adds to $SALESMESH_REGRESSORS",
    )
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    output = args.output or env.get("AIP_MODEL_DIR")
    if not output:
        parser.error("--output is required when AIP_MODEL_DIR is not set")
    if args.horizon < 1 or args.origins < 1:
        parser.error("--horizon and --origins must be positive")
    from salesmesh.data import Contract, parse_mapping
    from salesmesh.settings import declared_regressors

    try:
        mapping = parse_mapping(args.map or [])
        Contract(regressors=tuple(args.regressor or []))
    except ValueError as exc:
        parser.error(str(exc))
    try:
        regressors = (*declared_regressors(env), *(args.regressor or []))
        manifest = run(args.data, output, args.horizon, args.origins, mapping, None, regressors)
    except MeshError as exc:
        return exit_status("salesmesh.train", exc)
    print(summary(manifest))
    print(f"\nartifact: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
