"""The model card: what was trained on what, how it scored against baselines, and its plots
(forecast vs actual, error by horizon step, and a fan chart of the quantiles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from salesmesh.forecast.backtest import MODEL, PLAN, Backtest
from salesmesh.forecast.quantiles import MIN_ERRORS

FORECAST_PLOT = "forecast_vs_actual.png"
ERROR_PLOT = "error_by_horizon.png"
FAN_PLOT = "quantile_fan.png"
FAN_SERIES = 3  # the largest series scored at the last origin
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
    if backtest.bands is None:
        return [FORECAST_PLOT, ERROR_PLOT]
    _fan(plt, backtest, directory / FAN_PLOT)
    return [FORECAST_PLOT, ERROR_PLOT, FAN_PLOT]


def _fan(plt: Any, backtest: Backtest, path: Path) -> None:
    """P10-P90 and P25-P75 bands, P50, the point forecast and the actuals of a few series at
    the last origin (quantiles calibrated on the other origins)."""
    assert backtest.bands is not None
    scored = np.flatnonzero(np.isfinite(backtest.bands[:, 0, 0]))
    volume = np.nansum(backtest.actual[scored], axis=1)
    shown = scored[np.argsort(-volume, kind="stable")[:FAN_SERIES]]
    figure, axes = plt.subplots(len(shown), 1, figsize=(9, 2.6 * len(shown)), squeeze=False)
    for axis, row in zip(axes[:, 0], shown, strict=True):
        bands, dates = backtest.bands[row], backtest.dates
        axis.fill_between(dates, bands[:, 0], bands[:, 4], alpha=0.2, color="C0", label="P10-P90")
        axis.fill_between(dates, bands[:, 1], bands[:, 3], alpha=0.35, color="C0", label="P25-P75")
        axis.plot(dates, bands[:, 2], color="C0", lw=1, label="P50")
        axis.plot(dates, backtest.forecasts[MODEL][row], color="C1", lw=2, label="forecast")
        axis.plot(dates, backtest.actual[row], color="black", lw=1.5, label="actual")
        axis.set_title(f"{backtest.series[row]}, from {backtest.last_origin.date()}", fontsize=9)
        axis.set_ylabel("units")
    axes[0, 0].legend(ncol=5, fontsize=8)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """The accuracy table, one line per model, for the card and the console.

    The model's row is its forecast as served (no plan); with a known plan in ``metrics`` a
    last row gives the model told each window's real price and promotions.
    """
    lines = [
        f"{'model':<22}{'MASE':>8}{'sMAPE %':>10}{'WAPE %':>9}{'bias %':>9}"
        f"{'SPL':>8}{'in 50 %':>9}{'in 80 %':>9}"
    ]
    # the model first, then the baselines in a fixed order (manifests store keys sorted)
    order = [name for name in _LABELS if name in metrics["models"]]
    rows = [(_LABELS[name], metrics["models"][name]) for name in order]
    plan = (metrics.get(PLAN) or {}).get("models", {}).get(MODEL)
    if plan is not None:
        rows.append((_PLAN_LABEL, plan))
    for label, figures in rows:
        cells = [fmt(figures.get(key)) for key in ("mase", "smape", "wape", "bias", "spl")]
        cover = [pct(figures.get(key)) for key in ("coverage_50", "coverage_80")]
        lines.append(
            f"{label:<22}{cells[0]:>8}{cells[1]:>10}{cells[2]:>9}{cells[3]:>9}{cells[4]:>8}"
            f"{cover[0]:>9}{cover[1]:>9}"
        )
    return lines


def _quantiles_text(metrics: dict[str, Any], model: dict[str, Any]) -> str:
    """How the quantiles are made and how they scored."""
    calibration = model.get("quantiles")
    if not calibration:
        return (
            "This model gives point forecasts only: its backtest scored fewer than "
            f"{MIN_ERRORS} errors to calibrate quantiles on."
        )
    levels = ", ".join(f"{t:g}" for t in metrics["protocol"]["quantiles"]["levels"])
    pools = calibration["pools"]
    ours = metrics["models"][MODEL]
    steps = ours.get("by_horizon", {}).get("coverage_80") or []
    naive = metrics["models"]["seasonal_naive"]
    scored = (
        f"Scored on each origin with quantiles calibrated on the other origins: scaled pinball "
        f"loss {fmt(ours.get('spl'))} (seasonal naive {fmt(naive.get('spl'))}), "
        f"the 50 % interval (P25-P75) held {pct(ours.get('coverage_50'))} and the 80 % interval "
        f"(P10-P90) {pct(ours.get('coverage_80'))} of the actuals"
        + (f"; 80 % coverage by step: {', '.join(pct(v) for v in steps)}." if steps else ".")
        if "coverage_80" in ours
        else "With one backtest origin the intervals cannot be scored on data that did not "
        "calibrate them: give the run more history."
    )
    return (
        f"Quantiles {levels} by default (any level on request). Method: {calibration['method']}; "
        f"recent scale over the last {calibration['span']} periods, {calibration['origins']} "
        f"origin(s), {pools['regular']['errors']} errors of regular series and "
        f"{pools['intermittent']['errors']} of intermittent ones (mostly zeros; their own "
        f"pool, without growth, when it has enough). The quantiles never go below 0 and "
        f"never cross.\n\n{scored}"
    )


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


_MEMBERS = {
    "blend": "the blend, like every other series",
    "local": "ETS and Theta alone (the booster left out)",
    "tsb": "TSB (chance of a demand x its size, smoothed)",
    "seasonal_naive": "seasonal naive (the same period one season back)",
}


def _intermittent_text(metrics: dict[str, Any]) -> str:
    """Which member forecasts the mostly-zero series, and the backtest figures that chose it."""
    choice = metrics.get("intermittent") or {}
    if not choice.get("series"):
        return "No series is intermittent (a demand less often than every 1.32 periods)."
    relative = choice.get("relative_error") or {}
    scores = ", ".join(f"{name} {fmt(relative.get(name))}" for name in _MEMBERS)
    return (
        f"{choice['series']} series are intermittent (a demand less often than every 1.32 "
        f"periods, recently). They are forecast by {_MEMBERS[choice['member']]}: the member "
        "with the lowest backtest error on them, relative to the blend's (geometric mean over "
        f"the series: {scores}; another than the blend must be under 0.98)."
    )


def fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def pct(value: object) -> str:
    """A share as a whole percentage: 0.8047 -> ``80 %``."""
    return f"{100 * value:.0f} %" if isinstance(value, float) else "n/a"


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

## Quantiles
{_quantiles_text(metrics, model)}

## Intermittent series
{_intermittent_text(metrics)}

## Series that end early
{_endings_text(model)}

## Intended use and limits
Store x product demand planning at the data's frequency. Forecasts assume the last known price
and no promotions unless future regressors are given. Series with little history lean on what
the model learned from the others; brand-new products need history before they can be forecast.

{images}
"""
