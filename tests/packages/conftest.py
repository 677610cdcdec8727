"""Fixtures for the function-package tests: every package built once, its venv, the buckets."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import package_venv
import pytest
from function_builder import FUNCTIONS, builder
from probe_runner import TRAINING_IMAGE


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every function's package, built once per session by the real builder: name -> Package."""
    out = tmp_path_factory.mktemp("build") / "functions"
    out.mkdir()
    return {name: builder.build(name, out) for name in FUNCTIONS}


@pytest.fixture(scope="session")
def venv_of(built: dict[str, Any]) -> Callable[[str], Path]:
    """The python of a function's own venv (installed on first use, cached per machine)."""
    pythons: dict[str, Path] = {}

    def python(name: str) -> Path:
        if name not in pythons:
            requirements = Path(built[name].folder) / "requirements.txt"
            pythons[name] = package_venv.ensure(requirements, name).python
        return pythons[name]

    return python


@pytest.fixture
def cloud(emulator_host: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Fresh data, model and state buckets on the emulator, and the settings naming them."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_host)
    from salesmesh.data.source import storage_client

    client = storage_client()
    stem = uuid.uuid4().hex[:10]
    buckets = {kind: client.create_bucket(f"{kind}-{stem}") for kind in ("data", "models", "state")}
    env = {
        "PATH": "/usr/bin:/bin",
        "STORAGE_EMULATOR_HOST": emulator_host,
        "GOOGLE_CLOUD_PROJECT": "demo-project",
        "SALESMESH_DATA_BUCKET": buckets["data"].name,
        "SALESMESH_MODEL_BUCKET": buckets["models"].name,
        "SALESMESH_STATE_BUCKET": buckets["state"].name,
        "SALESMESH_STATE_DIR": str(tmp_path / "state"),
        "SALESMESH_TRAINING_IMAGE": TRAINING_IMAGE,
    }
    return {"client": client, "env": env, **buckets}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the function venvs cost this session: a cold install or a warm reuse."""
    if not package_venv.COSTS:
        return
    terminalreporter.section("function package venvs")
    for function, venv in package_venv.COSTS:
        how = "cold: created and installed" if venv.cold else "warm: reused from the cache"
        terminalreporter.write_line(f"{function}: {venv.seconds:6.1f} s  {how}  ({venv.key[:20]})")
