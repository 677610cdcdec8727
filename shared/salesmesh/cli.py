"""`salesmesh …`: the command line. Exit codes: 0 success, 1 a failed check, 2 usage errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from salesmesh.errors import MeshError, exit_status


def _mapping(pairs: list[str] | None) -> dict[str, str]:
    from salesmesh.data import parse_mapping

    try:
        return parse_mapping(pairs or [])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _cmd_validate(args: argparse.Namespace) -> int:
    from salesmesh.data import Contract, validate_file
    from salesmesh.settings import declared_regressors

    try:
        contract = Contract(
            mapping=_mapping(args.map),
            horizon=args.horizon,
            date_format=args.date_format,
            # what the trainer declares: the report says what training does with each column
            regressors=(*declared_regressors(), *(args.regressor or [])),
        )
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    report = validate_file(args.path, contract)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.to_text())
    return 0 if report.ok else 1


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from salesmesh.sample import write_sample

    frame = write_sample(
        Path(args.out), stores=args.stores, products=args.products, days=args.days, seed=args.seed
    )
    print(
        f"wrote {len(frame):,} rows ({args.stores} stores x {args.products} products x "
        f"{args.days} days) to {args.out}"
    )
    return 0


def _storage_factory() -> Any:
    """A GCS client factory when a local mesh or real project is configured, else None."""
    import os

    from salesmesh import runtime
    from salesmesh.settings import Settings

    mesh = runtime.use_running_mesh(Settings.from_env())
    if not (mesh or os.environ.get("GOOGLE_CLOUD_PROJECT")):
        return None
    from salesmesh.data.source import storage_client

    return storage_client


def _cmd_upload(args: argparse.Namespace) -> int:
    from salesmesh import runtime
    from salesmesh.errors import ConfigError
    from salesmesh.settings import Settings
    from salesmesh.upload import upload

    settings = Settings.from_env()
    if args.project:
        from google.cloud import storage

        client = storage.Client(project=args.project)
    elif runtime.use_running_mesh(settings):
        from salesmesh.data.source import storage_client

        client = storage_client()
    else:
        raise ConfigError(
            "no bucket to upload to: start the local mesh with `salesmesh up` (in another "
            "shell) or pass --project for Google Cloud Storage"
        )
    path = Path(args.file)
    name = args.name or settings.upload_prefix + path.name
    result = upload(path, client, args.bucket or settings.data_bucket, name)
    print(
        f"uploaded {result['uri']} (generation {result['generation']}, {result['bytes']:,} bytes)"
    )
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from salesmesh.local import commands

    every = args.retrain_every.total_seconds() if args.retrain_every else None
    return commands.up(args.root, detach=args.detach, retrain_every=every)


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from salesmesh import runtime
    from salesmesh.data.source import storage_client
    from salesmesh.errors import ConfigError
    from salesmesh.sales import retrain
    from salesmesh.settings import Settings

    settings = Settings.from_env()
    if args.project:
        settings = dataclasses.replace(settings, backend="gcp", project=args.project)
    elif settings.backend == "local" and not runtime.use_running_mesh(settings):
        raise ConfigError(
            "no local mesh is running to train in: start one with `salesmesh up`, or pass "
            "--project for Google Cloud"
        )
    done = retrain.retrain(
        settings,
        runtime.launcher(settings),
        storage_client,
        snapshot=args.snapshot,
        force=args.force,
        who="manual",
    )
    if args.json:
        found = dataclasses.asdict(done)
        print(json.dumps(found, indent=2, default=str))
    else:
        print(done.message)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from salesmesh.local import commands

    return commands.down()


def _cmd_status(args: argparse.Namespace) -> int:
    from salesmesh import status
    from salesmesh.data.source import storage_client
    from salesmesh.errors import ConfigError
    from salesmesh.settings import Settings

    factory = _storage_factory()
    if factory is not None:
        gathered = status.gather(Settings.from_env(), factory)
    else:
        try:  # a stopped mesh: read the buckets it left, as versions and history do
            with _reading(argparse.Namespace(project=None)) as settings:
                gathered = status.gather(settings, storage_client)
        except ConfigError:  # no mesh ever ran here: runs and dead letters only
            gathered = status.gather(Settings.from_env(), None)
    print(json.dumps(gathered, indent=2) if args.json else status.render(gathered))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    import time

    from salesmesh import logs, runtime
    from salesmesh.settings import Settings

    if args.project:
        return _cloud_logs(args)
    if args.since is not None or args.limit is not None:
        raise argparse.ArgumentTypeError("--since and --limit read Cloud Logging: add --project")
    path = Settings.from_env().state_dir / "logs" / runtime.LOG_FILE
    shown = 0
    try:
        while True:
            records = [r for r in logs.read(path) if not args.run or logs.in_story(r, args.run)]
            for record in records[shown:]:
                _print_log(record, args.json)
            shown = len(records)
            if not args.follow:
                return 0
            time.sleep(0.5)  # a person is watching; half a second is plenty
    except KeyboardInterrupt:  # Ctrl-C ends --follow; that is not an error
        return 0


def _cloud_logs(args: argparse.Namespace) -> int:
    from salesmesh.backends import gcp_logs

    if args.follow:
        # Cloud Logging ingests late and out of order: polling would drop lines without saying
        raise argparse.ArgumentTypeError(
            "--follow reads the local mesh's log only; with --project run the command again"
        )
    limit = args.limit or gcp_logs.LIMIT
    shown = 0
    for record in gcp_logs.read(args.project, run_id=args.run, since=args.since, limit=limit):
        _print_log(record, args.json)
        shown += 1
    if shown >= limit:
        print(
            f"(only the newest {limit} lines; raise --limit for older ones)",
            file=sys.stderr,
        )
    return 0


def _print_log(record: dict[str, Any], as_json: bool) -> None:
    """One log record as one line, the same for the local log and Cloud Logging."""
    if as_json:
        print(json.dumps(record, ensure_ascii=False))
        return
    from salesmesh import logs

    labels = record.get(logs.LABELS) or {}
    run = f" [{labels['run_id']}]" if "run_id" in labels else ""
    print(
        f"{record.get('time', '')} {record.get('severity', ''):<8} "
        f"{record.get('component', '')}{run}: {record.get('message', '')}"
    )


def _duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` or a sum such as ``1h30m``, as a timedelta."""
    import re

    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)([smhd])", text)
    total = sum(int(number) * seconds[unit] for number, unit in parts)
    if "".join(number + unit for number, unit in parts) != text or total <= 0:
        raise argparse.ArgumentTypeError(f"a duration such as 30m, 2h or 1d, got {text!r}")
    return timedelta(seconds=total)


def _serving_settings(args: argparse.Namespace) -> Any:
    """Settings for the registry and endpoint: Vertex AI with --project, else the local mesh."""
    import dataclasses

    from salesmesh import runtime
    from salesmesh.errors import ConfigError
    from salesmesh.settings import Settings

    settings = Settings.from_env()
    if args.project:
        return dataclasses.replace(settings, backend="gcp", project=args.project)
    if settings.backend == "local" and not runtime.use_running_mesh(settings):
        raise ConfigError(
            "no local mesh is running: start it with `salesmesh up` (in another shell) or "
            "pass --project for Vertex AI"
        )
    return settings


@contextmanager
def _reading(args: argparse.Namespace) -> Iterator[Any]:
    """Settings to read the registry, ledger and endpoint with: Google Cloud with --project;
    else the running local mesh or, when none runs, the buckets it left under the state folder,
    served here for as long as the command reads them."""
    import dataclasses
    import os

    from salesmesh import runtime
    from salesmesh.errors import ConfigError
    from salesmesh.settings import Settings

    settings = Settings.from_env()
    if args.project:
        yield dataclasses.replace(settings, backend="gcp", project=args.project)
        return
    if settings.backend != "local" or runtime.use_running_mesh(settings):
        yield settings
        return
    stored = settings.state_dir / "gcs"
    if not stored.is_dir():
        raise ConfigError(
            f"no local mesh is running and {settings.state_dir} holds none: start one with "
            "`salesmesh up`, or pass --project for Google Cloud"
        )
    from salesmesh.local.emulator import StorageEmulator

    with StorageEmulator(stored) as emulator:
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
        try:
            yield settings
        finally:
            del os.environ["STORAGE_EMULATOR_HOST"]


def _cmd_predict(args: argparse.Namespace) -> int:
    from salesmesh import runtime
    from salesmesh.errors import PredictionError
    from salesmesh.rollout import versions

    instance: dict[str, Any] = {"store_id": args.store, "product_id": args.product}
    if args.horizon is not None:
        instance["horizon"] = args.horizon
    if args.future_json is not None:
        instance["future"] = _plan(args.future_json)  # before any mesh: a bad file costs nothing
    if args.no_quantiles:
        instance["quantiles"] = False
    settings = _serving_settings(args)
    try:
        response = runtime.endpoint(settings).predict([instance])
    except PredictionError as exc:
        status = exit_status("salesmesh", exc)
        for reason in exc.reasons:
            print(f"  {reason}", file=sys.stderr)
        return status
    print(json.dumps(response, indent=2) if args.json else versions.render_forecast(response))
    return 0


def _plan(path: str) -> dict[str, Any]:
    """The plan in ``path`` ('-' for stdin): a JSON object; the server checks the rest."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        plan = json.loads(text)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"--future-json {path}: {exc}") from exc
    if not isinstance(plan, dict):
        raise argparse.ArgumentTypeError(
            f'--future-json {path}: expected an object such as {{"price": [...], "promo": [...]}}'
            f", got {type(plan).__name__}"
        )
    return plan


def _cmd_versions(args: argparse.Namespace) -> int:
    from salesmesh import accuracy, runtime
    from salesmesh.data.source import storage_client
    from salesmesh.rollout import versions

    with _reading(args) as settings:
        ledger = runtime.ledger(settings).read().document
        live = accuracy.recorded(settings, storage_client)
        registry, endpoint = runtime.registry(settings), runtime.endpoint(settings)
        gathered = versions.gather(registry, endpoint, ledger, live)
    if args.json:
        print(json.dumps(gathered, indent=2))
    else:
        print(versions.render(gathered, settings.model_name, settings.endpoint))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from salesmesh import runtime
    from salesmesh.rollout import history

    with _reading(args) as settings:
        gathered = history.gather(runtime.ledger(settings).read().document)
    print(json.dumps(gathered, indent=2) if args.json else history.render(gathered))
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from salesmesh.data.source import storage_client
    from salesmesh.sales import listing, open_history

    with _reading(args) as settings:
        gathered = listing.gather(open_history(settings, storage_client), args.limit)
    print(json.dumps(gathered, indent=2) if args.json else listing.render(gathered))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    import dataclasses
    import getpass

    from salesmesh import logs, runtime
    from salesmesh.rollout import rollback

    settings = _serving_settings(args)
    local = settings.backend == "local"
    # the mesh's log on the local mesh (where `salesmesh logs` reads the story); none on gcp,
    # where the ledger's history keeps who did it
    log = (
        logs.Logger(
            "salesmesh rollback", stream=None, path=settings.state_dir / "logs" / runtime.LOG_FILE
        )
        if local
        else logs.Logger("salesmesh rollback", stream=None)
    )
    try:
        person = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        person = "unknown user"
    who = f"salesmesh rollback ({person})"
    world = dataclasses.replace(runtime.rollouts(settings, log), who=who)
    request = rollback.Request(who, args.reason, to=args.to)
    outcome = rollback.rollback(world, request)
    if outcome.changed:
        log.warning(outcome.reason, rollback=outcome.action)
    else:
        log.info(f"no rollback: {outcome.reason}", rollback=outcome.action)
    if args.json:
        print(json.dumps(dataclasses.asdict(outcome), indent=2))
    elif outcome.changed:
        print(outcome.reason)
        split = runtime.endpoint(settings).traffic()
        print("traffic now: " + ", ".join(f"{m}: {p}%" for m, p in split.items()))
    else:
        print(f"salesmesh: no rollback: {outcome.reason}", file=sys.stderr)
    return 0 if outcome.changed else 1


def _cmd_fault(args: argparse.Namespace) -> int:
    from salesmesh.backends.local_record import EndpointRecord
    from salesmesh.local import latency_fault
    from salesmesh.settings import Settings

    settings = Settings.from_env()
    if settings.backend != "local":
        raise latency_fault.FaultError(
            f"fault injection exists in the local mesh only (SALESMESH_BACKEND={settings.backend}):"
            " nothing here can slow a Vertex AI endpoint down"
        )
    state = settings.state_dir
    if args.fault == "latency":
        faults = latency_fault.set_latency(state, args.version, args.ms)
    elif args.fault == "clear":
        faults = latency_fault.clear(state, args.version)
    else:
        faults = latency_fault.latencies(state)
    deployed = EndpointRecord(state, settings.endpoint).deployed()
    slowed = {
        version: sorted(m.id for m in deployed if m.version_id == version) for version in faults
    }
    if args.json:
        print(json.dumps({"latency_ms": faults, "deployed_models": slowed}, indent=2))
        return 0
    if not faults:
        print("no fault injected: every version answers at its own speed")
    for version, ms in sorted(faults.items()):
        where = ", ".join(slowed[version]) or "none deployed now; applies once one is"
        print(f"version {version}: +{ms:g} ms per request (deployed models: {where})")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    import dataclasses

    from salesmesh.cloud import doctor
    from salesmesh.settings import Settings

    settings = Settings.from_env()
    if args.region:
        settings = dataclasses.replace(settings, region=args.region)
    target = doctor.target_from(settings, args.project, args.prefix, args.image_tag)
    findings = list(doctor.Doctor(target).run())
    text, ok = doctor.report(findings)
    print(json.dumps(doctor.as_dicts(findings), indent=2) if args.json else text)
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from salesmesh import demo

    return demo.run(args)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salesmesh", description="Event-driven MLOps for sales demand forecasting."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check a sales file against the data contract",
        description="Check a sales file (local path or gs:// URI) against the data contract. "
        "Exit 0 when valid, 1 when not, 2 for usage errors.",
    )
    validate.add_argument("path", help="local path or gs://bucket/object")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.add_argument(
        "--horizon", type=_positive, default=28, help="forecast horizon the data must support"
    )
    validate.add_argument(
        "--map",
        action="append",
        metavar="SOURCE=TARGET",
        help="map a column name to a canonical one (date, store_id, product_id, sales, price, "
        "promo); repeatable",
    )
    validate.add_argument(
        "--date-format",
        metavar="FORMAT",
        help="strptime format of the date column (e.g. %%d/%%m/%%Y) when detection guesses wrong",
    )
    validate.add_argument(
        "--regressor",
        action="append",
        metavar="NAME",
        help="declare a column known in advance (planned, like price and promo); repeatable, "
        "adds to $SALESMESH_REGRESSORS",
    )
    validate.set_defaults(handler=_cmd_validate)

    sample = commands.add_parser(
        "sample-data",
        help="generate realistic daily retail sales",
        description="Generate daily retail sales with weekly and yearly seasonality, trend, "
        "promotions, holidays, stock-outs and intermittent slow movers.",
    )
    sample.add_argument("out", help="output CSV path (.csv or .csv.gz)")
    sample.add_argument("--stores", type=_positive, default=5)
    sample.add_argument("--products", type=_positive, default=10)
    sample.add_argument("--days", type=_positive, default=730)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=_cmd_sample_data)

    up = commands.add_parser(
        "up",
        help="run the whole mesh locally (foreground; Ctrl-C stops it)",
        description="Start the Cloud Storage emulator, the endpoint's router with the models "
        "deployed before, one functions-framework server per function and the event delivery "
        "loop, all on 127.0.0.1, with state under $SALESMESH_STATE_DIR (default .salesmesh). "
        "Ctrl-C stops everything.",
    )
    up.add_argument("--root", default=".", help="the checkout holding functions/ (default .)")
    up.add_argument(
        "--detach", action="store_true", help="run in the background; `salesmesh down` stops it"
    )
    up.add_argument(
        "--retrain-every",
        type=_duration,
        metavar="DURATION",
        help="retrain on the sales history every DURATION (30s, 15m, 12h, 7d, 1h30m), as the Cloud "
        "Scheduler job does on Google Cloud: a run only when HEAD has none yet",
    )
    up.set_defaults(handler=_cmd_up)

    train = commands.add_parser(
        "train",
        help="train on the sales history now (HEAD, or one snapshot)",
        description="Launch a training run on the sales history through the same pending "
        "claim and launcher as an upload: on HEAD by default (nothing when a run already "
        "trained on HEAD, unless --force; a run not started yet takes this one in), or pinned "
        "to --snapshot ID (`salesmesh data` lists them). The running local mesh by default, "
        "Vertex AI with --project (needs SALESMESH_TRAINING_IMAGE and the state and model "
        "buckets' names, as `terraform output cli_environment` gives them).",
    )
    train.add_argument("--project", help="Google Cloud project: submit a Vertex AI job")
    train.add_argument("--snapshot", help="train on this snapshot of the history, not HEAD")
    train.add_argument("--force", action="store_true", help="train even if HEAD was trained")
    train.add_argument("--json", action="store_true", help="print the outcome as JSON")
    train.set_defaults(handler=_cmd_train)

    down = commands.add_parser(
        "down",
        help="stop a mesh started with `salesmesh up --detach`",
        description="Stop the background mesh as Ctrl-C would: functions, training jobs, "
        "prediction servers, router, emulator. Deployed models come back with the next `up`.",
    )
    down.set_defaults(handler=_cmd_down)

    put = commands.add_parser(
        "upload",
        help="upload a sales file to the data bucket (this is what starts training)",
        description="Upload FILE under the upload prefix of the data bucket: the local mesh's "
        "emulated one by default, a real one with --project.",
    )
    put.add_argument("file", help="sales file (.csv, .csv.gz, .tsv, .txt)")
    put.add_argument("--bucket", help="bucket (default $SALESMESH_DATA_BUCKET or salesmesh-data)")
    put.add_argument("--project", help="Google Cloud project: upload to real Cloud Storage")
    put.add_argument("--name", help="object name (default: uploads/<file name>)")
    put.set_defaults(handler=_cmd_upload)

    state = commands.add_parser(
        "status",
        help="training runs, quarantined files, dead letters and incidents of the local mesh",
        description="Show the local mesh's training runs, quarantined files with their reasons, "
        "dead-lettered events, and the incidents alert_handler heard of with what it did about "
        "each (state under $SALESMESH_STATE_DIR, default .salesmesh).",
    )
    state.add_argument("--json", action="store_true", help="print the status as JSON")
    state.set_defaults(handler=_cmd_status)

    log = commands.add_parser(
        "logs",
        help="the mesh's structured logs",
        description="Print the structured log lines of the functions and trainer runs: the "
        "local mesh's log by default, the functions' Cloud Logging entries with --project.",
    )
    log.add_argument(
        "--run", metavar="ID", help="only one upload's story: its run or its correlation id"
    )
    log.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    log.add_argument("--project", help="Google Cloud project: read Cloud Logging")
    log.add_argument(
        "--since",
        type=_duration,
        metavar="DURATION",
        help="with --project: from this long ago (30m, 2h, 1d; default 1d)",
    )
    log.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="with --project: the newest N lines at most (default 1000)",
    )
    log.add_argument("--json", action="store_true", help="one JSON object per line")
    log.set_defaults(handler=_cmd_logs)

    predict = commands.add_parser(
        "predict",
        help="forecast one store/product through the endpoint",
        description="Send one prediction request through the endpoint's traffic split: the "
        "local mesh's router by default, a Vertex AI endpoint with --project. Prints one row "
        "per date: the point forecast (sales) and the quantiles the model was trained with "
        "(p10, p25, p50, p75, p90: demand stays at or below p90 on about 90 %% of days); a "
        "model trained without quantiles prints sales only. Exit 1 with the server's reason "
        "when the request is refused (unknown series, bad horizon or plan).",
    )
    predict.add_argument("--store", required=True, help="store_id as in the sales data")
    predict.add_argument("--product", required=True, help="product_id as in the sales data")
    predict.add_argument(
        "--horizon", type=_positive, help="periods to forecast (default: the model's horizon)"
    )
    predict.add_argument(
        "--future-json",
        metavar="FILE",
        help='a plan for the requested dates, a JSON object such as {"price": [...], "promo": '
        "[...]} with one value per date ('-' reads stdin); without one, promotions are off and "
        "the price is held",
    )
    predict.add_argument(
        "--no-quantiles",
        action="store_true",
        help='point forecasts only (sends "quantiles": false)',
    )
    predict.add_argument("--project", help="Google Cloud project: use the Vertex AI endpoint")
    predict.add_argument(
        "--json",
        action="store_true",
        help="print the response body as JSON: per date {date, sales, p10 .. p90}",
    )
    predict.set_defaults(handler=_cmd_predict)

    listing = commands.add_parser(
        "versions",
        help="model versions, their aliases, accuracy and gate verdicts, and the traffic split",
        description="List every registered version of the model (oldest first) with its "
        "aliases (champion, previous), deployment state, backtest MASE, live MASE (its served "
        "forecasts scored against the sales that arrived since; DEGRADED when worse than the "
        "backtest by SALESMESH_LIVE_MARGIN), the gate's evidence in brief and run, the reasons "
        "of the last gated versions, then the endpoint's current traffic split and the "
        "rollout in progress. --json gives each version's whole gate verdict and live figures. "
        "The local mesh by default (the running one, or the state it left), Google Cloud with "
        "--project.",
    )
    listing.add_argument("--project", help="Google Cloud project: read Vertex AI")
    listing.add_argument("--json", action="store_true", help="print as JSON")
    listing.set_defaults(handler=_cmd_versions)

    story = commands.add_parser(
        "history",
        help="which version served when, and why the traffic changed",
        description="The endpoint's rollout ledger as a timeline: every rollout's states "
        "(registered, deploying, canary, promoting, done, failed, aborted) with their reasons, "
        "and every traffic split change with who made it and why. The local mesh by default "
        "(the running one, or the state it left), Google Cloud with --project.",
    )
    story.add_argument("--project", help="Google Cloud project: read its state bucket")
    story.add_argument("--json", action="store_true", help="print as JSON")
    story.set_defaults(handler=_cmd_history)

    history_of_data = commands.add_parser(
        "data",
        help="the sales history: snapshots, the uploads each contains, HEAD, runs on each",
        description="The model's sales history, newest snapshot first: what each merge "
        "added and corrected, the uploads each snapshot contains with their row counts, which "
        "one is HEAD, which training runs trained on which snapshot, and the run pending. The "
        "local mesh by default (the running one, or the state it left), Google Cloud with "
        "--project.",
    )
    history_of_data.add_argument("--project", help="Google Cloud project: read its state bucket")
    history_of_data.add_argument(
        "--limit", type=_positive, default=20, help="newest snapshots shown (20)"
    )
    history_of_data.add_argument("--json", action="store_true", help="print as JSON")
    history_of_data.set_defaults(handler=_cmd_data)

    back = commands.add_parser(
        "rollback",
        help="put the previous version back at 100 %% of traffic (or abort the rollout)",
        description="Roll the endpoint back through its rollout ledger, the same way "
        "alert_handler does for an incident: during a rollout, abort it (the old champion keeps "
        "100 %); otherwise the previous champion still deployed (or --to VERSION) takes all "
        "traffic, the current one is marked rolled_back and undeployed, the aliases move, and "
        "the history records who and why. Exit 0 when traffic moved, 1 when nothing could be "
        "rolled back (the reason is printed). The running local mesh by default, Google "
        "Cloud with --project.",
    )
    back.add_argument("--to", metavar="VERSION", help="the deployed version to return to")
    back.add_argument("--reason", default="rolled back by hand", help="why, for the history")
    back.add_argument("--project", help="Google Cloud project: roll back on Vertex AI")
    back.add_argument("--json", action="store_true", help="print the outcome as JSON")
    back.set_defaults(handler=_cmd_rollback)

    fault = commands.add_parser(
        "fault",
        help="switch the local latency fault on or off (local mesh only)",
        description="Make every request the local router sends to a model version wait N ms "
        "more, inside the latency it measures, so the monitor sees the version slow down; "
        "switchable while the mesh runs (state in $SALESMESH_STATE_DIR/faults.json). "
        "Refused on SALESMESH_BACKEND=gcp.",
    )
    faults = fault.add_subparsers(dest="fault", required=True, metavar="ACTION")
    slow = faults.add_parser("latency", help="add N ms to every request of version V")
    slow.add_argument("--version", required=True, help="the registry version id (see versions)")
    slow.add_argument("--ms", required=True, type=float, help="milliseconds to add, up to 60000")
    clear = faults.add_parser("clear", help="remove the latency fault (of one version, or all)")
    clear.add_argument("--version", help="only this version's (default: every one)")
    show = faults.add_parser("show", help="the faults switched on now")
    for action in (slow, clear, show):
        action.add_argument("--json", action="store_true", help="print the switch as JSON")
    fault.set_defaults(handler=_cmd_fault)

    from salesmesh import demo

    preflight = commands.add_parser(
        "doctor",
        help="is a Google Cloud project ready for the mesh? (read-only preflight)",
        description="Check a real project for everything the deployed mesh relies on: the "
        "APIs enabled, the service agents present, every IAM grant the code needs "
        "(salesmesh.cloud.grants) on its resource, the buckets (private, in the region), "
        "topics, rollout queue, Vertex AI endpoint, functions (active) and images (tagged). "
        "Each failure says how to fix it. Names come from the SALESMESH_* settings (`terraform "
        "output cli_environment`); --prefix and --image-tag name the buckets and images as "
        "the Terraform does. Exit 0 when ready, 1 when not.",
    )
    preflight.add_argument("--project", required=True, help="the Google Cloud project id")
    preflight.add_argument("--region", help="the mesh's region (default: SALESMESH_REGION)")
    preflight.add_argument("--prefix", help="the Terraform's bucket prefix (var.prefix)")
    preflight.add_argument("--image-tag", help="the images' tag (var.image_tag)")
    preflight.add_argument("--json", action="store_true", help="print the findings as JSON")
    preflight.set_defaults(handler=_cmd_doctor)

    story_of_all = commands.add_parser(
        "demo",
        help="the whole chain on the local mesh: train, deploy, slow down, alert, roll back",
        description=(demo.__doc__ or "").split("\n\n", 1)[0],
    )
    demo.add_arguments(story_of_all)
    story_of_all.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except MeshError as exc:
        return exit_status("salesmesh", exc)


if __name__ == "__main__":
    sys.exit(main())
