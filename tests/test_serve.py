"""The prediction server: settings, the precomputed predictor, the WSGI app and the real process."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from run_folders import upload_folder
from werkzeug.test import Client

from salesmesh import forecast
from salesmesh.artifact import MANIFEST, sha256_file, write_manifest
from salesmesh.data.source import storage_client
from salesmesh.errors import ArtifactIntegrityError, ConfigError
from salesmesh.serve import Server, gunicorn_options
from salesmesh.serving import (
    MAX_BODY_BYTES,
    MAX_INSTANCES,
    Predictor,
    ServeSettings,
    create_app,
)
from salesmesh.serving.predictor import _precompute

GOOD = {"store_id": "S01", "product_id": "P001"}
START_TIMEOUT = 60.0  # seconds; start-up takes 1-3 s, but this machine's 2 cores may be busy


@pytest.fixture(scope="module")
def predictor(model_artifact: Path) -> Predictor:
    """The session's trained run, loaded once for the module."""
    return Predictor.from_folder(model_artifact)


@pytest.fixture(scope="module")
def client(predictor: Predictor, model_artifact: Path) -> Client:
    """A WSGI test client of the app, deployed as model 'dm-7' on the default routes."""
    settings = ServeSettings(storage_uri=str(model_artifact), deployed_model_id="dm-7")
    return Client(create_app(predictor, settings))


@pytest.fixture(scope="module")
def first_day(model_artifact: Path) -> date:
    """The day after the last date of the data the run was trained on."""
    sales = pd.read_csv(model_artifact.parent / "sales.csv", parse_dates=["date"])
    last: date = sales["date"].max().date()
    return last + timedelta(days=1)


def _post(client: Client, body: Any) -> tuple[int, Any]:
    response = client.post("/predict", json=body)
    return response.status_code, response.get_json()


def _reasons(client: Client, *instances: Any) -> list[dict[str, Any]]:
    status, body = _post(client, {"instances": list(instances)})
    assert status == 400
    assert body["error"] == f"{len(body['reasons'])} of {len(instances)} instances are invalid"
    reasons: list[dict[str, Any]] = body["reasons"]
    return reasons


# --- settings -------------------------------------------------------------------------------


def test_settings_defaults_need_only_the_storage_uri():
    """With only AIP_STORAGE_URI set, every other setting takes the Vertex AI default."""
    settings = ServeSettings.from_env({"AIP_STORAGE_URI": "gs://b/runs/1"})
    assert settings == ServeSettings(
        storage_uri="gs://b/runs/1",
        port=8080,
        health_route="/health",
        predict_route="/predict",
        deployed_model_id="",
        host="127.0.0.1",
        threads=4,
    )
    assert settings.bind == "127.0.0.1:8080"


def test_settings_read_every_variable():
    """Each AIP_* and SALESMESH_SERVE_* variable lands in its field; empty means unset."""
    env = {
        "AIP_STORAGE_URI": "/models/run",
        "AIP_HTTP_PORT": "9000",
        "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
        "AIP_DEPLOYED_MODEL_ID": "2",
        "SALESMESH_SERVE_HOST": "::",
        "SALESMESH_SERVE_THREADS": "",
    }
    settings = ServeSettings.from_env(env)
    assert (settings.port, settings.deployed_model_id, settings.threads) == (9000, "2", 4)
    assert settings.predict_route.endswith(":predict")
    assert settings.bind == "[::]:9000"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "AIP_STORAGE_URI is not set"),
        ({"AIP_HTTP_PORT": "http"}, "AIP_HTTP_PORT='http' is invalid: expected a whole number"),
        ({"AIP_HTTP_PORT": "70000"}, "AIP_HTTP_PORT=70000 is invalid: expected a TCP port"),
        ({"SALESMESH_SERVE_THREADS": "0"}, "SALESMESH_SERVE_THREADS=0 is invalid"),
        ({"AIP_PREDICT_ROUTE": "predict"}, "AIP_PREDICT_ROUTE='predict' is invalid"),
        ({"AIP_PREDICT_ROUTE": "/health"}, "expected a path other than the health route"),
    ],
)
def test_settings_refuse_bad_values(env: dict[str, str], message: str):
    """A missing storage URI or a bad value fails with the variable's name and what is allowed."""
    base = {} if not env else {"AIP_STORAGE_URI": "gs://b/r"}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ServeSettings.from_env({**base, **env})


# --- predictions ----------------------------------------------------------------------------


def test_prediction_is_the_models_forecast(client: Client, model_artifact: Path, first_day: date):
    """28 consecutive days from the day after the data, sales as the model forecast them."""
    status, body = _post(client, {"instances": [GOOD]})
    assert status == 200
    assert body["deployedModelId"] == "dm-7"
    [prediction] = body["predictions"]
    assert (prediction["store_id"], prediction["product_id"]) == ("S01", "P001")
    days = [date.fromisoformat(step["date"]) for step in prediction["forecast"]]
    assert days == [first_day + timedelta(days=i) for i in range(28)]
    frame = forecast.load(model_artifact).predict()
    expected = frame.loc[frame["series_id"] == "S01/P001", "forecast"].round(4).tolist()
    assert [step["sales"] for step in prediction["forecast"]] == pytest.approx(expected, abs=1e-9)
    assert all(
        step["sales"] >= 0 and round(step["sales"], 4) == step["sales"]
        for step in prediction["forecast"]
    )


def test_horizon_slices_and_order_is_kept(client: Client):
    """Each instance gets its own horizon, answers come in request order."""
    instances = [
        {"store_id": "S02", "product_id": "P003", "horizon": 7},
        {**GOOD, "horizon": 1},
        {**GOOD, "horizon": 28.0},  # Vertex AI's SDK sends numbers as doubles
        {**GOOD, "horizon": None},
    ]
    status, body = _post(client, {"instances": instances, "parameters": {"ignored": True}})
    assert status == 200
    predictions = body["predictions"]
    assert [(p["store_id"], len(p["forecast"])) for p in predictions] == [
        ("S02", 7),
        ("S01", 1),
        ("S01", 28),
        ("S01", 28),
    ]
    assert predictions[1]["forecast"] == predictions[2]["forecast"][:1]


def test_every_series_is_served(client: Client, model_artifact: Path):
    """Every store x product in series.csv has a forecast."""
    table = pd.read_csv(model_artifact / "series.csv", dtype=str)
    instances = [
        {"store_id": s, "product_id": p}
        for s, p in zip(table.store_id, table.product_id, strict=True)
    ]
    status, body = _post(client, {"instances": instances})
    assert status == 200
    assert len(body["predictions"]) == len(table) == 6


def test_predictor_answers_without_http(predictor: Predictor):
    """Predictor.predict takes a decoded body and returns (status, body) with no HTTP around it."""
    status, body = predictor.predict({"instances": [{**GOOD, "horizon": 2}]})
    assert status == 200
    assert list(body) == ["predictions"]
    assert len(body["predictions"][0]["forecast"]) == 2


# --- refusals -------------------------------------------------------------------------------


def test_unknown_series_has_its_reason(client: Client):
    """A series the model does not know is named in the reason, by store and product."""
    reasons = _reasons(client, GOOD, {"store_id": "S99", "product_id": "P001"})
    assert reasons == [{"index": 1, "reason": "unknown series store_id='S99' product_id='P001'"}]


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        ({"product_id": "P001"}, "store_id is missing"),
        ({"store_id": "S01"}, "product_id is missing"),
        ({"store_id": 1, "product_id": "P001"}, "store_id must be a string, got the number 1"),
        ({"store_id": "S01", "product_id": None}, "product_id must be a string, got null"),
        ({**GOOD, "horizon": 0}, "horizon must be a whole number from 1 to 28, got 0"),
        ({**GOOD, "horizon": 29}, "horizon must be a whole number from 1 to 28, got 29"),
        ({**GOOD, "horizon": 7.5}, "horizon must be a whole number from 1 to 28, got 7.5"),
        ({**GOOD, "horizon": True}, "horizon must be a whole number from 1 to 28, got true"),
        ({**GOOD, "horizon": "7"}, "horizon must be a whole number from 1 to 28, got '7'"),
        ({**GOOD, "price": 2.5}, "unexpected field(s) ['price']"),
        ({**GOOD, "price": 2.5}, "(a plan goes in future)"),
        (["S01", "P001"], "an instance must be an object with store_id, product_id, horizon"),
        ("S01/P001", "an instance must be an object"),
    ],
)
def test_bad_instances_have_reasons(client: Client, instance: Any, reason: str):
    """Every kind of bad instance is refused with a reason saying what is wrong."""
    [found] = _reasons(client, GOOD, instance)
    assert found["index"] == 1
    assert reason in found["reason"]


def test_all_problems_of_all_instances_are_reported(client: Client):
    """Nothing is predicted when any instance is bad; each bad one lists all its problems."""
    reasons = _reasons(client, {"horizon": -1}, GOOD, {"store_id": "S01", "product_id": "X"})
    assert [r["index"] for r in reasons] == [0, 2]
    assert reasons[0]["reason"] == (
        "store_id is missing; product_id is missing; "
        "horizon must be a whole number from 1 to 28, got -1"
    )


def test_long_values_are_not_echoed_whole(client: Client):
    """A huge id is quoted cut short, so an error never reflects a payload back."""
    [found] = _reasons(client, {"store_id": "S" * 10_000, "product_id": "P001"})
    assert len(found["reason"]) < 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([GOOD], "the request body must be a JSON object with an 'instances' list, got a list"),
        ({"instance": [GOOD]}, "the request has no 'instances'"),
        ({"instances": GOOD}, "'instances' must be a list of objects, got an object"),
        ({"instances": []}, "'instances' is empty"),
        ({"instances": [GOOD] * (MAX_INSTANCES + 1)}, "at most 1000 instances per request, got"),
    ],
)
def test_malformed_requests_are_400(client: Client, body: Any, message: str):
    """A body that is not a request object with a usable instances list is refused whole."""
    status, answer = _post(client, body)
    assert status == 400
    assert answer["error"].startswith(message)
    assert answer["reasons"] == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00", b"[" * 100_000])
def test_non_json_bodies_are_400(client: Client, raw: bytes):
    """Bytes that are not JSON, including no body and absurd nesting, are a 400."""
    response = client.post("/predict", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("the request body is not valid JSON")


def test_oversized_body_is_413(client: Client):
    """A declared body over the cap is refused before it is read."""
    response = client.post(
        "/predict", data=b" " * (MAX_BODY_BYTES + 1), content_type="application/json"
    )
    assert response.status_code == 413
    assert "exceeds the limit of 1,048,576 bytes" in response.get_json()["error"]


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, dict[str, str], Any]:
    """Call a WSGI app directly: (status line, headers, decoded JSON body)."""
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    assert int(started["headers"]["Content-Length"]) == len(body)
    return started["status"], started["headers"], json.loads(body)


def test_chunked_bodies_are_read_up_to_the_cap(predictor: Predictor, model_artifact: Path):
    """Without Content-Length a server-terminated stream is read, and refused when too long."""
    app = create_app(predictor, ServeSettings(storage_uri=str(model_artifact)))
    chunked = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "wsgi.input_terminated": True}
    request = json.dumps({"instances": [GOOD]}).encode()
    status, _, body = _call(app, {**chunked, "wsgi.input": io.BytesIO(request)})
    assert status == "200 OK"
    assert body["deployedModelId"] == ""
    huge = io.BytesIO(b" " * (MAX_BODY_BYTES + 1))
    status, _, body = _call(app, {**chunked, "wsgi.input": huge})
    assert status == "413 Content Too Large"


def test_unknown_path_is_404(client: Client):
    """A path that is neither route is a 404 naming both routes."""
    response = client.post("/v1/predict", json={"instances": [GOOD]})
    assert response.status_code == 404
    assert response.get_json()["error"] == (
        "no route '/v1/predict': GET /health for health, POST /predict for predictions"
    )


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/predict", "POST"), ("POST", "/health", "GET"), ("DELETE", "/predict", "POST")],
)
def test_wrong_method_is_405(client: Client, method: str, path: str, allow: str):
    """A known route called with another method is a 405 with an Allow header."""
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.get_json()["error"] == f"{path} takes {allow}, not {method}"


def test_health_reports_what_is_served(client: Client, model_artifact: Path):
    """The health route answers 200 with the series counts, horizon and artifact identity."""
    response = client.get("/health")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.get_json() == {
        "status": "ok",
        "series": 6,
        "inactive_series": 0,
        "horizon": 28,
        "quantiles": [0.1, 0.25, 0.5, 0.75, 0.9],
        "run_id": "run",
        "artifact": str(model_artifact),
        "manifest_sha256": sha256_file(model_artifact / MANIFEST),
        "created": json.loads((model_artifact / MANIFEST).read_text())["created"],
        "code_version": json.loads((model_artifact / MANIFEST).read_text())["code_version"],
        "deployedModelId": "dm-7",
    }


def test_vertex_routes_are_honoured(predictor: Predictor, model_artifact: Path):
    """Routes from AIP_HEALTH_ROUTE / AIP_PREDICT_ROUTE replace the defaults."""
    settings = ServeSettings(
        storage_uri=str(model_artifact), health_route="/v1/ok", predict_route="/v1/m:predict"
    )
    client = Client(create_app(predictor, settings))
    assert client.get("/v1/ok").status_code == 200
    assert client.post("/v1/m:predict", json={"instances": [GOOD]}).status_code == 200
    assert client.get("/health").status_code == 404


class _Exploding(Predictor):
    """A predictor with a bug: the app must turn it into a 500, not crash the worker."""

    def predict(self, body: Any) -> tuple[int, dict[str, Any]]:
        raise RuntimeError("bug")


def test_a_bug_is_a_500_and_logged(
    predictor: Predictor, model_artifact: Path, capsys: pytest.CaptureFixture[str]
):
    """An unexpected exception answers 500 and leaves its traceback on stderr."""
    broken = _Exploding({}, predictor.horizon, predictor.identity)
    client = Client(create_app(broken, ServeSettings(storage_uri=str(model_artifact))))
    response = client.post("/predict", json={"instances": [GOOD]})
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal error; see the server log"
    assert "RuntimeError: bug" in capsys.readouterr().err


def test_gunicorn_runs_one_threaded_worker_preloaded(predictor: Predictor, model_artifact: Path):
    """gunicorn takes every option (a typo would exit): one gthread worker, app in the master."""
    settings = ServeSettings(storage_uri=str(model_artifact), port=9123, threads=8)
    app = create_app(predictor, settings)
    server = Server(app, gunicorn_options(settings, predictor))
    config = server.cfg
    assert config.bind == ["127.0.0.1:9123"]
    assert (config.workers, config.worker_class_str, config.threads) == (1, "gthread", 8)
    assert config.preload_app and config.control_socket_disable
    assert (config.accesslog, config.errorlog, config.keepalive) == (None, "-", 75)
    assert server.wsgi() is app


# --- loading --------------------------------------------------------------------------------


def test_sales_are_rounded_and_never_negative():
    """Forecasts and quantiles are kept rounded to 4 places, negatives and -0.0 become 0.0."""
    frame = pd.DataFrame(
        {
            "series_id": ["a", "a"],
            "date": pd.to_datetime(["2024-01-02", "2024-01-01"]),
            "forecast": [-1e-9, 1.234567],
            "p10": [-2e-9, 0.654321],
        }
    )
    forecasts = _precompute(frame, {"a": ("S", "P")}, 2, "test", columns=("p10",))
    found = forecasts[("S", "P")]
    assert found.dates == ("2024-01-01", "2024-01-02")  # sorted by date
    assert [str(s) for s in found.sales] == ["1.2346", "0.0"]
    assert found.entries(2, ("p10",)) == [
        {"date": "2024-01-01", "sales": 1.2346, "p10": 0.6543},
        {"date": "2024-01-02", "sales": 0.0, "p10": 0.0},
    ]
    assert str(found.entries(2, ("p10",))[1]["p10"]) == "0.0"


@pytest.mark.parametrize("bad", ["forecast", "p90"])
def test_non_finite_forecasts_are_refused(bad: str):
    """A model forecasting NaN sales or quantiles cannot serve: JSON has no NaN."""
    frame = pd.DataFrame(
        {"series_id": ["a"], "date": pd.to_datetime(["2024-01-01"]), "forecast": [1.0]}
    )
    frame["p90"] = 2.0
    frame[bad] = float("nan")
    with pytest.raises(ArtifactIntegrityError, match="non-finite"):
        _precompute(frame, {"a": ("S", "P")}, 1, "test", columns=("p90",))


def _copy(model_artifact: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(model_artifact, copy)
    return copy


def _reseal(folder: Path) -> None:
    """Rewrite the manifest over the folder's current files, keeping the run's details."""
    extra = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).unlink()
    write_manifest(folder, {k: extra[k] for k in ("data", "model", "metrics")})


def test_series_table_must_match_the_model(model_artifact: Path, tmp_path: Path):
    """A series.csv naming other series than the model is refused at load."""
    folder = _copy(model_artifact, tmp_path)
    table = pd.read_csv(folder / "series.csv", dtype=str)
    table.iloc[:-1].to_csv(folder / "series.csv", index=False)
    _reseal(folder)
    with pytest.raises(ArtifactIntegrityError, match=r"disagree on series \['S02/P003'\]"):
        Predictor.from_folder(folder)


def test_unverified_folder_is_never_loaded(model_artifact: Path, tmp_path: Path):
    """A file altered after the manifest was written stops the load before the model is read."""
    folder = _copy(model_artifact, tmp_path)
    (folder / "series.csv").write_text("series_id,store_id,product_id\nx,y,z\n")
    with pytest.raises(ArtifactIntegrityError, match=r"series\.csv: sha256 differs"):
        Predictor.from_folder(folder)


def test_broken_model_cannot_load(broken_artifact: Path):
    """A model file that passes its manifest but is not a model fails load with a clear line."""
    with pytest.raises(ArtifactIntegrityError) as caught:
        Predictor.from_folder(broken_artifact)
    message = str(caught.value)
    assert message.startswith(f"artifact {broken_artifact} passes its manifest but cannot be")
    assert "\n" not in message


# --- the real process -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_env(uri: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "SALESMESH_"))}
    return {**env, "AIP_STORAGE_URI": uri, "AIP_HTTP_PORT": str(port), **extra}


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def start_server() -> Iterator[Any]:
    """Starts ``python -m salesmesh.serve`` processes; every one is stopped when the test ends."""
    processes: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "salesmesh.serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def _await_health(process: subprocess.Popen[str], port: int) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the server exited with {process.returncode}: {err}")
        try:
            status, body = _request(port, "GET", "/health")
        except OSError:
            time.sleep(0.05)
            continue
        assert status == 200
        health: dict[str, Any] = body
        return health
    pytest.fail(f"no healthy server on port {port} within {START_TIMEOUT} s")


def test_server_serves_an_artifact_from_gcs(
    bucket: Any, model_artifact: Path, start_server: Any, first_day: date
):
    """From a gs:// artifact: healthy, 28 ordered days over real HTTP, deployedModelId echoed."""
    uri = upload_folder(storage_client(), model_artifact, f"gs://{bucket.name}/runs/r9")
    port = _free_port()
    process = start_server(_server_env(uri, port, AIP_DEPLOYED_MODEL_ID="4242"))
    health = _await_health(process, port)
    assert (health["run_id"], health["artifact"], health["series"]) == ("r9", uri, 6)

    assert health["quantiles"] == [0.1, 0.25, 0.5, 0.75, 0.9]

    status, body = _request(port, "POST", "/predict", {"instances": [GOOD]})
    assert status == 200
    assert body["deployedModelId"] == "4242"
    days = [step["date"] for step in body["predictions"][0]["forecast"]]
    assert days == [(first_day + timedelta(days=i)).isoformat() for i in range(28)]
    assert list(body["predictions"][0]["forecast"][0]) == [
        "date",
        "sales",
        "p10",
        "p25",
        "p50",
        "p75",
        "p90",
    ]
    point = {"instances": [{**GOOD, "quantiles": False}]}
    status, body = _request(port, "POST", "/predict", point)
    assert status == 200 and list(body["predictions"][0]["forecast"][0]) == ["date", "sales"]

    status, body = _request(port, "POST", "/predict", {"instances": [{**GOOD, "horizon": 99}]})
    assert (status, body["reasons"][0]["index"]) == (400, 0)

    # one connection, many requests: keep-alive holds, as the router in front relies on it
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(20):
            connection.request("POST", "/predict", json.dumps({"instances": [GOOD]}))
            response = connection.getresponse()
            assert response.status == 200
            response.read()
    finally:
        connection.close()

    process.send_signal(signal.SIGTERM)  # how Vertex AI stops a container: a clean exit
    assert process.wait(timeout=15) == 0


def test_broken_artifact_never_becomes_healthy(
    bucket: Any, broken_artifact: Path, start_server: Any
):
    """An artifact that passes its manifest but cannot load: exit 1 and one line naming why."""
    uri = upload_folder(storage_client(), broken_artifact, f"gs://{bucket.name}/runs/broken")
    process = start_server(_server_env(uri, _free_port()))
    _, err = process.communicate(timeout=START_TIMEOUT)
    assert process.returncode == 1
    # LightGBM's native code may print its own "[LightGBM] [Fatal]" line first; ours ends it
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"salesmesh.serve: error: artifact {uri} passes its manifest but")
    assert f"{uri}/model.lgb.txt" in line  # the bucket's object, not a temporary copy


def test_tampered_artifact_refuses_to_start(bucket: Any, model_artifact: Path, start_server: Any):
    """An object changed after upload fails its sha256: the server exits before binding."""
    uri = upload_folder(storage_client(), model_artifact, f"gs://{bucket.name}/runs/tampered")
    bucket.blob("runs/tampered/model.lgb.txt").upload_from_string("tree\n")
    port = _free_port()
    process = start_server(_server_env(uri, port))
    _, err = process.communicate(timeout=START_TIMEOUT)
    assert process.returncode == 1
    assert f"artifact {uri}: refusing to load" in err
    assert "model.lgb.txt: sha256 differs from the manifest" in err
    with pytest.raises(OSError):
        _request(port, "GET", "/health")


def test_missing_storage_uri_exits_with_the_fix(start_server: Any):
    """Without AIP_STORAGE_URI the server says which variable to set and exits non-zero."""
    env = _server_env("", _free_port())
    del env["AIP_STORAGE_URI"]
    process = start_server(env)
    _, err = process.communicate(timeout=START_TIMEOUT)
    assert process.returncode == 1
    assert err.startswith("salesmesh.serve: error: AIP_STORAGE_URI is not set: set it to")
