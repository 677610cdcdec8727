"""The model card: what was trained on what, how it scored against baselines, and two plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from salesmesh.forecast.backtest import MODEL, PLAN, Backtest

FORECAST_PLOT = "forecast_vs_actual.png"
ERROR_PLOT = "error_by_horizon.png"
_LABELS = {
    MODEL: "salesmesh (blend)",
    "seasonal_naive": "seasonal naive",
    "ets": "ETS",
    "theta": "Theta",
}
_PLAN_LABEL = "salesmesh, known plan"


def write_plots(backtest: Backtest, directory: Path) -> list[str]:
    """Total forecast vs actual at the last origin, and MASE by horizon step; returns file names."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and training containers
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4))
    axis.plot(
        backtest.dates, np.nansum(backtest.actual, axis=0), color="black", lw=2, label="actual"
    )
    for name, forecast in backtest.forecasts.items():
        axis.plot(
            backtest.dates,
            np.nansum(forecast, axis=0),
            label=_LABELS[name],
            lw=2 if name == MODEL else 1,
            ls="-" if name == MODEL else "--",
        )
    axis.set_title(
        f"Total sales across {len(backtest.series)} series, forecast from "
        f"{backtest.last_origin.date()}"
    )
    axis.set_ylabel("units")
    axis.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(directory / FORECAST_PLOT, dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(9, 4))
    for name, figures in backtest.metrics["models"].items():
        steps = [np.nan if v is None else v for v in figures["by_horizon"]["mase"]]
        axis.plot(range(1, len(steps) + 1), steps, marker="o", ms=3, label=_LABELS[name])
    axis.set_xlabel("horizon step")
    axis.set_ylabel("MASE (lower is better)")
    axis.set_title("Error by horizon step, pooled over backtest origins")
    axis.legend()
    figure.tight_layout()
    figure.savefig(directory / ERROR_PLOT, dpi=100)
    plt.close(figure)
    return [FORECAST_PLOT, ERROR_PLOT]


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The accuracy table, one line per model, for the card and the console.

    The model's row is its forecast as served (no plan); with a known plan in ``metrics`` a
    last row gives the model told each window's real price and promotions.
    """
    lines = [f"{'model':<22}{'MASE':>8}{'sMAPE %':>10}{'WAPE %':>9}{'bias %':>9}"]
    # the model first, then the baselines in a fixed order (manifests store keys sorted)
    order = [name for name in _LABELS if name in metrics["models"]]
    rows = [(_LABELS[name], metrics["models"][name]) for name in order]
    plan = (metrics.get(PLAN) or {}).get("models", {}).get(MODEL)
    if plan is not None:
        rows.append((_PLAN_LABEL, plan))
    for label, figures in rows:
        cells = [fmt(figures.get(key)) for key in ("mase", "smape", "wape", "bias")]
        lines.append(f"{label:<22}{cells[0]:>8}{cells[1]:>10}{cells[2]:>9}{cells[3]:>9}")
    return lines


def _plan_text(metrics: dict[str, Any]) -> str:
    plan = metrics.get(PLAN)
    if not plan:
        return "The data has no regressors: the forecast scored is the one served."
    figures = plan["models"][MODEL]
    return (
        "The model is scored as served, with no plan: promotions off and each price held at "
        "its last regular value. These figures decide promotion. Told each window's real "
        f"{', '.join(plan['regressors'])} (a known plan), it scores MASE {fmt(figures['mase'])} "
        f"(ratio to seasonal naive {plan['relative_mase'].get('vs_seasonal_naive')})."
    )


def _endings_text(model: dict[str, Any]) -> str:
    """Which series stopped before the history's end, and which of them are still forecast."""
    silence: dict[str, int] = model.get("silence") or {}
    if not silence:
        return f"Every series has rows up to {model['last_date']}."
    limit = model["inactive_after"]
    recent = {k: v for k, v in silence.items() if v <= limit}
    inactive = {k: v for k, v in silence.items() if v > limit}
    return (
        f"{len(silence)} series have no rows up to {model['last_date']}. Periods without a row "
        "between a series' first and last rows are zero sales; after its last row they are "
        f"unknown. Silent for at most {limit} periods, a series ended recently and is forecast "
        "from its real history (the silent periods bridged by the mean of the same phase in "
        f"its last four seasons): {_listed(recent)}. Silent for longer, it is inactive and not "
        f"forecast (requests for it are refused with that reason): {_listed(inactive)}."
    )


def _listed(silence: dict[str, int], shown: int = 20) -> str:
    if not silence:
        return "none"
    longest = sorted(silence.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"`{sid}` ({periods})" for sid, periods in longest[:shown])
    more = len(longest) - shown
    return f"{len(longest)}, periods silent in brackets: {text}" + (
        f" and {more} more" if more > 0 else ""
    )


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def render(
    metrics: dict[str, Any], model: dict[str, Any], data: dict[str, Any], plots: list[str]
) -> str:
    """Markdown text of the card."""
    protocol = metrics["protocol"]
    relative = metrics["relative_mase"]
    table = "\n".join(f"    {line}" for line in summary_lines(metrics))
    ratio = relative.get("vs_seasonal_naive")  # None when seasonal naive scored 0 (unbeatable)
    verdict = "beats" if ratio is not None and ratio < 1 else "does NOT beat"
    images = "\n".join(f"![{name}]({name})" for name in plots)
    return f"""# Model card: salesmesh demand forecaster

## Data
- source: `{data.get("uri")}` (generation {data.get("generation")}, md5 {data.get("md5")})
- rows: {data.get("rows")}, series: {model["series"]}, frequency: `{model["freq"]}`,
  history to {model["last_date"]}
- regressors: {", ".join(model["regressors"]) or "none"}

## Model
A global LightGBM model over all series (lags, rolling means, calendar, promo and price
features, values scaled by each series' recent level) forecasting every step directly, blended
with per-series ETS and Theta: {model["blend_weight_gbm"]:.2f} GBM /
{1 - model["blend_weight_gbm"]:.2f} ETS and Theta in equal shares.
Horizon {model["horizon"]} periods, season length {model["season_length"]}.

## Backtest
Rolling origin, {len(protocol["origins"])} origin(s) ({", ".join(protocol["origins"])}),
{protocol["horizon"]} steps each; {protocol["refit"]}.
{_plan_text(metrics)}

{table}

The model {verdict} seasonal naive (MASE ratio {relative.get("vs_seasonal_naive")}); ratio to
ETS {relative.get("vs_ets")}.

## Series that end early
{_endings_text(model)}

## Intended use and limits
Store x product demand planning at the data's frequency. Forecasts assume the last known price
and no promotions unless future regressors are given. Series with little history lean on what
the model learned from the others; brand-new products need history before they can be forecast.

{images}
"""
