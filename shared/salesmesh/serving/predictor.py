"""The forecasts one run folder serves, computed once, and the request contract they answer.

Without a plan a forecast is deterministic for an artifact: each series' forecast over the
model's full horizon, with the quantiles the model was trained with around it, is computed once,
at load, and a request only slices it (see :mod:`salesmesh.serving.entries` for an entry's shape
and the ``quantiles`` option). That keeps a prediction to dictionary look-ups, well inside the
latency budget on two slow cores, however large the model. An instance with a plan
(``"future": {"price": [...], "promo": [...]}``, see :mod:`salesmesh.serving.plan`) is forecast
when asked, its quantiles around its own forecast; all plans of a request share one model pass
per horizon (measured: 15 ms for one plan, 30 ms for 50, 0.3 s for 1,000, 50 series).
Inactive series (silent for longer than the model allows) are refused with that reason, never
answered with zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesmesh import artifact, forecast
from salesmesh.errors import ArtifactIntegrityError, MeshError
from salesmesh.forecast.model import CONFIG_FILE, MODEL_FILE, STATE_FILE
from salesmesh.serving import entries, plan
from salesmesh.serving.entries import Forecast
from salesmesh.serving.quote import kind, show

SERIES_FILE = "series.csv"
REQUIRED_FILES = (MODEL_FILE, STATE_FILE, CONFIG_FILE, SERIES_FILE)
MAX_INSTANCES = 1000
_FIELDS = ("store_id", "product_id", "horizon", plan.FIELD, entries.FIELD)

Key = plan.Key


class Predictor:
    """Answers prediction requests from forecasts precomputed for every series of one run."""

    def __init__(
        self,
        forecasts: Mapping[Key, Forecast],
        horizon: int,
        identity: Mapping[str, Any],
        inactive: Mapping[Key, str] | None = None,
        planner: plan.Planner | None = None,
        quantiles: tuple[float, ...] = (),
    ) -> None:
        """``inactive`` maps a series not forecast to why; ``planner`` forecasts plans (none:
        instances with a plan are refused); ``quantiles`` are the levels every forecast carries
        in its bands (none: point forecasts only)."""
        self._forecasts = dict(forecasts)
        self.horizon = horizon
        self.identity = dict(identity)
        self._inactive = dict(inactive or {})
        self._planner = planner
        self.quantiles = quantiles
        self._columns = entries.columns(quantiles)

    @classmethod
    def from_folder(cls, folder: Path, source: str | None = None) -> Predictor:
        """Verify the run folder against its manifest, load the model and forecast every series.

        ``source`` is where the folder came from (a gs:// URI), named in errors and in
        :meth:`health`. Raises :class:`ArtifactIntegrityError` for an artifact that fails its
        manifest or, passing it, cannot be loaded.
        """
        source = source or str(folder)
        manifest = artifact.verify(folder, REQUIRED_FILES)
        try:
            forecaster = forecast.load(folder)
            levels = forecaster.quantiles  # empty for a model trained without them
            frame = forecaster.predict(quantiles=levels or None)
            table = _series_table(folder / SERIES_FILE)
        except MeshError:
            raise
        except Exception as exc:  # a garbage model file raises whatever its library raises
            # one line, naming the artifact's file rather than its temporary copy
            detail = " ".join(str(exc).split()).replace(str(folder), source)
            detail = detail or type(exc).__name__
            raise ArtifactIntegrityError(
                f"artifact {source} passes its manifest but cannot be loaded: {detail}"
            ) from exc
        inactive = {
            table[series_id]: (
                f"series store_id={show(table[series_id][0])} product_id="
                f"{show(table[series_id][1])} is inactive: its last sales row is "
                f"{last.date()}, more than {forecaster.inactive_after} periods before the end "
                "of the data it was trained on, so it is not forecast"
            )
            for series_id, last in forecaster.inactive.items()
            if series_id in table
        }
        forecasts = _precompute(
            frame,
            table,
            forecaster.horizon,
            source,
            set(forecaster.inactive),
            entries.columns(levels),
        )
        identity = {
            "run_id": Path(source.rstrip("/")).name,
            "artifact": source,
            "manifest_sha256": artifact.sha256_file(folder / artifact.MANIFEST),
            "created": manifest.get("created", ""),
            "code_version": manifest.get("code_version", ""),
        }
        planner = plan.Planner(forecaster, {key: sid for sid, key in table.items()})
        return cls(forecasts, forecaster.horizon, identity, inactive, planner, levels)

    def health(self) -> dict[str, Any]:
        """What the health route reports: ok, how much is served (series, horizon, quantile
        levels) and from which artifact."""
        return {
            "status": "ok",
            "series": len(self._forecasts),
            "inactive_series": len(self._inactive),
            "horizon": self.horizon,
            "quantiles": list(self.quantiles),
            **self.identity,
        }

    def predict(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, response body) for a decoded JSON request body.

        200 with one prediction per instance, in order; 400 with the reason for every bad
        instance (nothing is predicted unless all are good) or for a malformed request.
        """
        if not isinstance(body, dict):
            return 400, _refusal(
                f"the request body must be a JSON object with an 'instances' list, got {kind(body)}"
            )
        if "instances" not in body:
            return 400, _refusal(
                'the request has no \'instances\': send {"instances": [{"store_id": ..., '
                '"product_id": ..., "horizon": ...}]}'
            )
        instances = body["instances"]
        if not isinstance(instances, list):
            return 400, _refusal(f"'instances' must be a list of objects, got {kind(instances)}")
        if not instances:
            return 400, _refusal("'instances' is empty: send at least one instance")
        if len(instances) > MAX_INSTANCES:
            return 400, _refusal(
                f"at most {MAX_INSTANCES} instances per request, got {len(instances)}: "
                "split the request"
            )
        answers = [self._answer(instance) for instance in instances]
        reasons = [
            {"index": index, "reason": answer}
            for index, answer in enumerate(answers)
            if isinstance(answer, str)
        ]
        if reasons:
            error = f"{len(reasons)} of {len(instances)} instances are invalid"
            return 400, {"error": error, "reasons": reasons}
        planned = [answer for answer in answers if isinstance(answer, plan.Request)]
        # every plan of the request in as few model calls as possible: one costs ~30 ms
        forecasts = iter(self._planner.forecast_all(planned) if self._planner and planned else [])
        predictions = [
            _prediction(answer.key, next(forecasts), answer.steps, self._served(answer.quantiles))
            if isinstance(answer, plan.Request)
            else answer
            for answer in answers
            if not isinstance(answer, str)
        ]
        return 200, {"predictions": predictions}

    def _answer(self, instance: Any) -> dict[str, Any] | plan.Request | str:
        """The prediction for one instance, its plan to forecast, or why it cannot have one."""
        if not isinstance(instance, dict):
            return f"an instance must be an object with {', '.join(_FIELDS)}; got {kind(instance)}"
        problems: list[str] = []
        unexpected = sorted(str(name) for name in instance if name not in _FIELDS)
        if unexpected:
            # refused rather than ignored: a client sending prices would think they were used
            problems.append(
                f"unexpected field(s) {unexpected[:5]}: an instance takes "
                f"{', '.join(_FIELDS)} only (a plan goes in {plan.FIELD})"
            )
        for name in ("store_id", "product_id"):
            if name not in instance:
                problems.append(f"{name} is missing")
            elif not isinstance(instance[name], str):
                problems.append(f"{name} must be a string, got {kind(instance[name])}")
        steps = _steps(instance.get("horizon"), self.horizon)
        if steps is None:
            problems.append(
                f"horizon must be a whole number from 1 to {self.horizon}, "
                f"got {show(instance['horizon'])}"
            )
        given: dict[str, list[float]] = {}
        if plan.FIELD in instance and steps is not None:
            known = self._planner.regressors if self._planner else []
            given, trouble = plan.parse(instance[plan.FIELD], known, steps)
            problems += trouble
        bands, refused = entries.wanted(instance.get(entries.FIELD), self._columns)
        if refused:
            problems.append(refused)
        if problems or steps is None:
            return "; ".join(problems)
        store, product = instance["store_id"], instance["product_id"]
        found = self._forecasts.get((store, product))
        if found is None:
            why = self._inactive.get((store, product))
            return why or f"unknown series store_id={show(store)} product_id={show(product)}"
        if given:
            return plan.Request((store, product), steps, given, bands)
        return _prediction((store, product), found, steps, self._served(bands))

    def _served(self, bands: bool) -> tuple[str, ...]:
        """The quantile columns of an entry: the model's, or none."""
        return self._columns if bands else ()


def _prediction(key: Key, found: Forecast, steps: int, columns: tuple[str, ...]) -> dict[str, Any]:
    return {"store_id": key[0], "product_id": key[1], "forecast": found.entries(steps, columns)}


def _steps(value: Any, limit: int) -> int | None:
    """The requested horizon (the model's when absent), or None when it is not allowed."""
    if value is None:
        return limit
    # Vertex AI's SDK sends numbers as protobuf doubles, so 7.0 means 7; 7.5 and true do not
    whole = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(whole, bool) or not isinstance(whole, int) or not 1 <= whole <= limit:
        return None
    return whole


def _series_table(path: Path) -> dict[str, Key]:
    """series_id -> (store_id, product_id) from the run's ``series.csv``."""
    # every id stays text: "007" is not 7, and a store named "NA" is not missing
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = sorted({"series_id", "store_id", "product_id"} - set(table.columns))
    if missing:
        raise ArtifactIntegrityError(f"{path} lacks column(s) {missing}")
    pairs = table[["store_id", "product_id"]]
    if table["series_id"].duplicated().any() or pairs.duplicated().any():
        raise ArtifactIntegrityError(f"{path} names a series or a store x product twice")
    return {
        str(sid): (str(store), str(product))
        for sid, store, product in zip(
            table["series_id"], table["store_id"], table["product_id"], strict=True
        )
    }


def _precompute(
    frame: pd.DataFrame,
    table: Mapping[str, Key],
    horizon: int,
    source: str,
    inactive: set[str] | None = None,
    columns: tuple[str, ...] = (),
) -> dict[Key, Forecast]:
    """Per store x product: the forecast dates, sales and quantile ``columns`` of ``frame``,
    rounded to 4 places, never negative.

    Every series of ``table`` must be forecast in ``frame`` or be ``inactive``.
    """
    modelled = set(frame["series_id"].astype(str)) | (inactive or set())
    if modelled != set(table):
        odd = sorted(modelled.symmetric_difference(table))
        raise ArtifactIntegrityError(
            f"artifact {source}: the model and {SERIES_FILE} disagree on series {odd[:5]}"
        )
    sales = plan.rounded(frame["forecast"].to_numpy(dtype=np.float64))
    bands = plan.rounded(frame.loc[:, list(columns)].to_numpy(dtype=np.float64))
    # JSON has no NaN: a response would not even parse
    if not (np.isfinite(sales).all() and np.isfinite(bands).all()):
        raise ArtifactIntegrityError(f"artifact {source} forecasts non-finite sales")
    days = pd.DatetimeIndex(frame["date"]).strftime("%Y-%m-%d").to_numpy()
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    forecasts: dict[Key, Forecast] = {}
    for series_id, found in frame.groupby("series_id", sort=False).indices.items():
        rows = np.asarray(found)[np.argsort(days[found], kind="stable")]
        if len(rows) != horizon:
            raise ArtifactIntegrityError(
                f"artifact {source}: series {series_id} has {len(rows)} forecast steps, "
                f"expected {horizon}"
            )
        # every series usually shares one calendar: keep one tuple of dates, not one per series
        dates = tuple(str(day) for day in days[rows])
        forecasts[table[str(series_id)]] = Forecast(
            shared.setdefault(dates, dates),
            tuple(sales[rows].tolist()),
            bands[rows] if columns else None,
        )
    return forecasts


def _refusal(reason: str) -> dict[str, Any]:
    return {"error": reason, "reasons": []}
