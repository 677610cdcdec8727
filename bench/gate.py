"""The gate's evidence at scale: how big a run's gate.json gets and how long deploy_model takes
to judge two runs, for a business of the size the forecaster is benchmarked at (issue 10).

    .venv/bin/python bench/gate.py [--stores 50] [--products 60] [--days 365] [--json PATH]

Trains once (``python -m salesmesh.train``'s code) on a synthetic business (50 x 60 = 3000
series, 1.1 M rows by default), then times :func:`salesmesh.gate.runs.judge_versions` on that
run against itself in a fresh process, as deploy_model would: both runs' gate.json and
series.csv read and checked against their manifests, the paired comparison and its 2000-resample
bootstrap. Reports the file's size, the judging time and the judging process's peak memory
(the function's memory must hold it). Tables go to stdout, progress to stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import ROOT, business_arguments, report_footer, report_header

JUDGE = """
import json, sys, time
from salesmesh.gate import GateSettings
from salesmesh.gate.runs import judge_versions
from salesmesh.ports import ModelVersion
from salesmesh.rollout import policy
run = sys.argv[1]
metrics = policy.summary(json.load(open(run + "/metrics.json")))
one, two = (ModelVersion(v, run, "", metrics=metrics) for v in ("1", "2"))
start = time.perf_counter()
decision = judge_versions(two, one, GateSettings())
seconds = time.perf_counter() - start
# VmHWM, this address space's peak: ru_maxrss would carry the (training) parent's across exec
status = open("/proc/self/status").read().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak, "mode": decision.evidence["mode"]}))
"""


def main() -> int:
    args = business_arguments(__doc__.splitlines()[0])
    report = report_header("gate evidence at scale", ["pandas", "numpy"], args)
    from salesmesh.sample import write_sample
    from salesmesh.train import run

    with tempfile.TemporaryDirectory(prefix="salesmesh-bench-gate-") as scratch:
        data, output = Path(scratch) / "sales.csv", Path(scratch) / "run"
        write_sample(data, stores=args.stores, products=args.products, days=args.days, seed=3)
        print(f"training on {data} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        run(str(data), str(output), progress=lambda m: print(m, file=sys.stderr, flush=True))
        trained = time.perf_counter() - started
        size = (output / "gate.json").stat().st_size
        rows = sum(1 for _ in data.open()) - 1
        judged = subprocess.run(
            [sys.executable, "-c", JUDGE, str(output)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    figures = json.loads(judged.stdout)
    report["figures"] = {
        "rows": rows,
        "series": args.stores * args.products,
        "train_seconds": round(trained, 1),
        "gate_json_mib": round(size / 2**20, 2),
        "judge_seconds": round(figures["seconds"], 2),
        "judge_peak_mib": round(figures["peak_mib"]),
        "mode": figures["mode"],
    }
    f = report["figures"]
    rendered = "\n".join(
        [
            "FIGURE                                   VALUE",
            f"rows / series                            {f['rows']:,} / {f['series']:,}",
            f"training (backtest + fit + gate.json)    {f['train_seconds']} s",
            f"gate.json                                {f['gate_json_mib']} MiB",
            f"judge two runs (read, pair, bootstrap)   {f['judge_seconds']} s ({f['mode']})",
            f"judging process peak memory              {f['judge_peak_mib']} MiB",
        ]
    )
    report_footer(report, rendered, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
