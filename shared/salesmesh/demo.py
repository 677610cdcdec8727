"""``make demo``: the local mesh end to end on the shipped sample.

Starts the mesh (GCS emulator, train_trigger under functions-framework, event delivery), uploads
the sample to the data bucket, waits for the training run the upload fires, then loads the
published artifact back through its manifest check and prints the model card summary and a
forecast. Later stages add deployment and prediction.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from salesmesh.errors import MeshError

SAMPLE = Path("data/sample_sales.csv")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salesmesh.demo", description=__doc__)
    parser.add_argument("--data", type=Path, default=SAMPLE, help=f"sales file ({SAMPLE})")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for training")
    args = parser.parse_args(argv)
    try:
        return _run(args.data, args.timeout)
    except MeshError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


def _run(data: Path, timeout: float) -> int:
    from salesmesh import runtime, train
    from salesmesh.data import Contract, validate_file
    from salesmesh.local.mesh import Mesh
    from salesmesh.settings import Settings
    from salesmesh.upload import upload

    settings = Settings.from_env()
    print(f"== 1. validate {data}")
    report = validate_file(str(data), Contract(horizon=settings.horizon))
    print(report.to_text().splitlines()[0])
    if not report.ok:
        print(report.to_text())
        return 1

    print("\n== 2. start the local mesh")
    with Mesh(settings, Path.cwd()) as mesh:
        for name, server in mesh.servers.items():
            print(f"    {name} on {server.url}, storage emulator on {mesh.emulator.host}")
        client = mesh.storage_client()
        print(f"\n== 3. upload to gs://{settings.data_bucket}/{settings.upload_prefix}")
        uploaded = upload(data, client, settings.data_bucket, settings.upload_prefix + data.name)
        print(f"    {uploaded['uri']} generation {uploaded['generation']}")

        print("\n== 4. the upload fires train_trigger, which launches a training run")
        run = _wait_for_run(runtime.launcher(settings), uploaded["generation"], timeout)
        if run.state != "succeeded":
            print(f"    run {run.run_id} {run.state}; its log: {run.log}")
            return 1

        print("\n== 5. model card summary (manifest from the model bucket)")
        with tempfile.TemporaryDirectory(prefix="salesmesh-demo-") as folder:
            artifact = _download(client, run.output_uri, Path(folder))
            manifest = __import__("json").loads((artifact / "manifest.json").read_text())
            print(train.summary(manifest))
            _preview(artifact)
    print(
        f"\nthe mesh stopped; runs, logs and the emulated buckets stay under {settings.state_dir}/"
    )
    print("`salesmesh up` starts it again, `salesmesh status` and `salesmesh logs` look inside")
    return 0


def _wait_for_run(launcher: Any, generation: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        runs = [r for r in launcher.list() if r.data_uri.endswith(f"#{generation}")]
        if runs:
            run = runs[0]
            if run.state != seen:
                seen = run.state
                print(f"    run {run.run_id}: {run.state}")
            if run.state.finished:
                return run
        time.sleep(0.5)
    raise MeshError(f"no training run finished within {timeout:.0f} s; see `salesmesh logs`")


def _download(client: Any, output_uri: str, target: Path) -> Path:
    from salesmesh.data.source import split_gcs_uri

    bucket_name, prefix = split_gcs_uri(output_uri.rstrip("/") + "/manifest.json")
    prefix = prefix.removesuffix("manifest.json")
    for blob in client.list_blobs(bucket_name, prefix=prefix):
        destination = target / blob.name.removeprefix(prefix)
        destination.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(destination))
    return target


def _preview(artifact: Path) -> None:
    from salesmesh.forecast import load

    forecast = load(artifact).predict()  # load verifies every file against the manifest
    busiest = forecast.groupby("series_id")["forecast"].sum().idxmax()
    print(
        f"\n== 6. next 7 periods for the busiest series, {busiest} (artifact loaded and verified)"
    )
    for row in forecast[forecast["series_id"] == busiest].head(7).itertuples():
        print(f"    {row.date:%a %Y-%m-%d}  {row.forecast:8.1f} units")


if __name__ == "__main__":
    sys.exit(main())
