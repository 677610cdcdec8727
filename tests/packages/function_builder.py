"""``functions/build.py`` loaded as a module (it is a script, not part of any package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "functions" / "build.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("salesmesh_functions_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


builder = _load()
FUNCTIONS: list[str] = builder.discover()
