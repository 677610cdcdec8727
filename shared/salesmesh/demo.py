"""``make demo``: validate the shipped sample, train on it and print the model card summary.

Later stages grow this into the whole local mesh (upload -> train -> deploy -> predict).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from salesmesh.errors import MeshError

SAMPLE = Path("data/sample_sales.csv")
STATE = Path(".salesmesh")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salesmesh.demo", description=__doc__)
    parser.add_argument("--data", type=Path, default=SAMPLE, help=f"sales file ({SAMPLE})")
    parser.add_argument("--horizon", type=int, default=28)
    args = parser.parse_args(argv)

    from salesmesh import train
    from salesmesh.data import Contract, validate_file

    data = args.data
    if not data.exists():
        from salesmesh.sample import write_sample

        data = STATE / "demo" / "sample_sales.csv"
        print(f"{args.data} not found; generating a sample at {data}")
        write_sample(data)
    print(f"== 1. validate {data}")
    report = validate_file(str(data), Contract(horizon=args.horizon))
    print(report.to_text())
    if not report.ok:
        return 1

    output = STATE / "demo" / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    print(f"\n== 2. train (horizon {args.horizon}) -> {output}")
    try:
        manifest = train.run(str(data), str(output), horizon=args.horizon)
    except MeshError as exc:
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    print("\n== 3. model card summary")
    print(train.summary(manifest))
    from salesmesh.forecast import load

    forecast = load(output).predict()  # load re-verifies every file against the manifest
    busiest = forecast.groupby("series_id")["forecast"].sum().idxmax()
    preview = forecast[forecast["series_id"] == busiest].head(7)
    print(f"\n== 4. next 7 periods for the busiest series, {busiest} (loaded from the artifact)")
    for row in preview.itertuples():
        print(f"    {row.date:%a %Y-%m-%d}  {row.forecast:8.1f} units")
    print(f"\nmodel card: {output / 'model_card.md'}")
    print(f"plots:      {output / 'forecast_vs_actual.png'}, {output / 'error_by_horizon.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
