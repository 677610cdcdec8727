"""The machine a benchmark ran on: CPU, cores, memory, Python, package versions, commit."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def machine_info(packages: Sequence[str]) -> dict[str, Any]:
    """Facts that make two benchmark runs comparable, with the versions of ``packages``."""
    versions: dict[str, str] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    cpu = platform.processor() or "unknown"
    memory_gib: float | None = None
    with suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
        for text in Path("/proc/meminfo").read_text().splitlines():
            if text.startswith("MemTotal:"):
                memory_gib = int(text.split()[1]) / 1024**2
                break
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "git": commit or "unknown",
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was around a figure."""
    return [round(x, 2) for x in os.getloadavg()]


def report_header(title: str, packages: Sequence[str], arguments: Any) -> dict[str, Any]:
    """Print a benchmark's heading (machine, versions, start time, load); return the report
    dict it starts, holding the same facts and the parsed ``arguments``."""
    machine = machine_info(packages)
    report: dict[str, Any] = {
        "machine": machine,
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(arguments).items()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_start": load_average(),
    }
    memory = f"{machine['memory_gib']:.1f} GiB RAM" if machine["memory_gib"] else "RAM unknown"
    print(f"# {title}\n")
    print(
        f"- machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['cores_usable']} usable), {memory}, {machine['platform']}"
    )
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    print(f"- Python {machine['python']}; {versions}; git {machine['git']}")
    print(f"- started {report['started']}, load average {report['load_average_start']}\n")
    return report


def report_footer(report: dict[str, Any], rendered: str, json_path: Path | None) -> None:
    """Close ``report`` (end time, load), print ``rendered`` and the closing line, and write
    the whole report as JSON to ``json_path`` when given."""
    report["load_average_end"] = load_average()
    report["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(rendered)
    print(f"\n- ended {report['ended']}, load average {report['load_average_end']}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {json_path}", file=sys.stderr)


def business_arguments(description: str) -> argparse.Namespace:
    """The command line of a benchmark run on one generated business: its size and --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--products", type=int, default=60)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--json", type=Path, help="write every figure here")
    return parser.parse_args()
