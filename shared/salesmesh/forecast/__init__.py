"""Demand forecasting: a global gradient-boosted model blended with ETS and Theta, backtested.

Public API::

    model = fit(history, horizon=28)          # history: series_id, date, sales (+ regressors)
    model.predict()                           # series_id, date, forecast
    model.save("out/"); load("out/")          # load verifies sha256 of every file first
"""

from salesmesh.forecast.model import Forecaster, Params, describe, fit, load

__all__ = ["Forecaster", "Params", "describe", "fit", "load"]
