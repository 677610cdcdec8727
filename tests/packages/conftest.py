"""Fixtures for the function-package tests: the builder, and every package built once."""

from __future__ import annotations

from typing import Any

import package_venv
import pytest
from function_builder import FUNCTIONS, builder


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every function's package, built once per session by the real builder: name -> Package."""
    out = tmp_path_factory.mktemp("build") / "functions"
    out.mkdir()
    return {name: builder.build(name, out) for name in FUNCTIONS}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the function venvs cost this session: a cold install or a warm reuse."""
    if not package_venv.COSTS:
        return
    terminalreporter.section("function package venvs")
    for function, venv in package_venv.COSTS:
        how = "cold: created and installed" if venv.cold else "warm: reused from the cache"
        terminalreporter.write_line(f"{function}: {venv.seconds:6.1f} s  {how}  ({venv.key[:20]})")
