"""One series' served forecast, the entries a response lists for it, and the ``quantiles`` option.

A forecast entry is ``{"date", "sales", "p10", "p25", "p50", "p75", "p90"}``: the point forecast
and the quantiles the model was trained with, rounded alike. An instance's ``"quantiles"`` says
whether it wants them: ``false`` gives ``{"date", "sales"}`` only; ``true`` asks for the trained
levels (refused for a model trained without them); absent (or null, as ``horizon`` takes null)
gives what the model has. Arbitrary level lists are not taken: the served levels are computed
once, at load, so that a prediction stays a look-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from salesmesh.forecast.quantiles import column
from salesmesh.serving.quote import show

FIELD = "quantiles"


@dataclass(frozen=True, eq=False, slots=True)
class Forecast:
    """A series' forecast as served: dates (YYYY-MM-DD), sales and, when the model has them,
    its quantiles ``(steps, levels)``, every value rounded (see :func:`plan.rounded`)."""

    dates: tuple[str, ...]
    sales: tuple[float, ...]
    bands: NDArray[np.float64] | None = None

    def entries(self, steps: int, columns: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The first ``steps`` entries, with the quantile ``columns`` (one per level of
        :attr:`bands`, in order) or, given none, date and sales only."""
        dates, sales = self.dates[:steps], self.sales[:steps]
        if not columns or self.bands is None:
            return [{"date": d, "sales": s} for d, s in zip(dates, sales, strict=True)]
        names = ("date", "sales", *columns)
        rows = self.bands[:steps].tolist()
        return [
            dict(zip(names, (d, s, *row), strict=True))
            for d, s, row in zip(dates, sales, rows, strict=True)
        ]


def columns(levels: Sequence[float]) -> tuple[str, ...]:
    """The entry keys of ``levels``: ``p10`` for 0.1."""
    return tuple(column(level) for level in levels)


def wanted(value: Any, served: Sequence[str]) -> tuple[bool, str | None]:
    """``(with quantiles, problem)`` for an instance's ``quantiles`` value, given the columns
    the model serves (none: point forecasts only). Only meaningful without a problem."""
    if value is None:
        return bool(served), None
    if value is False:
        return False, None
    if value is True:
        if served:
            return True, None
        return False, (
            f"{FIELD} is true but this model was trained without quantiles: retrain it "
            "(python -m salesmesh.train calibrates them), or ask for point forecasts "
            f'("{FIELD}": false, or leave it out)'
        )
    has = f"serves {', '.join(served)}" if served else "serves point forecasts only"
    return False, (
        f"{FIELD} must be true or false (this model {has}; other levels are not served), "
        f"got {show(value)}"
    )
