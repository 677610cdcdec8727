"""The local endpoint: real prediction servers behind the real router, artifacts on the emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from contract_endpoint import PROBE, EndpointContract, VersionFor, finish
from run_folders import upload_folder

from salesmesh.backends import endpoint as build_endpoint
from salesmesh.backends import local_deployments as ops
from salesmesh.backends.local_endpoint import ID_BASE, RECORD, LocalEndpoint, read_json
from salesmesh.backends.local_record import empty
from salesmesh.backends.local_servers import healthy, running
from salesmesh.errors import DeployError, PredictionError
from salesmesh.local.router import RouterProcess
from salesmesh.ports import ModelVersion, Operation, rfc3339


@pytest.fixture(scope="module")
def server_env(emulator_host: str) -> dict[str, str]:
    """What a prediction server needs to read artifacts from the emulator."""
    return {
        **os.environ,
        "STORAGE_EMULATOR_HOST": emulator_host,
        "GOOGLE_CLOUD_PROJECT": "salesmesh-test",
    }


@pytest.fixture(scope="module")
def artifacts(
    server_env: Mapping[str, str], model_artifact: Path, broken_artifact: Path
) -> dict[str, str]:
    """The good and the broken run uploaded once to an emulator bucket."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="salesmesh-test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": server_env["STORAGE_EMULATOR_HOST"]},
    )
    bucket = client.create_bucket("endpoint-artifacts")
    return {
        "good": upload_folder(client, model_artifact, f"gs://{bucket.name}/runs/good"),
        "broken": upload_folder(client, broken_artifact, f"gs://{bucket.name}/runs/broken"),
    }


@pytest.fixture
def endpoint(tmp_path: Path, server_env: dict[str, str]) -> Iterator[LocalEndpoint]:
    """A fresh endpoint with its real router running; every server is stopped afterwards."""
    router = RouterProcess(tmp_path / "state", "salesmesh")
    router.start()
    built = LocalEndpoint(tmp_path / "state", env=server_env)
    try:
        yield built
    finally:
        router.stop()  # first, as the mesh does: no kept-alive connection delays the servers
        built.stop_servers()


@pytest.fixture
def version_for(artifacts: dict[str, str]) -> VersionFor:
    return lambda n: ModelVersion(str(n), artifacts["good"], rfc3339())


@pytest.fixture
def broken_version(artifacts: dict[str, str]) -> ModelVersion:
    return ModelVersion("99", artifacts["broken"], rfc3339())


class TestLocalEndpointContract(EndpointContract):
    pass


def test_servers_outlive_the_deployer_stop_and_restore(
    endpoint: LocalEndpoint, version_for: VersionFor, server_env: dict[str, str]
) -> None:
    """A server deployed by a process that exits keeps serving; stop and restore keep its id."""
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from salesmesh.backends.local_endpoint import LocalEndpoint
        from salesmesh.ports import ModelVersion
        endpoint = LocalEndpoint(Path({str(endpoint.dir.parents[1])!r}))
        print(endpoint.deploy(ModelVersion("1", {version_for(1).artifact_uri!r}, "t"), 0).id)
        """
    )
    deployer = subprocess.run(
        [sys.executable, "-c", code], env=server_env, capture_output=True, text=True, timeout=120
    )
    assert deployer.returncode == 0, deployer.stderr
    deployed_id = deployer.stdout.strip()
    assert int(deployed_id) > ID_BASE  # never mistaken for a version id
    for _ in range(3):
        assert endpoint.predict([PROBE])["deployedModelId"] == deployed_id
    health = endpoint.health(deployed_id, PROBE)
    assert (health.ok, health.requests, health.errors) == (True, 3, 0), health.reason
    assert health.p99_ms is not None and 0 < health.p99_ms < 1000  # the router's window p99

    port = read_json(endpoint.dir / RECORD)["deployed_models"][0]["port"]  # type: ignore[index]
    assert endpoint.stop_servers() == [deployed_id]
    down = endpoint.health(deployed_id, PROBE)
    assert not down.ok and "not running" in down.reason
    with pytest.raises(PredictionError) as caught:
        endpoint.predict([PROBE])
    assert caught.value.status == 503
    assert endpoint.traffic() == {deployed_id: 100}  # the record survives a mesh restart

    assert endpoint.restore() == [deployed_id]
    assert endpoint.restore() == []  # nothing left to restart
    record = read_json(endpoint.dir / RECORD)
    assert record is not None and record["deployed_models"][0]["port"] != port
    assert endpoint.predict([PROBE])["deployedModelId"] == deployed_id

    pid = record["deployed_models"][0]["pid"]
    endpoint.undeploy(deployed_id)  # the last model may go, as on Vertex AI
    assert endpoint.traffic() == {} and endpoint.deployed() == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _fake_python(tmp_path: Path, body: str) -> str:
    """A 'python' that runs ``body`` (sh) instead of the prediction server."""
    script = tmp_path / "python.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_server_that_exits_is_a_deploy_error_with_its_log(tmp_path: Path) -> None:
    """The server gets Vertex's AIP_* variables; its early exit and stderr end up in the error."""
    python = _fake_python(tmp_path, f"env > {tmp_path}/env; echo 'cannot load model' >&2; exit 3")
    endpoint = LocalEndpoint(
        tmp_path / "state", env={"PATH": "/usr/bin:/bin", "X": "1"}, python=python
    )
    with pytest.raises(DeployError, match=r"exited with code 3(.|\n)*cannot load model"):
        endpoint.deploy(ModelVersion("7", "gs://m/runs/r-7", "t"), 0)
    seen = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert seen["AIP_STORAGE_URI"] == "gs://m/runs/r-7"
    assert seen["AIP_DEPLOYED_MODEL_ID"] == str(ID_BASE + 1)
    assert (seen["AIP_HEALTH_ROUTE"], seen["AIP_PREDICT_ROUTE"]) == ("/health", "/predict")
    assert seen["AIP_HTTP_PORT"].isdigit() and seen["SALESMESH_SERVE_HOST"] == "127.0.0.1"
    assert seen["X"] == "1"
    assert endpoint.deployed() == [] and endpoint.traffic() == {}


def test_server_that_never_serves_is_stopped(tmp_path: Path) -> None:
    """A server silent past the deadline is killed and the endpoint stays empty."""
    python = _fake_python(tmp_path, "exec sleep 60")
    endpoint = LocalEndpoint(tmp_path / "state", python=python, deploy_timeout=1.0)
    with pytest.raises(DeployError, match="did not become healthy in time"):
        endpoint.deploy(ModelVersion("7", "gs://m/runs/r-7", "t"), 100)
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)
    assert endpoint.deployed() == []


def test_predict_without_a_router_says_how_to_start_one(tmp_path: Path) -> None:
    """No router running (or a stale router.json) is a PredictionError naming `salesmesh up`."""
    endpoint = build_endpoint("local", state_dir=tmp_path)
    with pytest.raises(PredictionError, match="salesmesh up"):
        endpoint.predict([PROBE])
    endpoint_dir = tmp_path / "endpoints" / "salesmesh"
    endpoint_dir.mkdir(parents=True)
    (endpoint_dir / "router.json").write_text('{"url": "http://127.0.0.1:9", "pid": 999999999}')
    with pytest.raises(PredictionError, match="start the mesh: salesmesh up"):
        endpoint.predict([PROBE])
    assert endpoint.health("1000000001", PROBE).reason.startswith("1000000001 is not deployed")


def _pending(endpoint: LocalEndpoint, name: str) -> dict[str, Any]:
    """The pending operation's model entry (port, pid) as the record holds it."""
    record = read_json(endpoint.dir / RECORD)
    assert record is not None
    found = ops.find(record, name)
    assert not found["done"], found
    model: dict[str, Any] = found["model"]
    return model


def _until(condition: Any, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {limit:g} s"
        time.sleep(0.05)


def test_two_pollers_make_one_deployed_model(
    endpoint: LocalEndpoint, version_for: VersionFor, server_env: dict[str, str]
) -> None:
    """Two endpoints polling a deployment whose server just turned healthy complete it once."""
    name = endpoint.start_deploy(version_for(1), 0)
    model = _pending(endpoint, name)
    _until(lambda: healthy(model), "the server is not healthy")
    other = LocalEndpoint(endpoint.dir.parents[1], env=server_env)  # as another process would
    start = threading.Barrier(2)
    seen: list[Operation] = []

    def poll(poller: LocalEndpoint) -> None:
        start.wait()
        seen.append(poller.operation(name))

    threads = [threading.Thread(target=poll, args=(e,)) for e in (endpoint, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    first, second = seen
    assert first == second == Operation(name, done=True, deployed_model_id=model["id"])
    assert [d.id for d in endpoint.deployed()] == [model["id"]]
    assert endpoint.traffic() == {model["id"]: 100}


def test_restore_restarts_a_deployment_whose_server_was_killed(
    endpoint: LocalEndpoint, version_for: VersionFor
) -> None:
    """A pending deployment whose server got kill -9 starts again on restore and completes."""
    name = endpoint.start_deploy(version_for(1), 0)
    killed = _pending(endpoint, name)
    os.killpg(killed["pid"], signal.SIGKILL)
    _until(lambda: not running(killed["pid"]), "the killed server still runs", 10.0)
    assert endpoint.restore() == [killed["id"]]
    assert _pending(endpoint, name)["pid"] not in (None, killed["pid"])
    done = finish(endpoint, name)
    assert done == Operation(name, done=True, deployed_model_id=killed["id"])
    assert endpoint.predict([PROBE])["deployedModelId"] == killed["id"]


def test_deployment_stopped_with_the_mesh_waits_for_restore(tmp_path: Path) -> None:
    """stop_servers leaves a deployment pending (not failed); restore starts its server anew."""
    python = _fake_python(tmp_path, "exec sleep 60")  # a server that never becomes healthy
    endpoint = LocalEndpoint(tmp_path / "state", python=python, deploy_timeout=30.0)
    name = endpoint.start_deploy(ModelVersion("7", "gs://m/runs/r-7", "t"), 0)  # no wait
    stopped = _pending(endpoint, name)
    try:
        assert endpoint.stop_servers() == [stopped["id"]]
        assert not running(stopped["pid"])
        assert endpoint.operation(name) == Operation(name, done=False)
        assert endpoint.restore() == [stopped["id"]]
        assert running(_pending(endpoint, name)["pid"])
        assert endpoint.operation(name) == Operation(name, done=False)
    finally:
        endpoint.stop_servers()
    assert endpoint.deployed() == []


def test_record_keeps_the_newest_done_operations() -> None:
    """Past KEPT_DONE done operations the oldest are dropped (KeyError); pending ones stay."""
    record = empty("salesmesh")
    names = [
        ops.add(record, {"id": str(n), "version_id": "1"}, 0, 0.0) for n in range(ops.KEPT_DONE + 3)
    ]
    for name in names[1:]:
        ops.finish(record, ops.find(record, name), None)
    assert not ops.find(record, names[0])["done"]  # pending: kept whatever its age
    with pytest.raises(KeyError):
        ops.find(record, names[1])
    assert ops.outcome(ops.find(record, names[3])) == Operation(names[3], True, None, "3")
    assert len(record["operations"]) == ops.KEPT_DONE + 1
