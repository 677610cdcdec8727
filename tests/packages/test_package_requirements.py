"""Each package's requirements.txt pins every third-party module its code can import."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from function_builder import FUNCTIONS
from import_closure import closure, missing_requirements, requirements


@pytest.mark.parametrize("name", FUNCTIONS)
def test_requirements_cover_every_import(built: dict[str, Any], name: str):
    """Every third-party module main.py can reach, lazily or not, is pinned."""
    problems = missing_requirements(Path(built[name].folder), label=name)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_requirements_are_exact_pins(built: dict[str, Any], name: str):
    """Every requirement line is name==version, so a deploy installs what the tests ran."""
    pins, problems = requirements(Path(built[name].folder) / "requirements.txt")
    assert not problems, "\n".join(problems)
    assert "functions-framework" in pins and "google-cloud-storage" in pins


def test_dropping_the_vertex_sdk_from_train_trigger_fails_the_check(
    built: dict[str, Any], tmp_path: Path
):
    """Without google-cloud-aiplatform, the check names the module, where the gcp launcher
    imports it (lazily) and the distribution to pin."""
    package = tmp_path / "train_trigger"
    shutil.copytree(built["train_trigger"].folder, package)
    reqs = package / "requirements.txt"
    kept = [line for line in reqs.read_text().splitlines() if "google-cloud-aiplatform" not in line]
    assert len(kept) < len(reqs.read_text().splitlines())
    reqs.write_text("\n".join(kept) + "\n")
    problems = missing_requirements(package)
    assert len(problems) == 1, problems
    assert "google.cloud.aiplatform at salesmesh/backends/gcp.py:" in problems[0]
    assert "does not pin distribution google-cloud-aiplatform" in problems[0]
    assert "add google-cloud-aiplatform==" in problems[0]


def test_train_trigger_reaches_the_vertex_sdk_but_not_the_forecaster(built: dict[str, Any]):
    """The closure follows the backend registry to the lazily imported SDK, and leaves out
    library modules the function never imports (training, serving)."""
    reached = closure(Path(built["train_trigger"].folder))
    imported = {site.candidates[0] for site in reached.external}
    assert {"google.cloud.aiplatform", "google.cloud.storage", "functions_framework"} <= imported
    assert "salesmesh.backends.gcp" in reached.local  # only named by a registry string
    assert "salesmesh.intake" in reached.local
    assert not {"salesmesh.train", "salesmesh.forecast.model", "salesmesh.serve"} & set(
        reached.local
    )
    assert not {"lightgbm", "sklearn", "matplotlib.pyplot"} & imported


def write_package(root: Path, files: dict[str, str], pins: str) -> Path:
    for name, text in {**files, "requirements.txt": pins}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_imports_anywhere_in_reached_modules_count(tmp_path: Path):
    """Imports inside functions, relative imports, import_module literals and registry
    targets are all followed; a module nothing imports is not."""
    package = write_package(
        tmp_path / "pkg",
        {
            "main.py": "def handler():\n    import numpy\n    from lib import make\n",
            "lib/__init__.py": (
                "import importlib\nTARGETS = {'a': 'lib.impl:Thing'}\n"
                "def make(key):\n    module, _, name = TARGETS[key].partition(':')\n"
                "    return getattr(importlib.import_module(module), name)\n"
            ),
            "lib/impl.py": (
                "import importlib\nfrom .helpers import util\nclass Thing:\n    def go(self):\n"
                "        return importlib.import_module('requests')\n"
            ),
            "lib/helpers/util.py": (
                "import json\ntry:\n    import pandas\nexcept ImportError:\n    pass\n"
            ),
            "lib/unused.py": "import matplotlib\n",
        },
        "numpy==2.4.6\n",
    )
    reached = closure(package)
    assert reached.problems == []
    assert {"main", "lib", "lib.impl", "lib.helpers.util"} <= set(reached.local)
    assert "lib.unused" not in reached.local
    assert [site.candidates[0] for site in reached.external] == ["pandas", "requests", "numpy"]
    problems = missing_requirements(package)
    assert [p.split("distribution ")[1].split(",")[0] for p in problems] == ["pandas", "requests"]
    assert "lib/helpers/util.py:3" in problems[0] and "lib/impl.py:5" in problems[1]


def test_what_the_check_cannot_follow_fails_it(tmp_path: Path):
    """A computed import with no registry, a module no distribution provides, a missing
    package module and an unpinned line each fail the check with a reason."""
    package = write_package(
        tmp_path / "pkg",
        {
            "main.py": (
                "import importlib, os\nimport lib.gone\nimport no_such_distribution_xyz\n"
                "importlib.import_module(os.environ['PLUGIN'])\n"
            ),
            "lib/__init__.py": "",
        },
        "numpy>=1\n",
    )
    problems = missing_requirements(package)
    assert len(problems) == 4, problems
    expected = (
        "'numpy>=1' is not pinned as name==version",
        "main.py:4: an import of a computed name",
        "main.py:2: `import lib.gone` names a module the package lacks",
        "main.py:3 `import no_such_distribution_xyz` loads no_such_distribution_xyz, which no "
        "installed distribution provides",
    )
    for fragment in expected:
        assert any(fragment in problem for problem in problems), (fragment, problems)
