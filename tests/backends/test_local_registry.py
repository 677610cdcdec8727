"""The local model registry against the real GCS emulator, shared by real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from contract_registry import LABELS, METRICS, RegistryContract

from salesmesh.backends import model_registry
from salesmesh.backends.local_registry import LocalModelRegistry
from salesmesh.errors import SourceError
from salesmesh.ports import CHAMPION


@pytest.fixture
def registry(bucket: Any, tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(bucket.name, lock_dir=tmp_path / "locks")


class TestLocalRegistryContract(RegistryContract):
    pass


def test_versions_live_in_the_state_bucket(registry: LocalModelRegistry, bucket: Any) -> None:
    """The registry is one JSON document in the bucket that a second instance reads back."""
    first = registry.register("gs://m/runs/r-1", labels=LABELS, metrics=METRICS, aliases=[CHAMPION])
    document = json.loads(bucket.blob("registry/salesmesh-demand.json").download_as_bytes())
    assert [v["version_id"] for v in document["versions"]] == ["1"]
    again = LocalModelRegistry(bucket.name, lock_dir=registry.lock_path.parent)
    assert again.alias(CHAMPION) == first
    assert registry.lock_path.name == "registry-salesmesh-demand.lock"


def test_models_are_separate(bucket: Any, tmp_path: Path) -> None:
    """Two model names in one bucket number their versions independently."""
    one = model_registry("local", bucket=bucket.name, model="one", lock_dir=tmp_path)
    two = model_registry("local", bucket=bucket.name, model="two", lock_dir=tmp_path)
    one.register("gs://m/runs/a", labels={}, metrics={})
    assert two.register("gs://m/runs/b", labels={}, metrics={}).version_id == "1"
    assert [v.artifact_uri for v in one.versions()] == ["gs://m/runs/a"]


def test_bad_inputs_write_nothing(registry: LocalModelRegistry) -> None:
    """Bad aliases or non-JSON metrics are ValueError before anything is stored."""
    with pytest.raises(ValueError, match="alias"):
        registry.register("gs://m/runs/x", labels={}, metrics={}, aliases=["Champion"])
    with pytest.raises(ValueError, match="NaN"):
        registry.register("gs://m/runs/x", labels={}, metrics={"mase": float("nan")})
    with pytest.raises(ValueError, match="model name"):
        LocalModelRegistry("b", "../escape", lock_dir=Path("locks"))
    assert registry.versions() == []


def test_missing_bucket_says_what_to_do(bucket: Any, tmp_path: Path) -> None:
    """Registering into a bucket that does not exist names the bucket and the fix."""
    registry = LocalModelRegistry(f"{bucket.name}-gone", lock_dir=tmp_path)
    assert registry.versions() == []
    with pytest.raises(SourceError, match=r"bucket .*-gone does not exist.*salesmesh up"):
        registry.register("gs://m/runs/x", labels={}, metrics={})


def test_concurrent_processes_lose_no_version(bucket: Any, tmp_path: Path) -> None:
    """2 processes and 2 threads registering at once get 32 distinct ids and every version."""
    lock_dir = tmp_path / "locks"
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from salesmesh.backends.local_registry import LocalModelRegistry
        registry = LocalModelRegistry({bucket.name!r}, lock_dir=Path({str(lock_dir)!r}))
        time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
        for n in range(8):
            registry.register(f"gs://m/runs/{{sys.argv[2]}}-{{n}}", labels={{}}, metrics={{}})
        """
    )
    go = time.time() + 2.0  # both interpreters have imported the storage client by then
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(go), f"p{i}"], stderr=subprocess.PIPE)
        for i in range(2)
    ]
    registry = LocalModelRegistry(bucket.name, lock_dir=lock_dir)

    def register(name: str) -> None:
        time.sleep(max(0.0, go - time.time()))
        for n in range(8):
            registry.register(f"gs://m/runs/{name}-{n}", labels={}, metrics={})

    threads = [threading.Thread(target=register, args=(f"t{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    versions = registry.versions()
    assert [v.version_id for v in versions] == [str(n) for n in range(1, 33)]
    expected = {f"gs://m/runs/{who}-{n}" for who in ("p0", "p1", "t0", "t1") for n in range(8)}
    assert {v.artifact_uri for v in versions} == expected
