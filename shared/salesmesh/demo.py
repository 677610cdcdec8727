"""``make demo``: the local mesh end to end on the shipped sample.

Starts the mesh (GCS emulator, the functions under functions-framework, event delivery, the
endpoint's router), uploads the sample to the data bucket, waits for the training run the upload
fires and prints its model card summary, then waits for deploy_model to register, gate and roll
out the new version, and prints a forecast fetched through the endpoint.
"""

from __future__ import annotations

import argparse
import os
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
    from salesmesh.artifact import fetch
    from salesmesh.data import Contract, validate_file
    from salesmesh.local.mesh import Mesh
    from salesmesh.rollout import history
    from salesmesh.rollout.versions import render_forecast
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
        # this process reads the emulated buckets too (artifact, registry), as any client would
        os.environ["STORAGE_EMULATOR_HOST"] = mesh.emulator.host
        for name, server in mesh.servers.items():
            print(f"    {name} on {server.url}, storage emulator on {mesh.emulator.host}")
        client = mesh.storage_client()
        print(f"\n== 3. upload to gs://{settings.data_bucket}/{settings.upload_prefix}")
        started = time.monotonic()
        uploaded = upload(data, client, settings.data_bucket, settings.upload_prefix + data.name)
        print(f"    {uploaded['uri']} generation {uploaded['generation']}")

        print("\n== 4. the upload fires train_trigger, which launches a training run")
        run = _wait_for_run(runtime.launcher(settings), uploaded["generation"], timeout)
        if run.state != "succeeded":
            print(f"    run {run.run_id} {run.state}; its log: {run.log}")
            return 1

        print("\n== 5. model card summary (artifact verified against its manifest)")
        with tempfile.TemporaryDirectory(prefix="salesmesh-demo-") as folder:
            _, manifest = fetch(run.output_uri, Path(folder))
        print(train.summary(manifest))

        print("\n== 6. the manifest fires deploy_model: register, gate, canary, promote")
        version = _wait_for_version(runtime.ledger(settings), run.run_id, timeout)
        took = time.monotonic() - started
        endpoint = runtime.endpoint(settings)
        print(f"    version {version['version_id']}: {version['state']}")
        print(f"    traffic split {endpoint.traffic()}  ({took:.1f} s after the upload)")
        if version["state"] != "deployed":
            print("    not deployed; `salesmesh logs` says why")
            return 1

        series = _busiest(data)
        print(f"\n== 7. salesmesh predict --store {series[0]} --product {series[1]}")
        instance = {"store_id": series[0], "product_id": series[1], "horizon": settings.horizon}
        print(render_forecast(endpoint.predict([instance])))

        print("\n== 8. salesmesh history: the rollout ledger's story")
        print(history.render(history.gather(runtime.ledger(settings).read().document)))
    print(
        f"\nthe mesh stopped; runs, logs and the emulated buckets stay under {settings.state_dir}/"
    )
    print(
        "`salesmesh up` starts it again with the deployed models; `salesmesh versions`, "
        "`salesmesh history`, `salesmesh predict`, `salesmesh status` and `salesmesh logs` "
        "look inside"
    )
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


def _wait_for_version(ledger: Any, run_id: str, timeout: float) -> dict[str, Any]:
    """The ledger's record of the run's version once its rollout is decided."""
    from salesmesh.rollout.record import FINAL_VERSION_STATES

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = ledger.read().document
        version: dict[str, Any] = doc["versions"].get(doc["runs"].get(run_id), {})
        if version.get("state") in FINAL_VERSION_STATES:
            return version
        time.sleep(0.5)
    raise MeshError(f"run {run_id} was not deployed within {timeout:.0f} s; see `salesmesh logs`")


def _busiest(data: Path) -> tuple[str, str]:
    """The series with the most sales in the uploaded file: the one a demo shows first."""
    from salesmesh.data import Contract, load_sales

    loaded = load_sales(str(data), Contract())
    frame = loaded.frame
    assert frame is not None  # the run trained on it, so it passed the contract
    totals = frame.groupby(["store_id", "product_id"])["sales"].sum()
    best: tuple[Any, Any] = totals.idxmax()  # type: ignore[assignment]  # a MultiIndex key
    return str(best[0]), str(best[1])


if __name__ == "__main__":
    sys.exit(main())
