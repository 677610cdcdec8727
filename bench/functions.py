"""How much memory each Cloud Function needs: the figures terraform/functions.tf sizes them by.

    .venv/bin/python bench/functions.py [--stores 50] [--products 60] [--days 365] [--json PATH]

Each function runs from its deploy package (``functions/build.py``'s ``build/functions/<name>``)
in a fresh process, with what a cold gen2 instance on Google Cloud imports: its ``main.py`` and
the Google Cloud SDKs its gcp backends import on first use (Vertex AI, Cloud Monitoring, Cloud
Tasks, Pub/Sub, Cloud Storage). Its peak resident memory is reported (``VmHWM``: ``ru_maxrss``
would carry this parent's peak into the child across fork and exec):

- **cold**: the imports alone, for every function;
- **train_trigger, full re-export**: handling one upload of the whole business (50 x 60 series
  x 365 days, 1.1 M rows by default) into an empty sales history, as the first upload or a
  re-export under ``replace/`` is: read and validate the CSV, merge, write the Parquet
  snapshot, claim the pending run and launch it;
- **train_trigger, one store's week**: the same history, then a daily-style increment.

The buckets are the Cloud Storage emulator, served by this (the parent) process, so the
function's figure holds only the function. The training launcher is the port's smallest
implementation that records what it is asked (a Vertex AI job would run elsewhere anyway).
deploy_model's heaviest work, judging two runs' gate evidence, is measured by bench/gate.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import ROOT, business_arguments, report_footer, report_header

SDKS = {
    "train_trigger": ["google.cloud.aiplatform", "google.cloud.pubsub_v1", "google.cloud.storage"],
    "deploy_model": [
        "google.cloud.aiplatform",
        "google.cloud.monitoring_v3",
        "google.cloud.tasks_v2",
        "google.cloud.storage",
    ],
    "alert_handler": ["google.cloud.aiplatform", "google.cloud.tasks_v2", "google.cloud.storage"],
}

CHILD = """
import importlib, json, sys, time
from pathlib import Path
package, sdks, work = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, package)
def peak():
    # VmHWM, the peak of this address space: ru_maxrss would carry the forking parent's peak
    # across exec
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
importlib.import_module("main")
for name in sdks:
    importlib.import_module(name)
figures = {"cold_mib": peak()}
if work:
    from salesmesh import events, intake
    from salesmesh.data.source import storage_client
    from salesmesh.logs import capture
    from salesmesh.ports import RunState, TrainingRun
    from salesmesh.settings import Settings

    class Recorded:
        def __init__(self):
            self.runs = {}
        def launch(self, request):
            run = TrainingRun(request.run_id, RunState.QUEUED, request.data_uri,
                              request.output_uri, "now")
            return self.runs.setdefault(request.run_id, run)
        def get(self, run_id):
            return self.runs.get(run_id)
        def list(self):
            return list(self.runs.values())

    settings = Settings(**{**work["settings"], "state_dir": Path(work["settings"]["state_dir"])})
    launcher = Recorded()
    for name in work["uploads"]:
        blob = storage_client().bucket(settings.data_bucket).get_blob(name)
        started = time.perf_counter()
        outcome = intake.handle_upload(
            events.StorageObject(settings.data_bucket, name, str(blob.generation)),
            settings, launcher, storage_client, capture("train_trigger"))
        figures[name] = {"peak_mib": peak(), "seconds": time.perf_counter() - started,
                         "action": outcome.action}
print(json.dumps(figures))
"""


def _run(package: Path, function: str, work: dict[str, object], env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(package), json.dumps(SDKS[function]), json.dumps(work)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{function} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    args = business_arguments(__doc__.splitlines()[0])
    report = report_header("the functions' memory", ["pandas", "google-cloud-aiplatform"], args)
    from salesmesh.local.emulator import StorageEmulator
    from salesmesh.sample import generate

    with tempfile.TemporaryDirectory(prefix="salesmesh-bench-functions-") as scratch:
        out = Path(scratch) / "packages"
        subprocess.run(
            [sys.executable, str(ROOT / "functions" / "build.py"), "--out", str(out)],
            check=True,
            capture_output=True,
        )
        emulator = StorageEmulator(None)
        emulator.start()
        try:
            buckets = {
                "data_bucket": "b-data",
                "model_bucket": "b-models",
                "state_bucket": "b-state",
            }
            emulator.ensure_buckets(buckets.values())
            env = {**os.environ, "STORAGE_EMULATOR_HOST": emulator.host}
            os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
            from salesmesh.data.source import storage_client

            print("writing the uploads ...", file=sys.stderr, flush=True)
            sales = generate(stores=args.stores, products=args.products, days=args.days, seed=3)
            data = storage_client().bucket(buckets["data_bucket"])
            data.blob("uploads/full.csv").upload_from_string(sales.to_csv(index=False))
            # one store's last week sent again, as a daily export re-sends recent days
            week = sales[sales["store_id"] == sales["store_id"].iloc[0]].tail(args.products * 7)
            data.blob("uploads/week.csv").upload_from_string(week.to_csv(index=False))
            settings = {**buckets, "horizon": 28, "state_dir": str(Path(scratch) / "state")}
            figures: dict[str, object] = {"rows": len(sales), "series": args.stores * args.products}
            for function in ("train_trigger", "deploy_model", "alert_handler"):
                print(f"{function} ...", file=sys.stderr, flush=True)
                work = (
                    {"settings": settings, "uploads": ["uploads/full.csv", "uploads/week.csv"]}
                    if function == "train_trigger"
                    else {}
                )
                figures[function] = _run(out / function, function, work, env)
        finally:
            emulator.stop()
    report["figures"] = figures
    t = figures["train_trigger"]
    assert isinstance(t, dict)
    lines = ["FUNCTION / WORK                                PEAK MiB   SECONDS"]
    for function in ("train_trigger", "deploy_model", "alert_handler"):
        f = figures[function]
        assert isinstance(f, dict)
        lines.append(f"{function + ', cold (main.py and its SDKs)':<46} {f['cold_mib']:>8.0f}")
    full, week = t["uploads/full.csv"], t["uploads/week.csv"]
    lines.append(
        f"{'train_trigger, full re-export':<46} {full['peak_mib']:>8.0f} {full['seconds']:>9.1f}"
    )
    lines.append(
        f"{'train_trigger, then one store week':<46} {week['peak_mib']:>8.0f} "
        f"{week['seconds']:>9.1f}"
    )
    lines.append(
        f"\n({figures['rows']:,} rows, {figures['series']:,} series; peaks are cumulative)"
    )
    report_footer(report, "\n".join(lines), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
