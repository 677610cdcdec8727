"""Fixtures shared by every test package: the real GCS emulator and a fresh bucket on it."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def emulator_host() -> Iterator[str]:
    """A real in-memory gcp-storage-emulator, shared by the whole session."""
    # a hard import: the emulator is a dev dependency, and gs:// paths must never skip quietly
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(emulator_host: str, monkeypatch: pytest.MonkeyPatch, request: Any) -> Any:
    """A fresh bucket on the emulator, with the environment pointing the client at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "salesmesh-test")
    from salesmesh.data.source import storage_client

    # the emulator lives for the session, so two modules' same-named tests need distinct buckets
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return storage_client().create_bucket(f"b-{stem}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state folder; training jobs still running when the test ends are stopped."""
    from salesmesh.backends.local import LocalTrainingLauncher

    yield tmp_path / "state"
    LocalTrainingLauncher(tmp_path / "state").stop_unfinished()


@pytest.fixture(scope="session")
def model_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished training run (2 stores x 3 products, daily), as a local folder.

    Series ``S01/P001`` .. ``S02/P003``, horizon 28. Trained once per session: treat it as
    read-only and copy it before changing anything.
    """
    from salesmesh.sample import write_sample
    from salesmesh.train import run

    root = tmp_path_factory.mktemp("model-artifact")
    data = root / "sales.csv"
    write_sample(data, stores=2, products=3, days=300, seed=7)
    run(str(data), str(root / "run"), horizon=28, origins=2, progress=lambda _: None)
    return root / "run"


@pytest.fixture(scope="session")
def broken_artifact(model_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose manifest checks out but whose model file is not a model: it cannot serve."""
    import json
    import shutil

    from salesmesh.artifact import MANIFEST, write_manifest

    broken = tmp_path_factory.mktemp("broken-artifact") / "run"
    shutil.copytree(model_artifact, broken)
    (broken / "model.lgb.txt").write_text("this is not a LightGBM model\n")
    extra = json.loads((broken / MANIFEST).read_text())
    (broken / MANIFEST).unlink()
    write_manifest(broken, {k: extra[k] for k in ("data", "model", "metrics")})
    return broken


# the rollout's world on the real local backends (tests/rollout_world.py), for any test module
from rollout_world import world  # noqa: E402, F401

# The slowest test files, slowest first (`pytest --durations`, 2026-12): they start at once on
# the xdist workers, and the many short files fill in around them, so no worker is left with a
# long file at the end while the others idle. A stale list costs balance only, never a test.
SLOWEST_FIRST = (
    "tests/local/test_rollout_crash.py",
    "tests/local/test_deploy_e2e.py",
    "tests/local/test_gate_e2e.py",
    "tests/local/test_demo.py",
    "tests/local/test_alert_rollback.py",
    "tests/test_deploy.py",
    "tests/test_rollback.py",
    "tests/local/test_sales_history_e2e.py",
    "tests/local/test_up_cli.py",
    "tests/backends/test_local_endpoint.py",
    "tests/test_intake.py",
    "tests/sales/test_retrain.py",
    "tests/sales/test_coalescing.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the slowest files first, each file's tests in their own order."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    root = Path(str(config.rootpath))

    def key(item: pytest.Item) -> int:
        relative = Path(str(item.path)).relative_to(root).as_posix()
        return rank.get(relative, len(rank))

    items.sort(key=key)  # stable: the rest keep their collected order
