"""Quantiles served by the prediction server: the entry shape, the ``quantiles`` option, and a run
trained before quantiles existed (model format 3), through the real WSGI app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from predict_client import post
from predict_client import reason as refusal
from werkzeug.test import Client

from salesmesh import forecast
from salesmesh.artifact import MANIFEST, write_manifest
from salesmesh.serving import Predictor, ServeSettings, create_app

GOOD = {"store_id": "S01", "product_id": "P001"}
LEVELS = [0.1, 0.25, 0.5, 0.75, 0.9]
COLUMNS = ["p10", "p25", "p50", "p75", "p90"]
ENTRY = ["date", "sales", *COLUMNS]
SERVES = "this model serves p10, p25, p50, p75, p90; other levels are not served"


def _client(folder: Path) -> Client:
    settings = ServeSettings(storage_uri=str(folder), deployed_model_id="dm-q")
    return Client(create_app(Predictor.from_folder(folder), settings))


@pytest.fixture(scope="module")
def client(model_artifact: Path) -> Client:
    """The app serving the session's trained run (format 4: calibrated quantiles)."""
    return _client(model_artifact)


@pytest.fixture(scope="module")
def old_run(model_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's run rewritten as a model format 3 run: no calibration, manifest resealed."""
    folder = tmp_path_factory.mktemp("format-3") / "run"
    shutil.copytree(model_artifact, folder)
    config = json.loads((folder / "forecaster.json").read_text())
    config["format_version"] = 3
    del config["quantiles"]
    (folder / "forecaster.json").write_text(json.dumps(config))
    with np.load(folder / "state.npz", allow_pickle=False) as saved:
        arrays = {k: saved[k] for k in saved.files if not k.startswith("quantile_")}
    with (folder / "state.npz").open("wb") as handle:
        np.savez_compressed(handle, allow_pickle=False, **arrays)
    extra = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).unlink()
    write_manifest(folder, {k: extra[k] for k in ("data", "model", "metrics")})
    return folder


@pytest.fixture(scope="module")
def old_client(old_run: Path) -> Client:
    """The app serving the format 3 run."""
    return _client(old_run)


def _days(body: Any, index: int = 0) -> list[dict[str, Any]]:
    days: list[dict[str, Any]] = body["predictions"][index]["forecast"]
    return days


def test_entries_carry_the_trained_quantiles(client: Client, model_artifact: Path):
    """Each entry is date, sales, p10 .. p90: the library's quantiles, rounded like sales."""
    status, body = post(client, {**GOOD, "horizon": 10})
    assert status == 200, body
    days = _days(body)
    assert [list(day) for day in days] == [ENTRY] * 10
    model = forecast.load(model_artifact)
    frame = model.predict(series=["S01/P001"], quantiles=LEVELS).head(10)
    for name in ("sales", *COLUMNS):
        expected = frame["forecast" if name == "sales" else name].round(4).tolist()
        assert [day[name] for day in days] == pytest.approx(expected, abs=1e-9), name


def test_quantiles_are_monotone_non_negative_and_spread(client: Client, model_artifact: Path):
    """Over every series and step: 0 <= p10 <= ... <= p90, 4 places, and the band has width."""
    table = pd.read_csv(model_artifact / "series.csv", dtype=str)
    pairs = zip(table.store_id, table.product_id, strict=True)
    instances = [{"store_id": s, "product_id": p} for s, p in pairs]
    status, body = post(client, *instances)
    assert status == 200, body
    values = np.array(
        [[day[c] for c in COLUMNS] for p in body["predictions"] for day in p["forecast"]]
    )
    assert values.shape == (6 * 28, 5)
    assert (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()
    assert np.array_equal(values, values.round(4))
    assert (values[:, -1] > values[:, 0]).mean() > 0.9  # a band, not five copies of the point


@pytest.mark.parametrize("asked", [True, None])
def test_true_or_null_is_the_same_as_absent(client: Client, asked: Any):
    """ "quantiles": true (or null, as horizon takes null) answers exactly what absent does."""
    status, body = post(client, GOOD, {**GOOD, "quantiles": asked})
    assert status == 200, body
    assert _days(body, 0) == _days(body, 1)
    assert list(_days(body, 1)[0]) == ENTRY


def test_false_gives_point_forecasts_only(client: Client):
    """ "quantiles": false gives today's entries {date, sales}, with the same sales."""
    status, body = post(client, {**GOOD, "horizon": 7}, {**GOOD, "horizon": 7, "quantiles": False})
    assert status == 200, body
    with_bands, point = _days(body, 0), _days(body, 1)
    assert [list(day) for day in point] == [["date", "sales"]] * 7
    assert point == [{"date": d["date"], "sales": d["sales"]} for d in with_bands]


@pytest.mark.parametrize(
    ("value", "shown"),
    [("false", "'false'"), (0, "0"), (1, "1"), ([0.05, 0.95], "[0.05, 0.95]"), ({}, "{}")],
)
def test_a_bad_quantiles_value_is_refused(client: Client, value: Any, shown: str):
    """Anything but true, false or null is refused, naming the levels the model serves."""
    reason = refusal(client, GOOD, {**GOOD, "quantiles": value})
    assert reason == f"quantiles must be true or false ({SERVES}), got {shown}"


def test_a_bad_quantiles_value_is_listed_with_the_other_problems(client: Client):
    """One refusal lists a bad quantiles value beside the instance's other problems."""
    reason = refusal(client, GOOD, {"store_id": "S01", "horizon": 0, "quantiles": "p90"})
    assert reason.startswith("product_id is missing; horizon must be a whole number")
    assert reason.endswith(f"quantiles must be true or false ({SERVES}), got 'p90'")


def test_responses_are_deterministic_strict_json(client: Client):
    """The same request twice gives the same bytes, which a strict JSON parser reads."""
    request = {"instances": [GOOD, {**GOOD, "quantiles": False}]}
    first = client.post("/predict", json=request).get_data()
    assert client.post("/predict", json=request).get_data() == first

    def refuse(word: str) -> None:
        raise ValueError(f"{word} in the response")

    json.loads(first, parse_constant=refuse)


def test_health_reports_the_levels_served(client: Client, old_client: Client):
    """Health lists the quantile levels: the trained ones, none for a format 3 run."""
    assert client.get("/health").get_json()["quantiles"] == LEVELS
    assert old_client.get("/health").get_json()["quantiles"] == []


def test_a_format_3_run_serves_point_forecasts(client: Client, old_client: Client):
    """A run trained without quantiles serves {date, sales}, the same sales as with them."""
    status, old = post(old_client, GOOD, {**GOOD, "quantiles": False})
    assert status == 200, old
    assert [list(day) for day in _days(old)] == [["date", "sales"]] * 28
    assert _days(old, 0) == _days(old, 1)
    _, new = post(client, GOOD)
    assert [day["sales"] for day in _days(old)] == [day["sales"] for day in _days(new)]


def test_a_format_3_run_refuses_quantiles_true(old_client: Client):
    """Asking a run without quantiles for them is a 400 that says to retrain."""
    reason = refusal(old_client, GOOD, {**GOOD, "quantiles": True})
    assert reason.startswith("quantiles is true but this model was trained without quantiles: ")
    assert "retrain it (python -m salesmesh.train calibrates them)" in reason
    assert "this model serves point forecasts only" in refusal(
        old_client, GOOD, {**GOOD, "quantiles": 1}
    )


def test_a_format_3_run_answers_plans_point_only(old_client: Client):
    """A plan on a run without quantiles is forecast, as {date, sales} entries."""
    status, body = post(old_client, {**GOOD, "horizon": 3, "future": {"promo": [1, 1, 1]}})
    assert status == 200, body
    assert [list(day) for day in _days(body)] == [["date", "sales"]] * 3
