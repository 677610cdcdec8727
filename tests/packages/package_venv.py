"""A fresh virtualenv per function package, installed from its requirements.txt only.

``python3.11 -m venv`` + ``pip install -r requirements.txt``: no project install, no dev
packages, pip reading this machine's configuration as a deploy's build would read its own. A
venv is cached under ``~/.cache/salesmesh/function-venvs/`` (``$XDG_CACHE_HOME`` respected),
keyed by the requirements file's sha256 and the Python version, so the suite pays for an install
once per machine and again only when a pin changes. A file lock keeps two test sessions from
building the same venv; a venv whose install died half-way has no completion mark and is rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
VENVS = CACHE / "salesmesh" / "function-venvs"
COMPLETE = ".salesmesh-complete"  # written last: its presence means the install finished
INSTALL_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Venv:
    """A package's virtualenv, and what getting it cost this session."""

    python: Path
    key: str
    cold: bool  # True: installed now; False: reused from the cache
    seconds: float


COSTS: list[tuple[str, Venv]] = []  # (function, venv) as each was obtained; printed at the end


def base_python() -> str:
    """The interpreter venvs are made from: python3.11, as on Cloud Functions' python311."""
    found = shutil.which("python3.11")
    if found is None:
        raise AssertionError("python3.11 is not on PATH: function venvs are built with it")
    return found


def key_of(requirements: Path) -> str:
    """``py311-<sha256 of requirements.txt>``, the cache key."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    return f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def ensure(requirements: Path, label: str, cache: Path = VENVS) -> Venv:
    """The venv for ``requirements``, built now if the cache lacks it; fails with pip's own
    words if the requirements do not install together."""
    start = time.perf_counter()
    key = key_of(requirements)
    folder = cache / key
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session building it: wait, then reuse
        cold = not (folder / COMPLETE).is_file()
        if cold:
            _install(requirements, folder)
    venv = Venv(folder / "bin" / "python", key, cold, time.perf_counter() - start)
    COSTS.append((label, venv))
    return venv


def _install(requirements: Path, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)  # a half-built venv from a session that died
    _run([base_python(), "-m", "venv", str(folder)], "create the venv")
    python = str(folder / "bin" / "python")
    # -I: nothing from this test process's environment (PYTHONPATH, user site) leaks in;
    # pip's own configuration files and PIP_* variables still apply, as they should
    pip = [python, "-I", "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", "-r", str(requirements)], f"install {requirements}")
    _run([*pip, "check"], "check the installed distributions agree")
    frozen = _run([*pip, "freeze", "--all"], "list what was installed")
    (folder / COMPLETE).write_text(requirements.read_text() + "\n# installed:\n" + frozen)


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"could not {what} (exit {result.returncode}): {' '.join(command)}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout
