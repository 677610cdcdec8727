"""``salesmesh demo`` (``make demo``): the whole chain, told in one command on the local mesh.

In a fresh state folder (``<state dir>/demo``, emptied first): start the mesh; upload the
shipped sample without its last 28 days, which trains version 1 and deploys it; upload the whole
sample (28 days newer), which trains version 2 and rolls it out through a canary; make version 2
slow with the local fault switch while traffic flows; the local monitor sees its p99 latency
over 500 ms and publishes an incident to the alerts topic, alert_handler rolls traffic back to
version 1; stop the mesh. Then print the timeline, every hop timed (``--json``: ``stages:
[{name, started_at, finished_at, seconds}]`` and ``ok``).

The alert policies' windows are scaled down (``SALESMESH_ALERT_SCALE``, default here 0.05: the
60 s windows become 3 s) so the story takes a minute or two, not ten; the thresholds are the
ones Terraform sets on Google Cloud.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salesmesh.errors import MeshError
from salesmesh.ports import rfc3339

SAMPLE = Path("data/sample_sales.csv")
NEWER_DAYS = 28  # version 2 sees this many more days than version 1
SLOW_MS = 800.0  # the fault: well over the 500 ms p99 threshold
DEMO_ENV = {
    "SALESMESH_ALERT_SCALE": "0.05",
    # one upload at a time: a run need not wait for a burst to settle
    "SALESMESH_HISTORY_QUIET": "1",
}


@dataclass
class Stage:
    name: str
    started_at: float
    finished_at: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        end = self.finished_at
        return {
            "name": self.name,
            "started_at": _text(self.started_at),
            "finished_at": None if end is None else _text(end),
            "seconds": None if end is None else round(end - self.started_at, 3),
            "detail": self.detail,
        }


@dataclass
class Timeline:
    """The demo's stages in order; printed as it goes unless ``quiet``."""

    quiet: bool = False
    stages: list[Stage] = field(default_factory=list)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        self.say(f"\n== {len(self.stages) + 1}. {name}")
        stage = Stage(name, time.time())
        self.stages.append(stage)
        yield stage
        if stage.finished_at is None:
            stage.finished_at = time.time()
        self.say(f"   {stage.finished_at - stage.started_at:.2f} s  {stage.detail}".rstrip())

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def render(self) -> str:
        if not self.stages:
            return "no stage ran"
        origin = self.stages[0].started_at
        width = max(len(stage.name) for stage in self.stages)
        rows = [f"{'STAGE':<{width}} {'START':>8} {'END':>8} {'TOOK':>8}"]
        for stage in self.stages:
            end = stage.finished_at
            start = f"{stage.started_at - origin:>7.2f}s"
            if end is None:
                rows.append(f"{stage.name:<{width}} {start}        -        -")
            else:
                took = end - stage.started_at
                rows.append(f"{stage.name:<{width}} {start} {end - origin:>7.2f}s {took:>7.2f}s")
        return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m salesmesh.demo``: the same as ``salesmesh demo``."""
    parser = argparse.ArgumentParser(prog="salesmesh demo", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", type=Path, default=Path(), help="the checkout holding functions/ (default .)"
    )
    parser.add_argument("--data", type=Path, help=f"sales file (default ROOT/{SAMPLE})")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for each hop (300)"
    )
    parser.add_argument("--json", action="store_true", help="print only the timeline as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the story; 0 when every hop happened, 1 otherwise (the timeline says where)."""
    timeline = Timeline(quiet=args.json)
    ok = False
    root = args.root.resolve()
    try:
        if not (root / "functions").is_dir():
            raise MeshError(
                f"{root} holds no functions/ folder: run the demo from the salesmesh checkout, "
                "or pass --root CHECKOUT"
            )
        ok = _story(args.data or root / SAMPLE, root, args.timeout, timeline)
    except MeshError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps({"stages": [s.to_json() for s in timeline.stages], "ok": ok}, indent=2))
    elif timeline.stages:
        print("\n== timeline (seconds from the start)\n" + timeline.render())
        print("\nok" if ok else "\nthe demo did not finish its story: see above")
    return 0 if ok else 1


def _story(data: Path, root: Path, timeout: float, timeline: Timeline) -> bool:
    from salesmesh import runtime
    from salesmesh.data import Contract, validate_file
    from salesmesh.local.mesh import Mesh
    from salesmesh.settings import Settings

    base = Settings.from_env()
    state = Path(base.state_dir) / "demo"
    shutil.rmtree(state, ignore_errors=True)
    for name, value in DEMO_ENV.items():
        os.environ.setdefault(name, value)
    os.environ["SALESMESH_STATE_DIR"] = str(state)
    settings = Settings.from_env()
    shown = ", ".join(f"{name}={os.environ[name]}" for name in DEMO_ENV)
    timeline.say(f"state under {state}/; {shown}")
    report = validate_file(str(data), Contract(horizon=settings.horizon))
    if not report.ok:
        timeline.say(report.to_text())
        return False
    older, newer = _split(data, state / "files")

    with timeline.stage("start the mesh") as stage:
        mesh = Mesh(settings, root).start()
        stage.detail = mesh.pubsub.summary()
    try:
        # this process reads the emulated buckets too (runs, ledger, registry)
        os.environ["STORAGE_EMULATOR_HOST"] = mesh.emulator.host
        client = mesh.storage_client()
        first = _ship(settings, client, older, "1", timeline, timeout)
        if first is None:
            return False
        traffic = _Traffic(runtime.endpoint(settings), _busiest(newer))
        traffic.start()
        try:
            second = _ship(settings, client, newer, "2", timeline, timeout)
            if second is None:
                return False
            _forecast(settings, _busiest(newer), timeline)
            return _incident(settings, mesh, second, first, traffic, timeline, timeout)
        finally:
            traffic.stop()
    finally:
        with timeline.stage("stop the mesh"):
            mesh.stop()
        timeline.say(
            f"   its state stays under {state}/: SALESMESH_STATE_DIR={state} salesmesh history "
            "(or versions, status, logs) looks inside"
        )


def _ship(
    settings: Any, client: Any, path: Path, label: str, timeline: Timeline, timeout: float
) -> str | None:
    """Upload, train and deploy one file; the version id, or None if a hop failed."""
    from salesmesh import runtime
    from salesmesh.upload import upload

    with timeline.stage(f"upload v{label} data ({path.name})") as stage:
        uploaded = upload(path, client, settings.data_bucket, settings.upload_prefix + path.name)
        stage.detail = f"{uploaded['uri']}#{uploaded['generation']}"
    with timeline.stage(f"train v{label} (train_trigger -> history -> training run)") as stage:
        run, snapshot = _wait_for_run(settings, uploaded, timeout)
        stage.detail = f"run {run.run_id} {run.state} on history snapshot {snapshot}"
        if run.state != "succeeded":
            timeline.say(f"   its log: {run.log}")
            return None
    with timeline.stage(f"deploy v{label} (deploy_model: gate, canary, promote)") as stage:
        version = _wait_for_version(runtime.ledger(settings), run.run_id, timeout)
        split = runtime.endpoint(settings).traffic()
        stage.detail = f"version {version['version_id']} {version['state']}, traffic {split}"
        if version["state"] != "deployed":
            timeline.say(f"   why: {version.get('reason', '?')}")
            return None
    return str(version["version_id"])


def _forecast(settings: Any, series: tuple[str, str], timeline: Timeline) -> None:
    """What a planner asks the endpoint: a week of the busiest series, with its quantiles."""
    from salesmesh import runtime
    from salesmesh.rollout import versions

    store, product = series
    with timeline.stage("a planner's week, with quantiles (salesmesh predict)") as stage:
        instance = {"store_id": store, "product_id": product, "horizon": 7}
        response = runtime.endpoint(settings).predict([instance])
        days = response["predictions"][0]["forecast"]
        stage.detail = f"{store} / {product}: {len(days)} days, fields {', '.join(days[0])}"
        for line in versions.render_forecast(response).splitlines():
            timeline.say(f"   {line}")


def _incident(
    settings: Any,
    mesh: Any,
    slow: str,
    good: str,
    traffic: _Traffic,
    timeline: Timeline,
    timeout: float,
) -> bool:
    from salesmesh import runtime
    from salesmesh.local import latency_fault

    endpoint = runtime.endpoint(settings)
    ledger = runtime.ledger(settings)
    with timeline.stage(f"inject {SLOW_MS:.0f} ms into v{slow} (local fault switch)") as stage:
        latency_fault.set_latency(settings.state_dir, slow, SLOW_MS)
        stage.detail = f"requests to version {slow} now wait {SLOW_MS:.0f} ms"
    injected = time.time()
    restored_at = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and restored_at is None:
        if _serves(endpoint, good):
            restored_at = time.time()
        time.sleep(0.02)
    doc = ledger.read().document
    found = [i for i in (doc.get("incidents") or {}).values() if i.get("version_id") == slow]
    opened = found[0] if found else {}
    published = _epoch(opened.get("published_at")) or _epoch(opened.get("received_at"))
    with timeline.stage("alert: p99 over 500 ms -> incident published") as stage:
        stage.started_at = injected
        stage.finished_at = published or time.time()
        stage.detail = opened.get("summary", "no incident was published")
    if not opened or restored_at is None:
        timeline.say(f"   traffic is still {endpoint.traffic()}: `salesmesh logs` says why")
        return False
    with timeline.stage(f"alert_handler: traffic back to v{good}") as stage:
        stage.started_at = published or injected
        stage.finished_at = restored_at
        split = endpoint.traffic()
        stage.detail = f"{opened.get('action')}: {opened.get('why', '')}; traffic {split}"
    with timeline.stage(f"incident closes (v{slow} takes no traffic)") as stage:
        stage.started_at = restored_at
        closed = _wait_closed(ledger, str(opened.get("incident_id")), timeout=30.0)
        stage.detail = "closed" if closed else "still open after 30 s (it does no harm)"
    timeline.say(f"   {traffic.sent} predictions sent during the story, {traffic.failed} failed")
    from salesmesh.rollout import history

    told = history.render(history.gather(ledger.read().document))
    timeline.say("\n== salesmesh history\n" + told)
    return True


def _serves(endpoint: Any, version: str) -> bool:
    """True when ``version``'s deployed model takes all traffic."""
    split = endpoint.traffic()
    models = {d.id: d.version_id for d in endpoint.deployed()}
    return any(models.get(m) == version and share == 100 for m, share in split.items())


def _wait_closed(ledger: Any, incident_id: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = (ledger.read().document.get("incidents") or {}).get(incident_id) or {}
        if found.get("state") == "closed":
            return True
        time.sleep(0.25)
    return False


class _Traffic:
    """Predictions through the endpoint from a few threads, as planners' tools would send."""

    def __init__(self, endpoint: Any, series: tuple[str, str], threads: int = 4) -> None:
        self.endpoint = endpoint
        self.instance = {"store_id": series[0], "product_id": series[1], "horizon": 7}
        self.sent = 0
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.endpoint.predict([self.instance])
                failed = 0
            except MeshError:  # nothing deployed yet, or a server between versions
                failed = 1
                self._stop.wait(0.2)
            with self._lock:
                self.sent += 1
                self.failed += failed
            self._stop.wait(0.02)


def _split(data: Path, folder: Path) -> tuple[Path, Path]:
    """The file without its last NEWER_DAYS days, and the whole file, as two uploads."""
    import pandas as pd

    from salesmesh.data import Contract, load_sales

    frame = load_sales(str(data), Contract()).frame
    assert frame is not None  # validated by the caller
    folder.mkdir(parents=True, exist_ok=True)
    cut = frame["date"].max() - pd.Timedelta(days=NEWER_DAYS)
    older, newer = folder / "sales_older.csv", folder / "sales_newer.csv"
    frame[frame["date"] <= cut].to_csv(older, index=False)
    frame.to_csv(newer, index=False)
    return older, newer


def _wait_for_run(settings: Any, uploaded: dict[str, Any], timeout: float) -> tuple[Any, str]:
    """The finished run that trained on the upload, found through the record train_trigger
    leaves for it in the sales history, and the snapshot the upload was merged into."""
    from salesmesh import events, runtime
    from salesmesh.data.source import storage_client
    from salesmesh.sales import open_history

    upload = events.upload_from_uri(uploaded["uri"], uploaded["generation"])
    assert upload is not None  # a gs:// URI with its generation
    handled = open_history(settings, storage_client).record(
        "uploads", events.correlation_id(upload)
    )
    launcher = runtime.launcher(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = handled.read().document
        run = None if record is None else launcher.get(str(record["run_id"]))
        if run is not None and run.state.finished and record is not None:
            return run, str(record["snapshot"])
        time.sleep(0.25)
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
        time.sleep(0.25)
    raise MeshError(f"run {run_id} was not deployed within {timeout:.0f} s; see `salesmesh logs`")


def _busiest(data: Path) -> tuple[str, str]:
    """The series with the most sales: the one the demo's traffic asks for."""
    from salesmesh.data import Contract, load_sales

    frame = load_sales(str(data), Contract()).frame
    assert frame is not None  # the run trained on it, so it passed the contract
    totals = frame.groupby(["store_id", "product_id"])["sales"].sum()
    best: tuple[Any, Any] = totals.idxmax()  # type: ignore[assignment]  # a MultiIndex key
    return str(best[0]), str(best[1])


def _text(epoch: float) -> str:
    from datetime import UTC, datetime

    return rfc3339(datetime.fromtimestamp(epoch, UTC))


def _epoch(text: Any) -> float | None:
    from datetime import datetime

    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
