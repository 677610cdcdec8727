"""`salesmesh predict` through the real router and a real prediction server: the quantile
columns it prints, ``--json`` and ``--no-quantiles``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mesh_cli import cli

from salesmesh.backends.local_endpoint import LocalEndpoint
from salesmesh.local.router import RouterProcess
from salesmesh.ports import ModelVersion, rfc3339
from salesmesh.rollout.versions import render_forecast

ASK = ("predict", "--store", "S01", "--product", "P001", "--horizon", "5")
QUANTILES = ["p10", "p25", "p50", "p75", "p90"]


@pytest.fixture(scope="module")
def served(
    model_artifact: Path, emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, str]]]:
    """A state folder whose endpoint serves the session's run behind a running router, and the
    environment a CLI needs to find it (the storage emulator stands for a running mesh)."""
    state = tmp_path_factory.mktemp("predict-cli") / "state"
    extra = {"STORAGE_EMULATOR_HOST": emulator_host, "GOOGLE_CLOUD_PROJECT": "salesmesh-test"}
    router = RouterProcess(state, "salesmesh")
    endpoint = LocalEndpoint(state, env={**os.environ, **extra})
    router.start()
    try:
        endpoint.deploy(ModelVersion("1", str(model_artifact), rfc3339()), 0)
        yield state, extra
    finally:
        router.stop()
        endpoint.stop_servers()


def _run(served: tuple[Path, dict[str, str]], *args: str) -> str:
    state, extra = served
    done = cli(state, *ASK, *args, extra=extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the one forecast printed in ``text``."""
    title, header, *rows = text.splitlines()
    assert title.startswith("S01 / P001: 5-day forecast (deployed model ")
    return header.split(), [row.split() for row in rows]


def test_predict_prints_the_quantiles_as_columns(served: tuple[Path, dict[str, str]]):
    """date, sales, p10 .. p90 per row: the served values to 2 places, ordered by level."""
    body = json.loads(_run(served, "--json"))
    days = body["predictions"][0]["forecast"]
    assert [list(day) for day in days] == [["date", "sales", *QUANTILES]] * 5
    header, rows = _table(_run(served))
    assert header == ["date", "sales", *QUANTILES]
    assert rows == [[day["date"], *(f"{day[name]:.2f}" for name in header[1:])] for day in days]
    assert all([float(v) for v in row[2:]] == sorted(float(v) for v in row[2:]) for row in rows)


def test_no_quantiles_prints_sales_only(served: tuple[Path, dict[str, str]]):
    """--no-quantiles asks for point forecasts: two columns, and {date, sales} in --json."""
    header, rows = _table(_run(served, "--no-quantiles"))
    assert header == ["date", "sales"]
    assert len(rows) == 5 and all(len(row) == 2 for row in rows)
    body = json.loads(_run(served, "--no-quantiles", "--json"))
    assert [list(day) for day in body["predictions"][0]["forecast"]] == [["date", "sales"]] * 5
    banded = json.loads(_run(served, "--json"))["predictions"][0]["forecast"]
    assert rows == [[day["date"], f"{day['sales']:.2f}"] for day in banded]


def test_columns_follow_the_levels_not_the_key_order():
    """A response whose keys came back reordered (Vertex AI's protobuf Struct) and whose numbers
    are floats still prints date, sales, then the quantiles by level."""
    day: dict[str, Any] = {"p97.5": 9.0, "sales": 5.0, "p2.5": 1.0, "date": "2025-01-01"}
    day |= {"p50": 4.5, "p10": 2.0}
    response = {"predictions": [{"store_id": "S", "product_id": "P", "forecast": [day]}]}
    _, header, row = render_forecast({**response, "deployedModelId": "7"}).splitlines()
    assert header.split() == ["date", "sales", "p2.5", "p10", "p50", "p97.5"]
    assert row.split() == ["2025-01-01", "5.00", "1.00", "2.00", "4.50", "9.00"]
