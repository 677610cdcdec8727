"""Long sales tables to dense panels: frequencies, grid snapping, gaps and regressors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesmesh.errors import ForecastError
from salesmesh.forecast.panel import future_dates, infer_freq, season_length, snap, to_panel


def _dates(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values)))


@pytest.mark.parametrize(
    ("dates", "expected"),
    [
        (pd.date_range("2024-01-01", periods=30, freq="D"), "D"),
        (pd.date_range("2024-01-07", periods=20, freq="W-SUN"), "W-SUN"),
        (pd.date_range("2024-01-03", periods=20, freq="W-WED"), "W-WED"),
        (pd.date_range("2020-01-01", periods=30, freq="MS"), "MS"),
        (pd.date_range("2020-01-31", periods=30, freq="ME"), "ME"),
        (pd.date_range("2010-01-01", periods=12, freq="QS"), "QS-JAN"),
        (pd.date_range("2010-02-01", periods=12, freq="QS-FEB"), "QS-FEB"),
        (pd.date_range("2010-03-31", periods=12, freq="QE"), "QE-MAR"),
        (pd.date_range("2000-01-01", periods=8, freq="YS"), "YS-JAN"),
    ],
)
def test_infer_freq_names_the_grid_and_its_anchor(dates, expected):
    """Daily, weekly (with weekday), month/quarter/year start or end are recognised."""
    assert infer_freq(pd.Series(dates)) == expected


def test_infer_freq_uses_the_common_spacing_despite_gaps():
    """Missing days and repeated dates (many series) still read as daily."""
    days = pd.date_range("2024-01-01", periods=60, freq="D").delete([5, 6, 20, 40])
    assert infer_freq(pd.Series(days.append(days))) == "D"


def test_infer_freq_refuses_unsupported_spacing():
    """A 3-day grid is not a supported frequency and the message says which are."""
    with pytest.raises(ForecastError, match=r"unsupported spacing of 3 days.*daily, weekly"):
        infer_freq(pd.Series(pd.date_range("2024-01-01", periods=10, freq="3D")))


def test_infer_freq_needs_two_dates():
    """One distinct date carries no spacing."""
    with pytest.raises(ForecastError, match="fewer than two distinct dates"):
        infer_freq(_dates("2024-01-01", "2024-01-01"))


@pytest.mark.parametrize(
    ("freq", "given", "expected"),
    [
        ("MS", "2024-02-15", "2024-02-01"),
        ("ME", "2024-02-15", "2024-02-29"),
        ("QS", "2024-05-20", "2024-04-01"),
        ("QE", "2024-05-20", "2024-06-30"),
        ("W-SUN", "2024-01-03", "2024-01-07"),  # a Wednesday joins the week ending Sunday
        ("W-SUN", "2024-01-07", "2024-01-07"),
        ("D", "2024-01-03", "2024-01-03"),
    ],
)
def test_snap_moves_dates_onto_the_grid(freq, given, expected):
    """Dates inside a period move to the period's start or end as the alias says."""
    assert snap(_dates(given), freq).iloc[0] == pd.Timestamp(expected)


@pytest.mark.parametrize("freq", ["B", "h"])
def test_unsupported_frequency_is_a_forecast_error(freq):
    """An alias the panel cannot build a grid for raises ForecastError, not KeyError."""
    history = pd.DataFrame(
        {"series_id": "a", "date": pd.date_range("2024-01-01", periods=10), "sales": 1.0}
    )
    with pytest.raises(ForecastError, match=f"unsupported frequency '{freq}'"):
        to_panel(history, freq)


@pytest.mark.parametrize(
    ("freq", "season"),
    [("D", 7), ("W-SUN", 52), ("W-MON", 52), ("MS", 12), ("ME", 12), ("QS", 4), ("QE", 4)],
)
def test_season_length_per_frequency(freq, season):
    """A week of days, a year of weeks, months or quarters."""
    assert season_length(freq) == season


@pytest.mark.parametrize(
    ("freq", "last", "expected"),
    [
        ("D", "2024-02-28", ["2024-02-29", "2024-03-01", "2024-03-02"]),
        ("W-SUN", "2024-01-07", ["2024-01-14", "2024-01-21", "2024-01-28"]),
        ("ME", "2024-01-31", ["2024-02-29", "2024-03-31", "2024-04-30"]),
        ("MS", "2024-12-01", ["2025-01-01", "2025-02-01", "2025-03-01"]),
        ("QS", "2024-10-01", ["2025-01-01", "2025-04-01", "2025-07-01"]),
    ],
)
def test_future_dates_follow_the_last_date_on_the_grid(freq, last, expected):
    """The forecast dates are the next grid dates after the last history date."""
    got = future_dates(pd.DatetimeIndex([last]), freq, 3)
    assert list(got) == list(pd.to_datetime(expected))


def test_to_panel_marks_before_start_as_nan_and_gaps_after_start_as_zero():
    """A series is NaN until its first sale; a missing day after that is zero sales."""
    history = pd.DataFrame(
        {
            "series_id": ["old", "old", "old", "new", "new"],
            "date": pd.to_datetime(
                ["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-03", "2024-01-04"]
            ),
            "sales": [1.0, 2.0, 4.0, 7.0, 8.0],
        }
    )
    panel = to_panel(history)
    assert list(panel.series) == ["new", "old"]
    assert list(panel.dates) == list(pd.date_range("2024-01-01", "2024-01-04"))
    np.testing.assert_array_equal(panel.values, [[np.nan, np.nan, 7, 8], [1, 2, 0, 4]])
    np.testing.assert_array_equal(panel.starts, [2, 0])


def test_to_panel_sums_duplicate_sales_and_carries_regressors_forward():
    """Two rows for one day add up; a regressor missing on a day keeps its last value."""
    history = pd.DataFrame(
        {
            "series_id": ["a"] * 4,
            "date": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-04"]),
            "sales": [1.0, 2.0, 5.0, 6.0],
            "price": [2.0, 4.0, 3.5, 3.0],
        }
    )
    panel = to_panel(history)
    np.testing.assert_array_equal(panel.values, [[3, 5, 0, 6]])
    np.testing.assert_array_equal(panel.regressors["price"], [[3.0, 3.5, 3.5, 3.0]])


def test_to_panel_snaps_mid_month_dates_to_month_start():
    """Monthly sales dated the 15th land on the first of each month with freq MS."""
    history = pd.DataFrame(
        {
            "series_id": "a",
            "date": pd.to_datetime(["2024-01-15", "2024-02-15", "2024-03-15"]),
            "sales": [1.0, 2.0, 3.0],
        }
    )
    panel = to_panel(history, "MS")
    assert list(panel.dates) == list(pd.date_range("2024-01-01", periods=3, freq="MS"))
    np.testing.assert_array_equal(panel.values, [[1, 2, 3]])


def test_to_panel_names_missing_columns():
    """A history without sales says which columns are missing and which are needed."""
    with pytest.raises(ForecastError, match=r"lacks column\(s\) \['sales'\]"):
        to_panel(pd.DataFrame({"series_id": ["a"], "date": ["2024-01-01"]}))


def test_to_panel_refuses_empty_history():
    """An empty table is a ForecastError, not an IndexError later on."""
    with pytest.raises(ForecastError, match="history is empty"):
        to_panel(pd.DataFrame(columns=["series_id", "date", "sales"]))


def test_to_panel_refuses_text_regressors():
    """A non-numeric declared regressor is named in a ForecastError, not a pandas failure."""
    history = pd.DataFrame(
        {
            "series_id": "a",
            "date": pd.date_range("2024-01-01", periods=5),
            "sales": 1.0,
            "store": "north",
        }
    )
    with pytest.raises(ForecastError, match=r"regressor column\(s\) \['store'\] are not numeric"):
        to_panel(history, regressors=["store"])


def test_to_panel_keeps_only_regressors_known_in_advance():
    """price and promo are regressors by default; revenue and text columns are ignored."""
    history = pd.DataFrame(
        {
            "series_id": "a",
            "date": pd.date_range("2024-01-01", periods=5),
            "sales": 1.0,
            "price": 2.0,
            "promo": 0,
            "revenue": 2.0,
            "store": "north",
        }
    )
    assert list(to_panel(history).regressors) == ["price", "promo"]
    declared = to_panel(history, regressors=["promo", "revenue"])
    assert list(declared.regressors) == ["promo", "revenue"]


def test_to_panel_refuses_a_declared_regressor_it_lacks():
    """Declaring a regressor the history does not have is a ForecastError naming it."""
    history = pd.DataFrame(
        {"series_id": "a", "date": pd.date_range("2024-01-01", periods=5), "sales": 1.0}
    )
    with pytest.raises(ForecastError, match=r"regressor\(s\) \['holiday'\] are not columns"):
        to_panel(history, regressors=["holiday"])
