"""Incident published -> traffic restored, on the local mesh (issue 9).

    .venv/bin/python bench/alerts.py [--rounds 5] [--json PATH]

An in-process ``Mesh`` (the official Pub/Sub emulator when the machine has it, else the
fallback; the table says which) serves version 1, trained once on a small sample. Each round
publishes a copy of that run as a new version (it ties with the champion, so it passes the
gate), waits until it serves 100 %, then publishes a Cloud Monitoring incident (schema 1.2)
about it to the alerts topic, as the monitor or Cloud Monitoring would, and times:

- **published -> traffic restored**: from just before ``publish`` until the endpoint's split
  (read every 5 ms) gives version 1 100 % again. Target: <= 2 s;
- published -> the rollback written in the ledger (its entry's time), for where the time goes:
  the rest is putting the split on the endpoint.

``--in-process`` runs the mesh on the in-process Pub/Sub fallback instead of the emulator.

Tables go to stdout, progress to stderr; ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from machine import report_footer, report_header
from mesh import fmt, markdown_table, parse_rfc3339, say, summarize, verdict, wait_until

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 2.0
ENV = {
    "SALESMESH_CANARY_SECONDS": "0.5",
    "SALESMESH_ROLLBACK_COOLDOWN": "0",
}


def train_once(folder: Path) -> Path:
    """A small sample trained to ``folder/run``: the run every round deploys a copy of."""
    data, run = folder / "sales.csv", folder / "run"
    subprocess.run(
        [sys.executable, "-m", "salesmesh.cli", "sample-data", str(data), "--stores", "2",
         "--products", "3", "--days", "300", "--seed", "7"],
        check=True, capture_output=True,
    )  # fmt: skip
    say("training the run every round deploys (a few seconds)")
    subprocess.run(
        [sys.executable, "-m", "salesmesh.train", "--data", str(data), "--output", str(run)],
        check=True,
        capture_output=True,
    )
    return run


def publish_run(client: Any, bucket: str, folder: Path, run_id: str) -> None:
    """Upload a run folder as the trainer does, manifest last."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "manifest.json")
    for path in [*files, folder / "manifest.json"]:
        client.bucket(bucket).blob(f"runs/{run_id}/{path.name}").upload_from_filename(str(path))


def serving(endpoint: Any, version: str) -> str | None:
    """The deployed model of ``version`` if it takes 100 % of the traffic."""
    split = endpoint.traffic()
    for model in endpoint.deployed():
        if model.version_id == version and split.get(model.id) == 100:
            return str(model.id)
    return None


def incident_about(model: str, number: int) -> bytes:
    from salesmesh.alerts import policies
    from salesmesh.alerts.incident import Incident, State, to_payload

    latency = policies.load()[0]
    found = Incident(
        incident_id=f"bench-{number}-{time.time_ns()}",
        state=State.OPEN,
        started_at=int(time.time()),
        policy_name=latency.display_name,
        condition_name=latency.display_name,
        summary=f"bench: p99 of {model} above 500 ms",
        threshold_value=500.0,
        observed_value=900.0,
        endpoint_id="salesmesh",
        deployed_model_id=model,
    )
    return to_payload(found, latency)


def one_round(number: int, mesh: Any, run: Path) -> dict[str, Any]:
    from salesmesh import runtime

    settings = mesh.settings
    endpoint, ledger = runtime.endpoint(settings), runtime.ledger(settings)
    publish_run(mesh.storage_client(), settings.model_bucket, run, f"r-bench-{number}")

    def deployed() -> str | None:
        doc = ledger.read().document
        version = doc["runs"].get(f"r-bench-{number}")
        state = doc["versions"].get(version, {}).get("state") if version else None
        if state in ("gated", "failed"):
            raise RuntimeError(f"round {number}: version {version} {state}")
        return version if state == "deployed" and serving(endpoint, version) else None

    version = wait_until(deployed, 120, f"round {number}'s version at 100 %")
    model = serving(endpoint, version)
    assert model is not None
    payload = incident_about(model, number)
    topic = mesh.pubsub.topic("alerts")
    published = time.time()
    topic.publish(payload)
    wait_until(lambda: serving(endpoint, "1"), 30, "version 1 back at 100 %")
    restored = time.time()
    doc = ledger.read().document
    found = json.loads(payload)["incident"]["incident_id"]
    entry = doc["incidents"][found]
    (decided,) = [r for r in doc["rollbacks"] if r.get("incident") == found]
    say(f"round {number}: version {version} -> 1 in {restored - published:.3f} s")
    return {
        "version": version,
        "action": entry["action"],
        "published_to_restored_s": restored - published,
        "published_to_decided_s": parse_rfc3339(decided["at"]) - published,
    }


def bench(rounds: int, in_process: bool) -> dict[str, Any]:
    from salesmesh.local.mesh import Mesh
    from salesmesh.settings import Settings

    with tempfile.TemporaryDirectory(prefix="salesmesh-bench-alerts-") as tmp:
        run = train_once(Path(tmp))
        os.environ.update(ENV, SALESMESH_STATE_DIR=str(Path(tmp) / "state"))
        settings = Settings.from_env()
        with Mesh(settings, ROOT, pubsub_emulator=False if in_process else None) as mesh:
            os.environ["STORAGE_EMULATOR_HOST"] = mesh.emulator.host
            pubsub = mesh.pubsub.summary()
            publish_run(mesh.storage_client(), settings.model_bucket, run, "r-bench-first")
            from salesmesh import runtime

            endpoint = runtime.endpoint(settings)
            wait_until(lambda: serving(endpoint, "1"), 120, "version 1 at 100 %")
            samples = [one_round(i, mesh, run) for i in range(rounds)]
    return {"pubsub": pubsub, "samples": samples}


def render(report: dict[str, Any]) -> str:
    samples = report["samples"]
    rows = []
    for key, label in (
        ("published_to_restored_s", "incident published -> traffic restored"),
        ("published_to_decided_s", "published -> rollback written in the ledger"),
    ):
        figures = summarize([s[key] for s in samples])
        limit = TARGET_S if key == "published_to_restored_s" else None
        rows.append(
            [
                f"{label}, n={figures['n']}",
                fmt(figures["median"], unit=" s", digits=3),
                fmt(figures["max"], unit=" s", digits=3),
                f"<= {TARGET_S:g} s" if limit else "",
                verdict(figures["max"], limit) + " (max)" if limit else "",
            ]
        )
    table = markdown_table(["", "median", "max", "target", "verdict"], rows)
    return f"Pub/Sub: {report['pubsub']}\n\n{table}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--in-process", action="store_true", help="the Pub/Sub fallback")
    args = parser.parse_args(argv)
    report = report_header("bench/alerts.py: incident -> rollback", ["google-cloud-pubsub"], args)
    report.update(bench(args.rounds, args.in_process))
    report_footer(report, render(report), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
