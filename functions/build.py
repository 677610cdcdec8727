"""Build each Cloud Function's deploy package: its folder plus the salesmesh library, and a zip.

    python functions/build.py [--out build/functions] [--json | --terraform] [NAME ...]

For every ``functions/<name>/main.py`` (or the NAMEs given) this lays out
``<out>/<name>/`` (the function's own files, ``requirements.txt`` among them, and
``shared/salesmesh`` copied in as ``<out>/<name>/salesmesh/``) and zips that folder to
``<out>/<name>.zip``. ``gcloud functions deploy --source <out>/<name>`` and Terraform upload
exactly this.

``--terraform`` speaks the protocol of Terraform's ``external`` data source (``terraform/
functions.tf`` runs it at plan time): it reads the query object on stdin and prints one flat JSON
object of strings, ``<name>_zip`` (an absolute path) and ``<name>_sha256`` for every function,
so the zips Terraform uploads are built by this very code.

Standard library only, so it runs before any virtualenv exists, and wherever Terraform runs.
The zips are deterministic: entries sorted, timestamps and permissions fixed, no directory
entries, so the same sources give byte-identical zips (and a stable hash for Terraform)
whatever the checkout's mtimes or umask.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
LIBRARY = ROOT / "shared" / "salesmesh"
DEFAULT_OUT = ROOT / "build" / "functions"
ENTRY, REQUIREMENTS = "main.py", "requirements.txt"
# Byte-code, caches, tests and editor litter never ship; everything else in the library does
# (py.typed, triggers.json are read at run time).
EXCLUDED = ("__pycache__", "*.pyc", "*.pyo", "tests", ".*", "*.egg-info")
# The earliest time a zip entry can hold; any fixed value works, this one says "not a real time".
EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # a regular file, rw-r--r--, whatever the checkout's umask gave
_UNIX = 3  # ZipInfo.create_system: the mode bits above are Unix ones


class BuildError(Exception):
    """A function cannot be packaged; the message says which and what to fix."""


@dataclass(frozen=True)
class Package:
    """One built function: its folder, its zip, the zip's size and sha256."""

    name: str
    folder: str
    zip: str
    bytes: int
    sha256: str


def discover(functions: Path = FUNCTIONS) -> list[str]:
    """Every function: each folder under ``functions/`` holding a ``main.py``, sorted."""
    return sorted(path.parent.name for path in functions.glob(f"*/{ENTRY}"))


def build(name: str, out: Path, functions: Path = FUNCTIONS, library: Path = LIBRARY) -> Package:
    """Lay out ``out/<name>/`` afresh and zip it to ``out/<name>.zip``."""
    source = functions / name
    for required in (ENTRY, REQUIREMENTS):
        if not (source / required).is_file():
            raise BuildError(f"{source / required} is missing: a function package needs both")
    if (source / library.name).exists():
        raise BuildError(
            f"{source / library.name} would shadow the library copied into the package"
        )
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)  # stale files from an earlier build must not ship
    ignore = shutil.ignore_patterns(*EXCLUDED)
    shutil.copytree(source, folder, ignore=ignore)
    shutil.copytree(library, folder / library.name, ignore=ignore)
    archive = out / f"{name}.zip"
    write_zip(folder, archive)
    data = archive.read_bytes()
    return Package(name, str(folder), str(archive), len(data), hashlib.sha256(data).hexdigest())


def write_zip(folder: Path, archive: Path) -> None:
    """Zip the files under ``folder`` (paths relative to it) deterministically, atomically."""
    files = sorted(
        (path for path in folder.rglob("*") if path.is_file()),
        key=lambda path: path.relative_to(folder).as_posix(),
    )
    staging = archive.with_name(archive.name + ".tmp")
    with zipfile.ZipFile(staging, "w") as bundle:
        for path in files:
            entry = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=EPOCH)
            entry.create_system = _UNIX
            entry.external_attr = FILE_MODE << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(entry, path.read_bytes(), compresslevel=9)
    staging.replace(archive)


def terraform_result(built: list[Package]) -> dict[str, str]:
    """What Terraform's external data source reads: strings only, one flat object."""
    result = {}
    for package in built:
        result[f"{package.name}_zip"] = str(Path(package.zip).resolve())
        result[f"{package.name}_sha256"] = package.sha256
    return result


def _read_query(text: str) -> None:
    """The external data source sends a JSON object (its ``query``, empty here); anything else
    means the caller is not Terraform, and guessing would build the wrong thing."""
    try:
        query = json.loads(text or "{}")
    except ValueError as exc:
        raise SystemExit(f"build.py --terraform: stdin is not JSON ({exc})") from exc
    if not isinstance(query, dict):
        raise SystemExit("build.py --terraform: stdin must be a JSON object (the query)")


def main(argv: list[str] | None = None) -> int:
    """Build the named functions (default: all) and print what was built."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="functions to build (default: all)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: build/functions")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print one JSON object per package")
    shown.add_argument(
        "--terraform",
        action="store_true",
        help="Terraform's external data source: read the query on stdin, print one object",
    )
    args = parser.parse_args(argv)
    if args.terraform:
        _read_query(sys.stdin.read())
    known = discover()
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"no function {', '.join(unknown)}; known: {', '.join(known) or 'none'}")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        built = [build(name, args.out) for name in args.names or known]
    except (BuildError, OSError) as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    if args.terraform:
        print(json.dumps(terraform_result(built), sort_keys=True))
        return 0
    for package in built:
        if args.json:
            print(json.dumps(asdict(package)))
        else:
            shown = os.path.relpath(package.zip)
            print(f"{shown}  {package.bytes:>9,d} bytes  sha256 {package.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
