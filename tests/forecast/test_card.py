"""The model card text: the verdict against seasonal naive and the accuracy table."""

from __future__ import annotations

from typing import Any

import pytest

from salesmesh.forecast import card


def _metrics(vs_naive: float | None, model_mase: float | None = 0.5) -> dict[str, Any]:
    figures = {"mase": 0.8, "smape": 40.0, "wape": 30.0, "bias": -2.5}
    return {
        "protocol": {
            "origins": ["2024-03-01", "2024-03-15"],
            "horizon": 14,
            "refit": "model fitted once before the first origin; baselines at every origin",
        },
        "models": {
            "salesmesh": {**figures, "mase": model_mase},
            "seasonal_naive": figures,
            "ets": figures,
        },
        "relative_mase": {"vs_seasonal_naive": vs_naive, "vs_ets": 0.9},
    }


MODEL = {
    "series": 12,
    "freq": "D",
    "last_date": "2024-03-28",
    "regressors": ["price", "promo"],
    "blend_weight_gbm": 0.75,
    "horizon": 14,
    "season_length": 7,
}
DATA = {"uri": "gs://data/sales.csv", "generation": "17", "md5": "abc==", "rows": 4800}


@pytest.mark.parametrize(
    ("ratio", "verdict"),
    [(0.8, "beats"), (0.0, "beats"), (1.0, "does NOT beat"), (1.3, "does NOT beat")],
)
def test_verdict_follows_the_mase_ratio_to_seasonal_naive(ratio, verdict):
    """A ratio below 1 (including a perfect 0) beats seasonal naive; 1 or more does not."""
    text = card.render(_metrics(ratio), MODEL, DATA, [])
    assert f"The model {verdict} seasonal naive (MASE ratio {ratio})" in text


def test_no_ratio_is_not_a_win():
    """When seasonal naive scored 0 there is no ratio, and the card does not claim a win."""
    assert "The model does NOT beat seasonal naive" in card.render(_metrics(None), MODEL, DATA, [])


def test_card_names_data_model_and_plots():
    """The card carries the data identity, blend, backtest origins and links each plot."""
    text = card.render(_metrics(0.8), MODEL, DATA, ["a.png", "b.png"])
    assert "`gs://data/sales.csv` (generation 17, md5 abc==)" in text
    assert "0.75 GBM /\n0.25 ETS and Theta" in text
    assert "2 origin(s) (2024-03-01, 2024-03-15)" in text
    assert "regressors: price, promo" in text
    assert "![a.png](a.png)\n![b.png](b.png)" in text


def test_summary_table_prints_missing_figures_as_na():
    """A None figure is shown as n/a; others with three decimals, one row per model."""
    lines = card.summary_lines(_metrics(0.8, model_mase=None))
    assert len(lines) == 4
    assert lines[1].split()[-7:] == ["n/a", "40.000", "30.000", "-2.500", "n/a", "n/a", "n/a"]
    assert lines[2].startswith("seasonal naive") and "0.800" in lines[2]


def test_card_reports_the_known_plan_beside_the_served_figures():
    """With a known plan the table gains its row and the text says which figures decide."""
    metrics = _metrics(0.8)
    plan = {"mase": 0.42, "smape": 20.0, "wape": 15.0, "bias": 1.0}
    metrics["known_plan"] = {
        "regressors": ["price", "promo"],
        "models": {"salesmesh": plan},
        "relative_mase": {"vs_seasonal_naive": 0.525},
    }
    lines = card.summary_lines(metrics)
    assert lines[-1].startswith("salesmesh, known plan") and "0.420" in lines[-1]
    text = card.render(metrics, MODEL, DATA, [])
    assert "scored as served, with no plan" in text
    assert "real price, promo (a known plan), it scores MASE 0.420" in text


def test_card_without_regressors_says_the_scored_forecast_is_the_served_one():
    """Without regressors there is no known-plan row and the card says why."""
    metrics = {**_metrics(0.8), "known_plan": None}
    assert len(card.summary_lines(metrics)) == 4
    assert "no regressors: the forecast scored is the one served" in card.render(
        metrics, MODEL, DATA, []
    )


def test_card_lists_series_that_end_early():
    """Recently ended series are listed as forecast, long-silent ones as inactive."""
    model = {**MODEL, "inactive_after": 91, "silence": {"S1/P9": 30, "S2/P1": 120}}
    text = card.render(_metrics(0.8), model, DATA, [])
    section = text.split("## Series that end early\n", 1)[1].split("\n## ", 1)[0]
    assert section.startswith("2 series have no rows up to 2024-03-28.")
    assert "forecast from its real history" in section
    assert "periods silent in brackets: `S1/P9` (30)." in section
    assert (
        "it is inactive and not forecast (requests for it are refused with that reason): 1, "
        "periods silent in brackets: `S2/P1` (120)." in section
    )
    quiet = card.render(_metrics(0.8), {**MODEL, "silence": {}}, DATA, [])
    assert "Every series has rows up to 2024-03-28." in quiet


def test_the_table_and_the_card_show_the_quantiles_scores():
    """Scaled pinball loss and the share of actuals inside the 50 % and 80 % intervals, beside
    the point figures; the card says how the quantiles were made and how each step covered."""
    metrics = _metrics(0.8)
    quantile_figures = {"spl": 0.3125, "coverage_50": 0.4861, "coverage_80": 0.8047}
    metrics["models"]["salesmesh"].update(quantile_figures, by_horizon={"coverage_80": [0.9, 0.75]})
    metrics["models"]["seasonal_naive"] = {**metrics["models"]["seasonal_naive"], "spl": 0.41}
    metrics["protocol"]["quantiles"] = {"levels": [0.1, 0.25, 0.5, 0.75, 0.9]}
    header, ours = card.summary_lines(metrics)[:2]
    assert header.split()[-7:] == ["SPL", "in", "50", "%", "in", "80", "%"]
    assert ours.endswith("0.312     49 %     80 %")
    calibration = {
        "method": "split conformal (test)",
        "span": 42,
        "origins": 3,
        "pools": {"regular": {"errors": 1200}, "intermittent": {"errors": 40}},
    }
    text = card.render(metrics, {**MODEL, "quantiles": calibration}, DATA, [])
    assert "Quantiles 0.1, 0.25, 0.5, 0.75, 0.9 by default" in text
    assert "split conformal (test)" in text
    assert "scaled pinball loss 0.312 (seasonal naive 0.410)" in text
    assert "(P10-P90) 80 % of the actuals; 80 % coverage by step: 90 %, 75 %." in text
    plain = card.render(_metrics(0.8), {**MODEL, "quantiles": None}, DATA, [])
    assert "point forecasts only" in plain


def test_the_card_says_what_forecasts_intermittent_series_and_why():
    metrics = _metrics(0.8)
    metrics["intermittent"] = {
        "series": 7,
        "member": "tsb",
        "relative_error": {"blend": 1.0, "local": 0.97, "tsb": 0.91, "seasonal_naive": 1.2},
    }
    text = card.render(metrics, MODEL, DATA, [])
    assert "7 series are intermittent" in text and "forecast by TSB" in text
    assert "series: blend 1.000, local 0.970, tsb 0.910, seasonal_naive 1.200;" in text
    metrics["intermittent"] = {"series": 0, "member": "blend", "relative_error": None}
    assert "No series is intermittent" in card.render(metrics, MODEL, DATA, [])
