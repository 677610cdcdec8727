"""functions/build.py lays out each function's deploy package and zips it deterministically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from function_builder import FUNCTIONS, ROOT, builder

LIBRARY = ROOT / "shared" / "salesmesh"


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def library_files() -> list[str]:
    """What the library ships: its files without byte-code and caches."""
    return [
        name
        for name in files_under(LIBRARY)
        if "__pycache__" not in name and not name.endswith((".pyc", ".pyo"))
    ]


def copy_of_repo(target: Path) -> Path:
    """The builder and the sources it reads, copied to ``target`` (which acts as the root)."""
    shutil.copytree(
        ROOT / "functions", target / "functions", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(LIBRARY, target / "shared" / "salesmesh")
    return target


def run_builder(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The builder as Terraform and `make package` call it: a script run by python3.11."""
    return subprocess.run(
        ["python3.11", str(root / "functions" / "build.py"), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_function_is_found():
    """The builder packages each folder under functions/ that holds a main.py."""
    assert sorted(p.parent.name for p in (ROOT / "functions").glob("*/main.py")) == FUNCTIONS
    assert {"train_trigger", "deploy_model", "alert_handler"} <= set(FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_package_holds_the_function_and_the_whole_library(built: dict[str, Any], name: str):
    """A package is main.py, requirements.txt and salesmesh/ (caches left out), and its zip
    holds exactly those files with the same bytes."""
    package = built[name]
    folder = Path(package.folder)
    source = ROOT / "functions" / name
    for own in ("main.py", "requirements.txt"):
        assert (folder / own).read_bytes() == (source / own).read_bytes()
    assert files_under(folder / "salesmesh") == library_files()
    assert not [n for n in files_under(folder) if "__pycache__" in n or n.endswith(".pyc")]
    with zipfile.ZipFile(package.zip) as bundle:
        assert bundle.namelist() == files_under(folder)
        for entry in bundle.infolist():
            assert bundle.read(entry) == (folder / entry.filename).read_bytes(), entry.filename
            assert entry.date_time == builder.EPOCH, entry.filename
            assert entry.external_attr >> 16 == builder.FILE_MODE, entry.filename
    data = Path(package.zip).read_bytes()
    assert (package.bytes, package.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_same_sources_give_byte_identical_zips(built: dict[str, Any], tmp_path: Path):
    """Another checkout with other mtimes, modes and byte-code litter builds the same zips."""
    root = copy_of_repo(tmp_path / "checkout")
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(0o600)
            os.utime(path, (1_000_000_000, 1_000_000_000))
    litter = root / "shared" / "salesmesh" / "__pycache__"
    litter.mkdir(exist_ok=True)
    (litter / "settings.cpython-311.pyc").write_bytes(b"not shipped")
    result = run_builder(root, "--json", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    rebuilt = {line["name"]: line for line in map(json.loads, result.stdout.splitlines())}
    assert {name: rebuilt[name]["sha256"] for name in FUNCTIONS} == {
        name: built[name].sha256 for name in FUNCTIONS
    }


def test_plain_output_names_each_zip_with_size_and_sha256(built: dict[str, Any], tmp_path: Path):
    """Without --json the builder prints one line per package: zip path, size and sha256."""
    result = run_builder(copy_of_repo(tmp_path / "checkout"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(FUNCTIONS)
    for name, line in zip(FUNCTIONS, lines, strict=True):
        package = built[name]
        assert line.split()[0].endswith(f"{name}.zip")
        assert f"{package.bytes:,d} bytes" in line and package.sha256 in line


def test_a_new_function_is_packaged_without_being_named(tmp_path: Path):
    """A folder added under functions/ is built by a plain run, without naming it."""
    root = copy_of_repo(tmp_path / "checkout")
    handler = root / "functions" / "nightly_report"
    handler.mkdir()
    (handler / "main.py").write_text("from salesmesh.events import StorageObject\n")
    (handler / "requirements.txt").write_text("cloudevents==1.12.0\n")
    result = run_builder(root, "--json", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    names = [json.loads(line)["name"] for line in result.stdout.splitlines()]
    assert names == sorted([*FUNCTIONS, "nightly_report"])
    assert (tmp_path / "out" / "nightly_report" / "salesmesh" / "events.py").is_file()


def test_only_the_named_functions_are_built(tmp_path: Path):
    """Names on the command line limit the build to those functions."""
    result = run_builder(ROOT, "--json", "--out", str(tmp_path), "train_trigger")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["name"] for line in result.stdout.splitlines()] == ["train_trigger"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_trigger", "train_trigger.zip"]


def test_a_rebuild_drops_files_the_sources_no_longer_have(tmp_path: Path):
    """Nothing stale from an earlier build ships: the package folder is laid out afresh."""
    builder.build("train_trigger", tmp_path)
    stale = tmp_path / "train_trigger" / "salesmesh" / "removed_since.py"
    stale.write_text("x = 1\n")
    package = builder.build("train_trigger", tmp_path)
    assert not stale.exists()
    assert "salesmesh/removed_since.py" not in zipfile.ZipFile(package.zip).namelist()


def test_bad_requests_fail_with_a_reason(tmp_path: Path):
    """An unknown name exits 2 naming the known ones; a function without requirements.txt
    exits 1 saying what is missing."""
    unknown = run_builder(ROOT, "--out", str(tmp_path), "no_such_function")
    assert unknown.returncode == 2
    assert "no function no_such_function; known: " + ", ".join(FUNCTIONS) in unknown.stderr
    root = copy_of_repo(tmp_path / "checkout")
    (root / "functions" / "train_trigger" / "requirements.txt").unlink()
    incomplete = run_builder(root, "--out", str(tmp_path / "out"), "train_trigger")
    assert incomplete.returncode == 1
    assert "train_trigger/requirements.txt is missing" in incomplete.stderr


def test_terraform_gets_every_zip_and_its_hash_from_the_same_builder(tmp_path: Path):
    """terraform/functions.tf's external data source runs this builder with --terraform: a
    JSON query on stdin, one flat object of strings out, each zip's path and sha256 as built;
    a query that is not an object fails with a reason rather than building blind."""
    root = copy_of_repo(tmp_path / "checkout")
    program = ["python3", str(root / "functions" / "build.py"), "--terraform"]
    run = subprocess.run(
        program, cwd=tmp_path, input="{}", capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert sorted(result) == sorted(f"{n}_{k}" for n in FUNCTIONS for k in ("sha256", "zip"))
    assert all(isinstance(value, str) for value in result.values())
    for name in FUNCTIONS:
        archive = Path(result[f"{name}_zip"])
        assert archive == root / "build" / "functions" / f"{name}.zip"
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == result[f"{name}_sha256"]
    wrong = subprocess.run(
        program, cwd=tmp_path, input="[]", capture_output=True, text=True, timeout=120, check=False
    )
    assert wrong.returncode != 0
    assert "stdin must be a JSON object (the query)" in wrong.stderr
