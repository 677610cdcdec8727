"""What a fitted forecaster is made of besides its booster, and the files it is saved in.

Nothing is pickled: the booster is LightGBM's own text format, the arrays an ``.npz`` read with
``allow_pickle=False``, the rest JSON; :mod:`salesmesh.artifact` checks every file against its
manifest before any is parsed. Format 3 added each series' silence at the end of its history
(see :mod:`salesmesh.forecast.activity`); format 2 runs still load, every series active.
Format 4 added the quantile calibration (:mod:`salesmesh.forecast.quantiles`): its pools'
normalised error quantiles and each series' scale and kind; formats 2 and 3 load without
quantiles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from salesmesh.errors import ArtifactIntegrityError
from salesmesh.forecast import quantiles
from salesmesh.forecast.activity import threshold_for

Matrix = NDArray[np.float64]

MODEL_FILE = "model.lgb.txt"
STATE_FILE = "state.npz"
CONFIG_FILE = "forecaster.json"
FORMAT_VERSION = 4
READABLE = (2, 3, 4)


@dataclass
class State:
    """Everything prediction needs besides the booster."""

    freq: str
    horizon: int
    season: int
    series: NDArray[np.str_]
    last_date: pd.Timestamp
    values: Matrix  # the last ``lookback`` periods of every series, silences bridged
    regressors: dict[str, Matrix]  # last ``lookback`` periods of each regressor
    floor: NDArray[np.float64]
    price_reference: NDArray[np.float64] | None
    starts: NDArray[np.int64]  # relative to the first kept column (may be negative)
    blend_weight: float
    local: Matrix  # ETS+Theta forecast for ``horizon`` steps from the end of history
    feature_names: list[str] = field(default_factory=list)
    # periods each series was silent at the end of its history, and how many make it inactive
    silent: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    inactive_after: int = 0
    # quantile forecasts: the calibration, each series' recent scale and whether it is
    # intermittent (all None for a model without quantiles)
    calibration: quantiles.Calibration | None = None
    quantile_scale: NDArray[np.float64] | None = None
    sparse: NDArray[np.bool_] | None = None
    # the booster's weight per series when intermittent series are forecast by another member
    # than the blend (None: blend_weight for every series), and that member
    weights: NDArray[np.float64] | None = None
    member: str = "blend"

    @property
    def inactive(self) -> NDArray[np.bool_]:
        """Series that are not forecast: silent for more than ``inactive_after`` periods."""
        return np.asarray(self.silent > self.inactive_after, dtype=bool)


def save(booster: Any, state: State, directory: Path) -> None:
    """Write the booster and ``state`` into ``directory`` (the caller writes the manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / MODEL_FILE))
    arrays: dict[str, NDArray[Any]] = {
        "series": state.series,
        "values": state.values,
        "floor": state.floor,
        "starts": state.starts,
        "local": state.local,
        "silent": state.silent,
    }
    if state.price_reference is not None:
        arrays["price_reference"] = state.price_reference
    arrays.update({f"regressor__{k}": v for k, v in state.regressors.items()})
    if state.weights is not None:
        arrays["series_weight"] = state.weights
    calibration = state.calibration
    if calibration is not None:
        assert state.quantile_scale is not None and state.sparse is not None
        arrays["quantile_scale"] = state.quantile_scale
        arrays["quantile_sparse"] = state.sparse
        arrays["quantile_levels"] = quantiles.LEVELS
        arrays.update({f"quantile_pool__{k}": v.values for k, v in calibration.pools.items()})
    with (directory / STATE_FILE).open("wb") as handle:
        np.savez_compressed(handle, allow_pickle=False, **arrays)
    config = {
        "format_version": FORMAT_VERSION,
        "freq": state.freq,
        "horizon": state.horizon,
        "season": state.season,
        "last_date": state.last_date.isoformat(),
        "blend_weight": state.blend_weight,
        "regressors": list(state.regressors),
        "feature_names": state.feature_names,
        "inactive_after": state.inactive_after,
        "intermittent_member": state.member,
        "quantiles": None
        if calibration is None
        else {"default": list(quantiles.DEFAULT), **calibration.describe()},
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def read(directory: Path) -> tuple[Any, State]:
    """The booster and state saved in ``directory``, already verified against its manifest."""
    import lightgbm as lgb

    config = json.loads((directory / CONFIG_FILE).read_text())
    version = config.get("format_version")
    if version not in READABLE:
        raise ArtifactIntegrityError(
            f"{directory} holds forecaster format {version}, this salesmesh reads formats "
            f"{', '.join(map(str, READABLE))}: train it again with this version"
        )
    with np.load(directory / STATE_FILE, allow_pickle=False) as arrays:
        data = {key: arrays[key] for key in arrays.files}
    series = data["series"]
    state = State(
        freq=config["freq"],
        horizon=int(config["horizon"]),
        season=int(config["season"]),
        series=series,
        last_date=pd.Timestamp(config["last_date"]),
        values=data["values"],
        regressors={name: data[f"regressor__{name}"] for name in config["regressors"]},
        floor=data["floor"],
        price_reference=data.get("price_reference"),
        starts=data["starts"],
        blend_weight=float(config["blend_weight"]),
        local=data["local"],
        feature_names=list(config["feature_names"]),
        # format 2 padded silences with zeros and forecast every series: keep doing so
        silent=data.get("silent", np.zeros(len(series), dtype=np.int64)),
        inactive_after=int(config.get("inactive_after", threshold_for(config["freq"]))),
    )
    if state.silent.shape != series.shape:
        raise ArtifactIntegrityError(f"{directory}: {STATE_FILE} has one silence per series")
    weights = data.get("series_weight")
    if weights is not None:
        if weights.shape != series.shape or not ((weights >= 0) & (weights <= 1)).all():
            raise ArtifactIntegrityError(f"{directory}: {STATE_FILE} has bad series weights")
        state.weights = np.asarray(weights, dtype=np.float64)
    state.member = str(config.get("intermittent_member", "blend"))
    if config.get("quantiles"):
        state = _with_quantiles(directory, state, config["quantiles"], data)
    booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
    return booster, state


def _with_quantiles(
    directory: Path, state: State, config: dict[str, Any], data: dict[str, NDArray[Any]]
) -> State:
    """``state`` with the saved calibration, checked for shape and order."""
    from dataclasses import replace

    problem = f"{directory}: {STATE_FILE} has a broken quantile calibration"
    try:
        levels = data["quantile_levels"]
        pools = {
            name: quantiles.Pool(
                np.asarray(data[f"quantile_pool__{name}"], dtype=np.float64),
                tuple(float(v) for v in spec["growth"]),  # type: ignore[arg-type]
                int(spec["errors"]),
            )
            for name, spec in config["pools"].items()
        }
        scale = np.asarray(data["quantile_scale"], dtype=np.float64)
        sparse = np.asarray(data["quantile_sparse"], dtype=bool)
        calibration = quantiles.Calibration(pools, int(config["span"]), int(config["origins"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactIntegrityError(f"{problem} ({exc})") from exc
    if not np.array_equal(levels, quantiles.LEVELS):
        raise ArtifactIntegrityError(f"{problem}: its levels are not this salesmesh's")
    if set(pools) != {quantiles.REGULAR, quantiles.INTERMITTENT}:
        raise ArtifactIntegrityError(f"{problem}: pools {sorted(pools)}")
    for pool in pools.values():
        if pool.values.shape != levels.shape or len(pool.growth) != 3:
            raise ArtifactIntegrityError(f"{problem}: a pool of the wrong shape")
        if not np.isfinite(pool.values).all() or (np.diff(pool.values) < 0).any():
            raise ArtifactIntegrityError(f"{problem}: a pool's quantiles are not increasing")
    if scale.shape != state.series.shape or sparse.shape != state.series.shape:
        raise ArtifactIntegrityError(f"{problem}: one scale and one kind per series expected")
    if not (np.isfinite(scale) & (scale > 0)).all():
        raise ArtifactIntegrityError(f"{problem}: scales must be positive")
    return replace(state, calibration=calibration, quantile_scale=scale, sparse=sparse)
