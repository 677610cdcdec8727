"""The container images, checked without Docker: their Dockerfiles and pinned requirements.

No Docker engine runs here, so the images are proven piecewise: the Dockerfiles are parsed for
what Vertex AI and the house rules need, every pin must equal the version this suite runs with
and be closed under dependencies, and each entry point really runs (a gs:// artifact served, a
model trained) with only its image's pinned distributions importable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from http.client import HTTPConnection
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from run_folders import upload_folder

from salesmesh.data.source import storage_client
from salesmesh.sample import write_sample

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
BASE_IMAGE = "python:3.11.7-slim-bookworm"
IMAGES = {"serve": "salesmesh.serve", "train": "salesmesh.train"}
START_TIMEOUT = 60.0

# Runs an entry point (argv[1], its arguments after) with the import system narrowed to what
# the image holds: a module a distribution outside PINNED provides is "not installed". At exit
# each process (the gunicorn master and its forked worker alike) writes which distribution
# provided the modules it imported.
_RUNNER = r"""
import atexit, json, os, re, runpy, sys
# what site imported before us (setuptools' .pth hook, say) is the interpreter's, not the app's
before = set(sys.modules)
from importlib import metadata
from importlib.machinery import PathFinder

pinned = set(json.loads(os.environ["PINNED_DISTRIBUTIONS"]))
owners = {}
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    base = os.path.realpath(dist.locate_file(""))
    for file in dist.files or ():
        owners[os.path.normpath(os.path.join(base, str(file)))] = name

def owner(origin):
    return owners.get(os.path.realpath(origin)) if origin else None

class ImageOnly(PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        spec = PathFinder.find_spec(fullname, path, target)
        found = owner(spec.origin) if spec is not None and spec.has_location else None
        return None if found not in (None, "salesmesh", *pinned) else spec

sys.meta_path[:] = [ImageOnly if f is PathFinder else f for f in sys.meta_path]

def dump():
    used = {}
    for name, module in list(sys.modules.items()):
        if name in before:
            continue
        found = owner(getattr(module, "__file__", None))
        if found and found != "salesmesh":
            used.setdefault(found, name)
    with open(os.path.join(os.environ["IMPORTS_DIR"], f"{os.getpid()}.json"), "w") as out:
        json.dump(used, out)

atexit.register(dump)
module = sys.argv[1]
sys.argv = [sys.argv[0], *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def instructions(image: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of ``containers/<image>.Dockerfile``, continuations joined."""
    joined: list[tuple[str, str]] = []
    pending = ""
    for raw in (CONTAINERS / f"{image}.Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        joined.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, f"{image}.Dockerfile ends inside a continued line"
    return joined


def _args(image: str, keyword: str) -> list[str]:
    return [rest for key, rest in instructions(image) if key == keyword]


def _env(image: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for rest in _args(image, "ENV") for item in shlex.split(rest)]
    return {key: value for key, value in pairs}


def pins(image: str) -> dict[str, str]:
    """Canonical distribution name -> pinned version in ``requirements-<image>.txt``."""
    found: dict[str, str] = {}
    for line in (CONTAINERS / f"requirements-{image}.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"requirements-{image}.txt: {line!r} is not an exact NAME==VERSION pin"
        name = canonicalize_name(match[1])
        assert name not in found, f"requirements-{image}.txt pins {name} twice"
        found[name] = match[2]
    return found


def requirements_of(name: str) -> list[Requirement]:
    """What installing distribution ``name`` (no extras) requires on this platform."""
    listed = [Requirement(text) for text in metadata.requires(name) or []]
    return [r for r in listed if r.marker is None or r.marker.evaluate({"extra": ""})]


def closure(names: Iterable[str]) -> set[str]:
    """``names`` and every distribution they require, transitively."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(canonicalize_name(r.name) for r in requirements_of(name))
    return seen


@pytest.mark.parametrize("image", IMAGES)
def test_base_image_is_the_exact_python(image: str):
    """Every stage starts from the exact slim Python tag, the minor version these tests run."""
    assert _args(image, "FROM") == [BASE_IMAGE]
    assert BASE_IMAGE.startswith(f"python:{sys.version_info[0]}.{sys.version_info[1]}.")


@pytest.mark.parametrize("image", IMAGES)
def test_runs_its_module_as_a_non_root_user(image: str):
    """A numeric non-root USER is set before the command, which runs the entry point module."""
    keys = [key for key, _ in instructions(image)]
    users = _args(image, "USER")
    assert users, f"{image}.Dockerfile never sets USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert any(f"--uid {uid}" in run for run in _args(image, "RUN")), "USER must exist"
    last_user = len(keys) - 1 - keys[::-1].index("USER")
    command = [i for i, key in enumerate(keys) if key in ("CMD", "ENTRYPOINT")]
    assert command and min(command) > last_user
    entrypoint = [json.loads(rest) for rest in _args(image, "ENTRYPOINT")]
    cmd = [json.loads(rest) for rest in _args(image, "CMD")]
    effective = entrypoint[-1] if entrypoint else cmd[-1]  # exec form: JSON lists
    assert effective == ["python", "-m", IMAGES[image]]


@pytest.mark.parametrize("image", IMAGES)
def test_python_environment_and_serving_port(image: str):
    """No bytecode, unbuffered logs; the server listens on 0.0.0.0:8080 as Vertex AI expects."""
    env = _env(image)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    if image == "serve":
        assert (env["SALESMESH_SERVE_HOST"], env["AIP_HTTP_PORT"]) == ("0.0.0.0", "8080")
        assert _args(image, "EXPOSE") == ["8080"]


@pytest.mark.parametrize("image", IMAGES)
def test_pip_installs_the_pins_then_the_package_alone(image: str):
    """pip keeps no cache, installs the image's pinned file, then salesmesh with --no-deps."""
    copies = " ".join(_args(image, "COPY"))
    assert f"containers/requirements-{image}.txt" in copies
    installs = [run for run in _args(image, "RUN") if "pip install" in run]
    assert installs and all("--no-cache-dir" in run for run in installs)
    assert any("-r /tmp/requirements.txt" in run and "--no-deps" in run for run in installs)
    assert any("--no-deps /tmp/src" in run for run in installs)
    other = (CONTAINERS / f"requirements-{'train' if image == 'serve' else 'serve'}.txt").name
    assert other not in copies


@pytest.mark.parametrize("image", IMAGES)
def test_every_pin_is_the_version_tested_here(image: str):
    """Each pin equals the version installed in this environment, the one the suite ran."""
    wrong = {
        name: (version, metadata.version(name))
        for name, version in pins(image).items()
        if metadata.version(name) != version
    }
    assert wrong == {}, "pinned vs installed"


@pytest.mark.parametrize("image", IMAGES)
def test_pins_are_closed_under_dependencies(image: str):
    """Every requirement of a pinned distribution is pinned too, at a version it accepts."""
    pinned = pins(image)
    problems = [
        f"{name} needs {req}"
        for name in pinned
        for req in requirements_of(name)
        if canonicalize_name(req.name) not in pinned
        or not req.specifier.contains(pinned[canonicalize_name(req.name)], prereleases=True)
    ]
    assert problems == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _used(imports_dir: Path) -> set[str]:
    dumps = list(imports_dir.glob("*.json"))
    assert dumps, "the entry point wrote no record of its imports"
    return {name for dump in dumps for name in json.loads(dump.read_text())}


def _run_env(image: str, imports_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "SALESMESH_"))}
    return {
        **env,
        "PINNED_DISTRIBUTIONS": json.dumps(sorted(pins(image))),
        "IMPORTS_DIR": str(imports_dir),
    }


def _assert_pins_match(image: str, used: set[str], expected: set[str]) -> None:
    pinned = set(pins(image))
    assert expected <= used, "the run did not exercise what the image is for"
    assert used <= pinned, "imported from outside the image"
    assert pinned - closure(used) == set(), "pinned but neither imported nor required"


def test_serve_image_serves_gcs_with_its_pins_alone(
    bucket: Any, model_artifact: Path, tmp_path: Path
):
    """With only the serving pins importable, a gs:// artifact loads and answers over HTTP."""
    uri = upload_folder(storage_client(), model_artifact, f"gs://{bucket.name}/runs/c1")
    port = _free_port()
    env = {**_run_env("serve", tmp_path), "AIP_STORAGE_URI": uri, "AIP_HTTP_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, IMAGES["serve"]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        status = 0
        while status != 200:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the server never became healthy"
            try:
                status = _call(port, "GET", "/health")
            except OSError:
                time.sleep(0.05)
        body = {"instances": [{"store_id": "S02", "product_id": "P002"}]}
        assert _call(port, "POST", "/predict", body) == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    expected = {"gunicorn", "lightgbm", "pandas", "google-cloud-storage"}
    _assert_pins_match("serve", _used(tmp_path), expected)


def _call(port: int, method: str, path: str, body: Any = None) -> int:
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, None if body is None else json.dumps(body))
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_train_image_trains_from_gcs_with_its_pins_alone(bucket: Any, tmp_path: Path):
    """With only the training pins importable, a gs:// sales file trains into a gs:// run."""
    data = tmp_path / "sales.csv"
    write_sample(data, stores=1, products=2, days=120, seed=3)
    bucket.blob("uploads/sales.csv").upload_from_filename(str(data))
    imports = tmp_path / "imports"
    imports.mkdir()
    args = ["--data", f"gs://{bucket.name}/uploads/sales.csv", "--output"]
    args += [f"gs://{bucket.name}/runs/t1", "--horizon", "7", "--origins", "1"]
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, IMAGES["train"], *args],
        env=_run_env("train", imports),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert bucket.blob("runs/t1/manifest.json").exists()
    expected = {"lightgbm", "matplotlib", "pandas", "google-cloud-storage"}
    _assert_pins_match("train", _used(imports), expected)
