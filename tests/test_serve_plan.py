"""Plans in prediction requests and series that ended early, through the real WSGI app."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from predict_client import post
from predict_client import reason as refusal
from werkzeug.test import Client

from salesmesh import forecast
from salesmesh.serving import Predictor, ServeSettings, create_app
from salesmesh.train import run

HORIZON = 14
GOOD = {"store_id": "S02", "product_id": "P003", "horizon": 7}
RECENT = {"store_id": "S09", "product_id": "P020"}  # 20/day, rows end 30 days early
GONE = {"store_id": "S09", "product_id": "P021"}  # rows end 120 days early: inactive


def _promotions(days: int) -> pd.DataFrame:
    """Six daily series whose sales triple on promotion days (~15 %), priced 2.00 (1.60 on
    promotion)."""
    rng = np.random.default_rng(5)
    dates = pd.date_range("2024-01-01", periods=days, freq="D")
    weekly = np.array([0.9, 0.9, 1.0, 1.0, 1.1, 1.3, 1.2])[dates.dayofweek]
    frames = []
    for store, product in itertools.product(("S01", "S02"), ("P001", "P002", "P003")):
        promo = (rng.random(days) < 0.15).astype(int)
        mean = rng.uniform(10, 60) * weekly * np.where(promo == 1, 3.0, 1.0)
        frame = {"store_id": store, "product_id": product, "date": dates}
        frame |= {"sales": rng.poisson(mean), "price": np.where(promo == 1, 1.6, 2.0)}
        frames.append(pd.DataFrame({**frame, "promo": promo}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run on promotion-heavy sales plus one series that ended recently, one inactive."""
    root = tmp_path_factory.mktemp("plan")
    sales = _promotions(300)
    dates = pd.date_range(sales["date"].min(), sales["date"].max())
    extra = [
        pd.DataFrame({**RECENT, "date": dates[:-30], "sales": 20, "price": 2.0, "promo": 0}),
        pd.DataFrame({**GONE, "date": dates[:-120], "sales": 15, "price": 2.0, "promo": 0}),
    ]
    data = root / "sales.csv"
    pd.concat([sales, *extra]).to_csv(data, index=False)
    run(str(data), str(root / "run"), horizon=HORIZON, origins=1, progress=lambda _: None)
    return root / "run"


@pytest.fixture(scope="module")
def client(folder: Path) -> Client:
    """The WSGI app serving ``folder``."""
    settings = ServeSettings(storage_uri=str(folder), deployed_model_id="dm-1")
    return Client(create_app(Predictor.from_folder(folder), settings))


def _sales(body: Any, index: int = 0) -> list[float]:
    return [step["sales"] for step in body["predictions"][index]["forecast"]]


def test_a_promotion_plan_raises_the_forecast(client):
    """A week on promotion (at the promotion price) forecasts far more than no plan does."""
    plan = {"promo": [1] * 7, "price": [1.6] * 7}
    status, body = post(client, GOOD, {**GOOD, "future": plan})
    assert status == 200, body
    plain, promoted = _sales(body, 0), _sales(body, 1)
    assert sum(promoted) > 1.5 * sum(plain)
    assert [s["date"] for s in body["predictions"][1]["forecast"]] == [
        s["date"] for s in body["predictions"][0]["forecast"]
    ]


def test_a_plan_is_forecast_by_the_runs_own_model(client, folder):
    """The served plan forecast is the library's predict(future=...) for that series, rounded."""
    model = forecast.load(folder)
    plan = {"promo": [0, 1, 1, 0, 0, 1, 0], "price": [2.0, 1.6, 1.6, 2.0, 2.2, 1.6, 2.0]}
    future = pd.DataFrame({"series_id": "S02/P003", "date": model.dates(7), **plan})
    expected = model.predict(horizon=7, future=future, series=["S02/P003"])["forecast"]
    status, body = post(client, {**GOOD, "future": plan})
    assert status == 200, body
    assert _sales(body) == [round(float(v), 4) for v in expected]


def test_a_plan_of_the_defaults_is_the_plan_less_forecast(client):
    """No promotions and no price stated is exactly what is served without a plan."""
    status, body = post(client, GOOD, {**GOOD, "future": {"promo": [False] * 7}})
    assert status == 200, body
    assert _sales(body, 1) == _sales(body, 0)


def test_a_price_plan_is_accepted_and_changes_the_forecast(client):
    """A price plan for the whole horizon (the model's, when none is asked) is answered."""
    instance = {k: v for k, v in GOOD.items() if k != "horizon"}
    status, body = post(client, instance, {**instance, "future": {"price": [1.6] * HORIZON}})
    assert status == 200, body
    assert len(_sales(body, 1)) == HORIZON
    assert _sales(body, 1) != _sales(body, 0)


PRICE_RULE = "must be a price, a number >= 0"
PROMO_RULE = "must be 0 or 1 (or false/true)"


@pytest.mark.parametrize(
    ("future", "reason"),
    [
        ({"promo": [1] * 6}, "future.promo has 6 value(s) for a horizon of 7"),
        ({"price": [2.0] * 8}, "future.price has 8 value(s) for a horizon of 7"),
        (
            {"revenue": [1] * 7},
            "unknown regressor(s) 'revenue' in future: this model takes price, promo",
        ),
        ({"price": [2.0, "cheap", 2, 2, 2, 2, 2]}, f"future.price[1] {PRICE_RULE}, got 'cheap'"),
        ({"price": [2.0, 2, 2, -1.5, 2, 2, 2]}, f"future.price[3] {PRICE_RULE}, got -1.5"),
        ({"promo": [0, 2, 0, 0, 0, 0, 0]}, f"future.promo[1] {PROMO_RULE}, got 2"),
        ({"promo": [0, None, 0, 0, 0, 0, 0]}, f"future.promo[1] {PROMO_RULE}, got null"),
        ({"price": 2.0}, "future.price must be a list of 7 numbers, got the number 2.0"),
        ([1, 0], "future must be an object such as"),
    ],
)
def test_a_bad_plan_is_refused_with_its_reason(client, future, reason):
    """Each kind of bad plan is refused, and the reason says what is wrong with it."""
    assert reason in refusal(client, GOOD, {**GOOD, "future": future})


def test_a_non_finite_plan_value_is_refused(client):
    """NaN (which Python's JSON reader accepts) is no price."""
    body = '{"instances": [{"store_id": "S01", "product_id": "P001", "horizon": 2, ' \
        '"future": {"price": [2.0, NaN]}}]}'  # fmt: skip
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "future.price[1] must be a price" in response.get_json()["reasons"][0]["reason"]


def test_every_problem_of_a_plan_is_listed(client):
    """An unknown regressor and a short list are both reported for one instance."""
    reason = refusal(client, GOOD, {**GOOD, "future": {"stock": [1] * 7, "promo": [1]}})
    assert "unknown regressor(s) 'stock'" in reason
    assert "future.promo has 1 value(s)" in reason


def test_a_series_that_ended_recently_is_forecast_near_its_level(client):
    """The 20/day series whose rows stopped 30 days before the data's end is forecast near 20
    (padded with zeros it was forecast at 0.5 a day)."""
    status, body = post(client, RECENT)
    assert status == 200, body
    sales = _sales(body)
    assert len(sales) == HORIZON
    # the GBM half carries the season it learned from the other series into the silence
    assert sum(sales) / len(sales) == pytest.approx(20.0, rel=0.25)
    assert min(sales) > 14.0


def test_an_inactive_series_is_refused_with_its_reason(client, folder):
    """A series silent for 120 days is not forecast: the reason says so, with its last date."""
    reason = refusal(client, GOOD, GONE)
    last = pd.read_csv(folder.parent / "sales.csv", parse_dates=["date"])
    last = last[last["product_id"] == "P021"]["date"].max().date()
    assert reason == (
        f"series store_id='S09' product_id='P021' is inactive: its last sales row is {last}, "
        "more than 91 periods before the end of the data it was trained on, so it is not forecast"
    )


def test_health_and_series_table_name_the_inactive_series(client, folder):
    """Health counts the inactive series; series.csv marks it and lists active series first."""
    health = client.get("/health").get_json()
    assert (health["series"], health["inactive_series"]) == (7, 1)
    table = pd.read_csv(folder / "series.csv", dtype=str)
    assert table.iloc[-1][["series_id", "active", "silent_periods"]].tolist() == [
        "S09/P021",
        "False",
        "120",
    ]
    assert table[table["series_id"] == "S09/P020"]["silent_periods"].tolist() == ["30"]


def test_plans_in_one_request_are_each_answered_with_their_own(client):
    """One series under two plans, and another horizon, in one request: each as if alone."""
    promo = {**GOOD, "future": {"promo": [1] * 7, "price": [1.6] * 7}}
    plain = {**GOOD, "future": {"promo": [0] * 7}}
    short = {**RECENT, "horizon": 3, "future": {"price": [2.5, 2.5, 2.5]}}
    status, together = post(client, promo, plain, short)
    assert status == 200, together
    alone = [post(client, instance)[1]["predictions"][0] for instance in (promo, plain, short)]
    assert together["predictions"] == alone
    assert len(alone[2]["forecast"]) == 3


QUANTILES = ["p10", "p25", "p50", "p75", "p90"]


def test_a_plan_gets_the_librarys_quantiles_around_its_forecast(client, folder):
    """A planned instance's p10 .. p90 are the library's predict(future=..., quantiles=...)
    for that series and plan, rounded like sales."""
    model = forecast.load(folder)
    plan = {"promo": [0, 1, 1, 0, 0, 1, 0], "price": [2.0, 1.6, 1.6, 2.0, 2.2, 1.6, 2.0]}
    future = pd.DataFrame({"series_id": "S02/P003", "date": model.dates(7), **plan})
    frame = model.predict(horizon=7, future=future, series=["S02/P003"], quantiles=model.quantiles)
    status, body = post(client, {**GOOD, "future": plan})
    assert status == 200, body
    days = body["predictions"][0]["forecast"]
    assert [list(day) for day in days] == [["date", "sales", *QUANTILES]] * 7
    for name in QUANTILES:
        assert [day[name] for day in days] == [round(float(v), 4) for v in frame[name]], name


def test_a_promotion_plan_moves_the_band_with_the_forecast(client):
    """Under a week of promotions the whole band sits higher; it stays ordered and >= 0."""
    plan = {"promo": [1] * 7, "price": [1.6] * 7}
    status, body = post(client, GOOD, {**GOOD, "future": plan})
    assert status == 200, body
    plain, promoted = (
        np.array([[day[q] for q in QUANTILES] for day in p["forecast"]])
        for p in body["predictions"]
    )
    assert (promoted[:, 2] > plain[:, 2]).all()  # p50, every day
    for band in (plain, promoted):
        assert (band >= 0).all() and (np.diff(band, axis=1) >= 0).all()


def test_plans_with_and_without_quantiles_in_one_request(client):
    """Plans asking "quantiles": false get {date, sales}, the others p10 .. p90, in one
    request, with the same sales as when asked alone."""
    plan = {"promo": [1] * 7}
    point = {**GOOD, "future": plan, "quantiles": False}
    banded = {**GOOD, "future": plan}
    status, body = post(client, point, banded, {**GOOD, "quantiles": False})
    assert status == 200, body
    shapes = [{tuple(day) for day in p["forecast"]} for p in body["predictions"]]
    assert shapes == [{("date", "sales")}, {("date", "sales", *QUANTILES)}, {("date", "sales")}]
    assert _sales(body, 0) == _sales(body, 1) == _sales(post(client, point)[1])
