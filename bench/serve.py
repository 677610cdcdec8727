"""Serving latency through the local router, and upload -> new version at 100 % (issue 4).

    .venv/bin/python bench/serve.py [--rate 200] [--seconds 30] [--clients 8] [--artifact DIR]
                                    [--runs 1] [--skip-latency] [--skip-rollout] [--json PATH]

1. Latency: the sample trained to the GCS emulator (or ``--artifact``, a local run folder),
   deployed behind the router. ``--clients`` keep-alive threads send 28-day forecasts of the
   sample's series in turn at times scheduled at ``--rate`` (open loop), through the router,
   then straight to the server. Latency runs from the *scheduled* time, so a stall counts
   against every request it delays; 2 s of warm-up are not counted. Target: p99 <= 10 ms.
2. Rollout: on an in-process ``Mesh``, the sample uploaded to ``uploads/`` until the registry
   labels its version ``deployed`` and the endpoint gives it 100 %, step by step. ``--runs``
   repeat on one mesh: the first lands on an empty endpoint (no canary), later ones replace
   the champion through the canary. Target: <= 30 s.

Tables go to stdout, progress to stderr; ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import math
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from machine import report_footer, report_header
from mesh import (
    cpu_seconds,
    fmt,
    markdown_table,
    mesh_env,
    parse_rfc3339,
    process_tree,
    say,
    self_cpu_seconds,
    verdict,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CSV = ROOT / "data" / "sample_sales.csv"
P99_TARGET_MS = 10.0
ROLLOUT_TARGET_S = 30.0
STEP_TARGET_S = 2.0  # issue 8: the longest single rollout step, locally
HORIZON = 28
WARMUP_S = 2.0
ROUTE = "/v1/endpoints/salesmesh:predict"
JSON = {"Content-Type": "application/json"}
RUN_TIMEOUT_S = 600.0
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0))
Done = tuple[int, float, float, float, int | str]  # index, scheduled, sent, answered, outcome


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """Nearest-rank percentiles of ``values``; None where there are none."""
    ordered = sorted(values)
    rank = {name: max(1, math.ceil(p * len(ordered) / 100)) for name, p in PERCENTILES}
    return {name: ordered[r - 1] if ordered else None for name, r in rank.items()}


def sample_bodies() -> list[bytes]:
    """One request body per series of the sample, in a fixed order."""
    with SAMPLE_CSV.open(newline="") as handle:
        series = sorted({(row["store_id"], row["product_id"]) for row in csv.DictReader(handle)})
    return [
        json.dumps({"instances": [{"store_id": s, "product_id": p, "horizon": HORIZON}]}).encode()
        for s, p in series
    ]


def open_loop(label: str, pids: Mapping[str, int], port: int, path: str, args: Any) -> Any:
    """Requests sent at scheduled times by ``args.clients`` keep-alive threads: the latency
    figures, and the CPU ``pids`` (with their children) and this process used, in % of a core."""
    trees = {name: process_tree(pid) for name, pid in pids.items()}
    before = {name: sum(map(cpu_seconds, tree)) for name, tree in trees.items()}
    own, started = self_cpu_seconds(), time.perf_counter()
    bodies, rate = sample_bodies(), args.rate
    warm, total = int(WARMUP_S * rate), int((WARMUP_S + args.seconds) * rate)
    counter, done = iter(range(total)), list[Done]()  # a range iterator's next() is atomic
    t0 = time.perf_counter() + 0.1  # every thread has started by then

    def client() -> None:
        connection: http.client.HTTPConnection | None = None
        mine: list[Done] = []
        outcome: int | str
        while (i := next(counter, None)) is not None:
            scheduled = t0 + i / rate
            if (delay := scheduled - time.perf_counter()) > 0:
                time.sleep(delay)
            sent, outcome = time.perf_counter(), "no answer"
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("POST", path, bodies[i % len(bodies)], JSON)
                response = connection.getresponse()
                response.read()
                outcome = response.status
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
            if outcome != 200 and connection is not None:
                connection.close()  # a fresh connection for the next request
                connection = None
            mine.append((i, scheduled, sent, time.perf_counter(), outcome))
        if connection is not None:
            connection.close()
        done.extend(mine)  # one extend per thread: atomic under the GIL

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = {n: 100 * (sum(map(cpu_seconds, t)) - before[n]) / wall for n, t in trees.items()}
    counted = [d for d in done if d[0] >= warm]
    errors = Counter(str(d[4]) for d in counted if d[4] != 200)
    first, last = min(d[1] for d in counted), max(d[3] for d in counted)
    latency = percentiles([(d[3] - d[1]) * 1000 for d in counted])
    say(f"{label}: {len(counted)} requests, p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f}")
    return {
        "cpu_pct": {**cpu, "load generator": 100 * (self_cpu_seconds() - own) / wall},
        "requests": len(counted),
        "achieved_rate": len(counted) / (last - first),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors) or "none",
        "latency_ms": latency,
        "from_send_ms": percentiles([(d[3] - d[2]) * 1000 for d in counted]),
        "send_lag_ms": percentiles([(d[2] - d[1]) * 1000 for d in counted]),
    }


def bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    from salesmesh import train
    from salesmesh.backends.local_endpoint import LocalEndpoint
    from salesmesh.local.emulator import StorageEmulator
    from salesmesh.local.router import RouterProcess
    from salesmesh.ports import ModelVersion, rfc3339

    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="salesmesh-bench-serve-") as tmp,
        StorageEmulator(None) as emulator,
    ):
        state = Path(tmp) / "state"
        storage = {"STORAGE_EMULATOR_HOST": emulator.host, "GOOGLE_CLOUD_PROJECT": "local"}
        os.environ.update(storage)  # for train.run's storage client, which reads it per call
        artifact = str(args.artifact.resolve()) if args.artifact else ""
        if not artifact:
            emulator.ensure_buckets(["salesmesh-models"])
            artifact, started = "gs://salesmesh-models/runs/bench-serve", time.perf_counter()
            train.run(str(SAMPLE_CSV), artifact, horizon=HORIZON, progress=say)
            result["training_s"] = time.perf_counter() - started
        result["artifact"] = artifact
        router = RouterProcess(state, "salesmesh")
        endpoint = LocalEndpoint(state, env={**mesh_env(state), **storage})
        try:
            router.start()
            started = time.perf_counter()
            endpoint.deploy(ModelVersion("1", artifact, rfc3339()), 0)
            result["deploy_s"] = time.perf_counter() - started
            model = json.loads((endpoint.dir / "endpoint.json").read_text())["deployed_models"][0]
            answer = endpoint.predict(json.loads(sample_bodies()[0])["instances"])  # via router
            if len(answer["predictions"][0]["forecast"]) != HORIZON:
                raise RuntimeError(f"the probe was not answered with {HORIZON} days: {answer}")
            assert router.process is not None
            pids = {"router": router.process.pid, "server": int(model["pid"])}
            port = int(router.url.rpartition(":")[2])
            result["router"] = open_loop("router", pids, port, ROUTE, args)
            with urllib.request.urlopen(f"{router.url}/v1/endpoints/salesmesh/stats") as stats:
                result["router_stats"] = json.load(stats)
            del pids["router"]
            result["direct"] = open_loop("direct", pids, int(model["port"]), "/predict", args)
        finally:
            try:
                router.stop()
            finally:
                endpoint.stop_servers()
    return result


def _step_seconds(log_file: Path, run: str) -> list[float]:
    """Wall time of every rollout step deploy_model took for ``run``, from the mesh's log."""
    from salesmesh import logs

    return [
        float(record["step_seconds"])
        for record in logs.read(log_file, run_id=run)
        if "step_seconds" in record
    ]


def rollout(i: int, mesh: Any, registry: Any, endpoint: Any) -> dict[str, Any]:
    """One upload of the sample, followed until its version takes 100 % of the traffic."""
    from salesmesh import runtime
    from salesmesh.events import StorageObject, run_id

    settings, known = mesh.settings, {d.id for d in endpoint.deployed()}
    client = mesh.storage_client()
    blob = client.bucket(settings.data_bucket).blob(f"{settings.upload_prefix}bench_{i}.csv")
    wall0 = time.time()
    blob.upload_from_filename(str(SAMPLE_CSV), content_type="text/csv")
    run = run_id(StorageObject(settings.data_bucket, blob.name, str(blob.generation)))
    launcher = runtime.launcher(settings)
    queued = wait_until(lambda: launcher.get(run), 60, f"run {run} to be queued")
    say(f"rollout #{i + 1}: run {run} queued after {time.time() - wall0:.2f} s; training")
    record_file = mesh.state_dir / "runs" / run / "run.json"  # TrainingRun has no end stamp

    def ended() -> dict[str, Any] | None:
        record: dict[str, Any] = json.loads(record_file.read_text())
        return record if record.get("ended") else None

    record = wait_until(ended, RUN_TIMEOUT_S, f"run {run} to end")
    if record["state"] != "succeeded":
        raise RuntimeError(f"run {run} {record['state']}; see {record['log']}")

    ledger = runtime.ledger(settings, client=mesh.storage_client)

    def at_full() -> dict[str, Any] | None:
        traffic = endpoint.traffic()
        if not any(traffic.get(d.id) == 100 for d in endpoint.deployed() if d.id not in known):
            return None  # the endpoint file is cheap to read; the ledger only after this
        doc = ledger.read().document
        version: dict[str, Any] = doc["versions"].get(doc["runs"].get(run), {})
        if version.get("state") in ("gated", "failed"):
            raise RuntimeError(f"run {run}'s version ended {version['state']}: {version}")
        return version if version.get("state") == "deployed" else None

    version = wait_until(at_full, 120, f"run {run} to take 100 % of the traffic")
    seen = time.time()
    name = queued.output_uri.split("/", 3)[3] + "/manifest.json"
    written = client.bucket(settings.model_bucket).get_blob(name).time_created.timestamp()
    doc = ledger.read().document
    (done,) = [r for r in doc["rollouts"] if r["run_id"] == run]
    at = {t["state"]: parse_rfc3339(t["at"]) for t in done["transitions"]}
    say(f"rollout #{i + 1}: version {version['version_id']} at 100 % after {seen - wall0:.2f} s")
    step_times = _step_seconds(mesh.state_dir / "logs" / "mesh.jsonl", run)
    steps_s = {
        "upload -> queued": parse_rfc3339(queued.created) - wall0,
        "queued -> manifest": written - parse_rfc3339(queued.created),
        "manifest -> rollout": at["registered"] - written,
        "deploy": at.get("canary", at["promoting"]) - at["deploying"],
        "canary": at["promoting"] - at["canary"] if "canary" in at else 0.0,
        "promote": at["done"] - at["promoting"],
        "100 % -> seen": seen - at["done"],
        "total": seen - wall0,
        "run created -> ended": parse_rfc3339(record["ended"]) - parse_rfc3339(queued.created),
        "longest step": max(step_times, default=0.0),
    }
    return {
        "run": run,
        "version": version["version_id"],
        "with_canary": "canary" in at,
        "steps": len(step_times),
        "steps_s": steps_s,
    }


def bench_rollout(runs: int) -> dict[str, Any]:
    from salesmesh import runtime
    from salesmesh.local.mesh import Mesh
    from salesmesh.settings import Settings

    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="salesmesh-bench-rollout-") as tmp:
        settings = Settings(state_dir=Path(tmp) / "state")
        with Mesh(settings, ROOT) as mesh:
            os.environ["STORAGE_EMULATOR_HOST"] = mesh.emulator.host  # for runtime.registry
            registry, endpoint = runtime.registry(settings), runtime.endpoint(settings)
            samples += [rollout(i, mesh, registry, endpoint) for i in range(runs)]
    return {"canary_wait_s": settings.canary_wait, "samples": samples}


def render(report: Mapping[str, Any], args: argparse.Namespace) -> str:
    rows, out = [], []
    if latency := report.get("latency"):
        p99, n = latency["router"]["latency_ms"]["p99"], latency["router"]["requests"]
        rows.append([f"p99 latency through the router at {args.rate:g} req/s, n={n}"])
        rows[-1] += [fmt(p99, unit=" ms"), f"<= {P99_TARGET_MS:g} ms", verdict(p99, P99_TARGET_MS)]
        names = [name for name, _ in PERCENTILES]
        phases = {"router": "through the router", "direct": "straight to the server"}
        table = [
            [label, str(latency[key]["requests"]), f"{latency[key]['achieved_rate']:.1f}/s"]
            + [fmt(latency[key]["latency_ms"][name]) for name in names]
            + [str(latency[key]["errors"]), fmt(latency[key]["send_lag_ms"]["p99"])]
            for key, label in phases.items()
        ]
        for model, stats in latency["router_stats"].get("deployed_models", {}).items():
            w = stats["window"]
            table.append(
                [f"router's own stats ({model})", str(w["requests"]), "", fmt(w["p50_ms"])]
            )
            table[-1] += ["", fmt(w["p99_ms"]), "", fmt(w["max_ms"]), str(w["errors"]), ""]
        ms = latency["router"]["latency_ms"], latency["direct"]["latency_ms"]
        cpu = "; ".join(
            f"{phases[k]}: " + ", ".join(f"{n} {v:.0f} %" for n, v in latency[k]["cpu_pct"].items())
            for k in phases
        )
        out += [
            f"\n## Serving latency ({args.rate:g} req/s open loop for {args.seconds:g} s, "
            f"{args.clients} keep-alive clients)\n",
            markdown_table(
                ["path", "requests", "achieved", *(f"{n} ms" for n in names), "errors", "lag p99"],
                table,
            ),
            f"\nFrom scheduled send to whole answer; `lag`: how late the generator sent. Router "
            f"overhead {ms[0]['p50'] - ms[1]['p50']:.2f} ms at p50, "
            f"{ms[0]['p99'] - ms[1]['p99']:.2f} ms at p99. The router's own stats span its last "
            f"60 s (warm-up included). CPU, % of a core: {cpu}. Errors: "
            f"{latency['router']['error_kinds']} / "
            f"{latency['direct']['error_kinds']}. Served {latency['artifact']}.",
        ]
    if rollouts := report.get("rollout"):
        worst, n = max(s["steps_s"]["total"] for s in rollouts["samples"]), len(rollouts["samples"])
        rows.append([f"upload -> new version at 100 % (worst of {n})", fmt(worst, unit=" s")])
        rows[-1] += [f"<= {ROLLOUT_TARGET_S:g} s", verdict(worst, ROLLOUT_TARGET_S)]
        longest = max(s["steps_s"]["longest step"] for s in rollouts["samples"])
        rows.append([f"longest single rollout step (of {n} rollouts)", fmt(longest, unit=" s")])
        rows[-1] += [f"<= {STEP_TARGET_S:g} s", verdict(longest, STEP_TARGET_S)]
        steps = list(rollouts["samples"][0]["steps_s"])
        table = [
            [f"#{i + 1} v{s['version']} ({'canary' if s['with_canary'] else 'first'})"]
            + [fmt(s["steps_s"][key], unit=" s") for key in steps]
            for i, s in enumerate(rollouts["samples"])
        ]
        out += [
            f"\n## Upload -> new version at 100 % (canary wait {rollouts['canary_wait_s']:g} s)\n",
            markdown_table(["run", *steps], table),
            "\n`manifest -> rollout`: delivery, fetch, verify, register, queue, gate (the ledger's "
            "`registered`). `deploy`: deployment started until healthy and the canary opened "
            "(or promotion, for a first model). `canary`: the canary's wait, extended while it "
            "lacks traffic, to its verdict. `promote`: 100 %, aliases, retirement. `seen`: this "
            "script's poll. `longest step`: the longest single rollout step deploy_model took.",
        ]
    targets = markdown_table(["measure", "measured", "target", "verdict"], rows)
    return "\n".join(["## Targets\n", targets, *out])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (200)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds (30)")
    parser.add_argument("--clients", type=int, default=8, help="keep-alive connections (8)")
    parser.add_argument("--artifact", type=Path, help="serve this local run folder, no training")
    parser.add_argument("--runs", type=int, default=1, help="uploads rolled out (1)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-rollout", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)

    report = report_header(
        "salesmesh serving benchmark", ("salesmesh", "gunicorn", "gcp-storage-emulator"), args
    )

    if not args.skip_latency:
        say(f"latency: {args.rate:g} req/s for {args.seconds:g} s, router then direct")
        report["latency"] = bench_latency(args)
    if not args.skip_rollout:
        say(f"rollout: {args.runs} upload(s) of {SAMPLE_CSV.name}")
        report["rollout"] = bench_rollout(args.runs)
    report_footer(report, render(report, args), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
