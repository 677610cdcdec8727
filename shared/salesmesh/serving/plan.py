"""A plan in a prediction instance: ``"future": {"price": [...], "promo": [...]}``.

One value per requested date, for regressors the model knows in advance. A regressor left out
takes what serving assumes without a plan (price held at its last regular value, promotions
off). Every problem is collected, so a client learns all of them from one refusal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from salesmesh.errors import ArtifactIntegrityError
from salesmesh.forecast.model import Forecaster
from salesmesh.serving.entries import Forecast
from salesmesh.serving.quote import kind, show

FIELD = "future"
Key = tuple[str, str]  # (store_id, product_id)


@dataclass(frozen=True)
class Request:
    """A checked instance with a plan: its series, requested steps, plan and whether it
    wants quantiles."""

    key: Key
    steps: int
    given: Mapping[str, list[float]]
    quantiles: bool = False


def parse(value: Any, known: Sequence[str], steps: int) -> tuple[dict[str, list[float]], list[str]]:
    """``(plan, problems)`` for an instance's ``future`` value and its requested ``steps``.

    ``known`` are the model's regressors known in advance. The plan is only meaningful when
    ``problems`` is empty.
    """
    if not isinstance(value, dict):
        return {}, [
            f'{FIELD} must be an object such as {{"price": [...], "promo": [...]}} with one '
            f"value per requested date, got {kind(value)}"
        ]
    problems: list[str] = []
    unknown = sorted(str(name) for name in value if name not in known)
    if unknown:
        takes = f"takes {', '.join(known)}" if known else "was trained without regressors"
        listed = ", ".join(show(name) for name in unknown[:5])
        problems.append(f"unknown regressor(s) {listed} in {FIELD}: this model {takes}")
    plan: dict[str, list[float]] = {}
    for name in (name for name in known if name in value):
        values, trouble = _series(name, value[name], steps)
        problems += trouble
        plan[name] = values
    return plan, problems


def _series(name: str, values: Any, steps: int) -> tuple[list[float], list[str]]:
    where = f"{FIELD}.{name}"
    if not isinstance(values, list):
        return [], [f"{where} must be a list of {steps} numbers, got {kind(values)}"]
    if len(values) != steps:
        return [], [
            f"{where} has {len(values)} value(s) for a horizon of {steps}: give one per "
            "requested date"
        ]
    out: list[float] = []
    problems: list[str] = []
    for index, item in enumerate(values):
        number = _number(item, name)
        if number is None:
            problems.append(f"{where}[{index}] {_rule(name)}, got {show(item)}")
        else:
            out.append(number)
        if len(problems) == 3:  # enough to show the pattern of a bad list
            break
    return out, problems


def _number(item: Any, name: str) -> float | None:
    """The value as a float if it fits the regressor's rule, else None."""
    if name == "promo" and isinstance(item, bool):
        return float(item)
    if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
        return None  # json.loads reads NaN and Infinity: they are no plan
    if name == "price" and item < 0:
        return None
    if name == "promo" and item not in (0, 1):
        return None
    return float(item)


def _rule(name: str) -> str:
    if name == "price":
        return "must be a price, a number >= 0"
    if name == "promo":
        return "must be 0 or 1 (or false/true)"
    return "must be a finite number"


def rounded(sales: NDArray[np.float64]) -> NDArray[np.float64]:
    """Sales as served: 4 places, never negative (nor -0.0)."""
    return np.asarray(np.round(np.clip(sales, 0.0, None), 4) + 0.0, dtype=np.float64)


class Planner:
    """Forecasts series under clients' plans, with the run's own model, and the quantiles it
    was trained with around them."""

    def __init__(self, forecaster: Forecaster, ids: Mapping[Key, str]) -> None:
        self._forecaster = forecaster
        self._ids = dict(ids)
        self.regressors = forecaster.regressors

    def forecast_all(self, requests: Sequence[Request]) -> list[Forecast]:
        """Each request's forecast, in order: one model pass per requested horizon (a pass
        costs about the same for one series or hundreds); quantiles for the requests that
        want them."""
        out: list[Forecast] = [Forecast((), ())] * len(requests)
        for steps in sorted({request.steps for request in requests}):
            members = [i for i, request in enumerate(requests) if request.steps == steps]
            series = [self._ids[requests[i].key] for i in members]
            plans = [requests[i].given for i in members]
            point = self._forecaster.predict_plans(series, plans, steps)
            sales = rounded(point)
            bands = None
            if any(requests[i].quantiles for i in members):
                # around the unrounded point, as predict() does: the bands match the library's
                bands = rounded(self._forecaster.bands(series, point))
            if not (np.isfinite(sales).all() and (bands is None or np.isfinite(bands).all())):
                raise ArtifactIntegrityError(f"a plan for {series[:5]} forecasts non-finite sales")
            days = tuple(self._forecaster.dates(steps).strftime("%Y-%m-%d"))
            for row, index in enumerate(members):
                found = None if bands is None else bands[row]
                out[index] = Forecast(days, tuple(sales[row].tolist()), found)
        return out
