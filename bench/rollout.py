"""Rollouts at Google Cloud's pace, on a fake clock: short steps only, and a crash anywhere.

    python bench/rollout.py [--deploy-minutes 15] [--json PATH]

Runs the real step engine on the Google Cloud backends (Vertex AI registry and endpoint, Cloud
Monitoring metrics, Cloud Tasks queue, the ledger's compare-and-swap), with the services below
their generated clients faked as in the test suite (``tests/backends/gcp_rollout.py``): a
Vertex AI deployment takes ``--deploy-minutes`` of fake time, the canary serves 100 live
requests a minute, and Cloud Tasks delivers each step when due.

It prints, for a first rollout and a second one through the canary: the steps taken, the fake
time they spanned, and the wall time of the slowest step (target: none over 60 s, the margin an
event-driven function's 540 s limit leaves many times over). Then it kills the function before,
and after, every acting call of the second rollout (a ledger write, a deployment, a traffic
change, an alias, a label, a task) and counts the runs that still ended with exactly one promoted
version at 100 % and the old champion at 0 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from machine import ROOT, report_footer, report_header

sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "backends")]
STEP_TARGET_S = 60.0


def trained_run(folder: Path) -> Path:
    """A real finished training run, small: the fake Vertex AI serves it."""
    from salesmesh.sample import write_sample
    from salesmesh.train import run

    data = folder / "sales.csv"
    write_sample(data, stores=2, products=3, days=300, seed=7)
    run(str(data), str(folder / "run"), horizon=28, origins=2, progress=lambda _: None)
    return folder / "run"


def promoted(cloud: Any) -> bool:
    """Version 2 alone at 100 %, version 1 at 0 %, the ledger idle and in agreement."""
    doc = cloud.ledger()
    champion = cloud.parts["registry"].alias("champion")
    return (
        doc["rollout"] is None
        and doc["versions"].get("2", {}).get("state") == "deployed"
        and cloud.split_by_version() == {"1": 0, "2": 100}
        and champion is not None
        and champion.version_id == "2"
    )


def clean_runs(artifact: Path, deploy_seconds: float) -> dict[str, Any]:
    from gcp_rollout import gcp_rollouts

    with gcp_rollouts(artifact, deploy_seconds=deploy_seconds) as cloud:
        figures = {}
        for run_id, mase in (("r-1", 0.8), ("r-2", 0.7)):
            cloud.ship(run_id, mase)
            before, fake0, calls0 = len(cloud.step_seconds), cloud.vertex.clock.now, cloud.calls
            cloud.run()
            walls = cloud.step_seconds[before:]
            done = cloud.ledger()["rollouts"][-1]
            figures[run_id] = {
                "steps": len(walls),
                "fake_minutes": (cloud.vertex.clock.now - fake0) / 60,
                "max_step_s": max(walls),
                "median_step_s": statistics.median(walls),
                "acting_calls": cloud.calls - calls0,
                "states": [t["state"] for t in done["transitions"]],
            }
        figures["promoted"] = promoted(cloud)
        return figures


def crash_runs(artifact: Path, deploy_seconds: float, calls: int) -> dict[str, Any]:
    from gcp_rollout import second_rollout

    outcomes: list[dict[str, Any]] = []
    longest = 0.0
    for k in range(1, calls + 1):
        for after in (False, True):
            with second_rollout(artifact, deploy_seconds, k, after) as cloud:
                longest = max(longest, *cloud.step_seconds)
                outcomes.append(
                    {"call": k, "after": after, "crashes": cloud.crashes, "ok": promoted(cloud)}
                )
    return {
        "runs": len(outcomes),
        "converged": sum(o["ok"] for o in outcomes),
        "failed": [o for o in outcomes if not o["ok"]],
        "max_step_s": longest,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deploy-minutes", type=float, default=15.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    import logging
    import tempfile

    # the Vertex AI SDK narrates every model upload and endpoint update at INFO
    logging.getLogger("google.cloud.aiplatform").setLevel(logging.WARNING)

    report = report_header(
        "bench/rollout.py", ["google-cloud-aiplatform", "google-cloud-tasks"], args
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="salesmesh-bench-rollout-") as folder:
        artifact = trained_run(Path(folder))
        deploy_seconds = args.deploy_minutes * 60
        clean = clean_runs(artifact, deploy_seconds)
        crashes = crash_runs(artifact, deploy_seconds, clean["r-2"]["acting_calls"])
    lines = [
        f"## A rollout at Vertex AI's pace ({args.deploy_minutes:g}-minute deployments)\n",
        "| rollout | steps | fake time | slowest step | median step | states |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for run_id, name in (("r-1", "first model (no canary)"), ("r-2", "second, via the canary")):
        f = clean[run_id]
        lines.append(
            f"| {name} | {f['steps']} | {f['fake_minutes']:.1f} min | {f['max_step_s']:.3f} s "
            f"| {f['median_step_s'] * 1000:.1f} ms | {' > '.join(f['states'])} |"
        )
    slowest = max(clean["r-1"]["max_step_s"], clean["r-2"]["max_step_s"], crashes["max_step_s"])
    verdict = "PASS" if slowest <= STEP_TARGET_S and clean["promoted"] else "MISS"
    lines.append(
        f"\nSlowest step of all runs: {slowest:.3f} s (target <= {STEP_TARGET_S:g} s): {verdict}"
    )
    survived = crashes["converged"] == crashes["runs"]
    lines.append(
        f"\n## A crash at every acting call of the second rollout\n\n"
        f"{crashes['runs']} runs (before and after each of {clean['r-2']['acting_calls']} "
        f"acting calls): {crashes['converged']} ended with version 2 promoted once and version 1 "
        f"at 0 %: {'PASS' if survived else 'MISS'}"
    )
    lines += [f"  did not converge: {failure}" for failure in crashes["failed"]]
    report |= {"clean": clean, "crashes": crashes, "seconds": time.perf_counter() - started}
    report_footer(report, "\n".join(lines), args.json)
    return 0 if verdict == "PASS" and survived else 1


if __name__ == "__main__":
    sys.exit(main())
