"""Derive google.json, the compact schema of the google provider's resources the mesh uses, from
the provider metadata in the PyPI package cdktn-provider-google (a jsii assembly: one config
type per resource, its properties with their Terraform names, optionality and nested blocks).

    python terraform/schema/derive.py [--wheel PATH]     # default: pip download the pinned one

tests/terraform checks every resource of terraform/ against the file it writes: its type
exists, every argument and block is one the provider knows, every required one is set. Run it
again (and commit google.json) when the provider pin moves or a resource of a new family is
used (FAMILIES). Standard library only.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

PACKAGE = "cdktn-provider-google==21.1.0"  # bindings for hashicorp/google 8.7.0
OUT = Path(__file__).with_name("google.json")
# resource families the mesh's Terraform draws on (google_<family>...)
FAMILIES = (
    "artifact_registry",
    "cloud_run",
    "cloud_scheduler",
    "cloud_tasks",
    "cloudfunctions2",
    "eventarc",
    "logging",
    "monitoring",
    "project",
    "pubsub",
    "service_account",
    "storage",
    "vertex_ai",
)
RESOURCE = re.compile(r"docs/resources/([a-z0-9_]+) (google_[a-z0-9_]+)\}")
ATTRIBUTE = re.compile(r"#([a-z0-9_]+) [A-Za-z0-9]+#")


def assembly(wheel: Path) -> dict[str, Any]:
    """The jsii assembly inside the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".jsii.tgz"))
        packed = archive.read(name)
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        member = tar.extractfile("package/.jsii")
        assert member is not None
        found: dict[str, Any] = json.load(member)
    return found


def _element(kind: dict[str, Any]) -> str | None:
    """The fqn of the datatype a property holds (directly, in a list, or in a union)."""
    if "fqn" in kind:
        return str(kind["fqn"])
    if "collection" in kind:
        return _element(kind["collection"]["elementtype"])
    for option in kind.get("union", {}).get("types", []):
        if (found := _element(option)) and not found.startswith("cdktn."):
            return found
    return None


def _schema(types: dict[str, Any], fqn: str) -> dict[str, Any]:
    """required / optional arguments and nested blocks of one config or block type."""
    required, optional, blocks = [], [], {}
    for prop in types[fqn].get("properties", []):
        remarks = prop.get("docs", {}).get("remarks", "")
        match = ATTRIBUTE.search(remarks)
        name = match.group(1) if match else re.sub(r"(?<!^)([A-Z])", r"_\1", prop["name"]).lower()
        inner = _element(prop["type"])
        if inner in types and types[inner].get("datatype") and inner.startswith("@cdktn/"):
            blocks[name] = {**_schema(types, inner), "required": not prop.get("optional")}
            continue
        (optional if prop.get("optional") else required).append(name)
    return {"arguments": sorted(required), "optional": sorted(optional), "blocks": blocks}


def derive(found: dict[str, Any]) -> dict[str, Any]:
    types = found["types"]
    resources = {}
    for kind in types.values():
        match = RESOURCE.search(kind.get("docs", {}).get("summary", ""))
        if kind.get("kind") != "class" or match is None:
            continue
        name = match.group(2)
        if not name.removeprefix("google_").startswith(FAMILIES):
            continue
        config = kind["initializer"]["parameters"][-1]["type"]["fqn"]
        resources[name] = _schema(types, config)
    version = re.search(r"provider version (\S+)", found.get("readme", {}).get("markdown", ""))
    return {
        "provider": f"hashicorp/google {version.group(1) if version else '?'}",
        "source": f"{found['name']} {found['version']} (PyPI {PACKAGE})",
        "resources": dict(sorted(resources.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"a downloaded wheel of {PACKAGE}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel
        if wheel is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", scratch]
            subprocess.run([*command, PACKAGE], check=True)
            wheel = next(Path(scratch).glob("*.whl"))
        schema = derive(assembly(wheel))
    OUT.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"{OUT}: {len(schema['resources'])} resources of {schema['provider']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
