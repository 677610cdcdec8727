"""The promotion gate: may a newly trained model (the challenger) replace the serving one?

How it decides, for a planner:

- **Like with like.** Both models are judged on the same series and the same days. When sales
  have arrived since the champion's data ended, the champion's own forecasts for those days are
  scored against them, and the challenger is backtested from the same starting day: same
  actuals, same series (mode ``overlap``). Until such sales arrive, each model is judged by how
  much better it does than "same day last week" (seasonal naive) on its own backtest, and those
  ratios are compared (mode ``naive_relative``): a harder month makes both the model and seasonal
  naive worse, so it no longer reads as a worse model.
- **Per series, with an interval.** Errors are scaled by each series' usual week-to-week change,
  so small and large series weigh alike. The gate reports how much higher or lower the
  challenger's total scaled error is (e.g. +3 %), and a 90 % interval for that figure from
  re-drawing the series at random 2000 times (seeded: the same data gives the same answer).
- **Promote unless credibly worse.** The challenger is kept out only when it is worse by more
  than the tolerance (``SALESMESH_GATE_TOLERANCE``, 5 %) and the interval's lower end is too,
  i.e. when the data make that clear. With one or two series there is no spread to build an
  interval from; it is then kept out only when worse by over 25 % on each series. It is also kept
  out when it loses credibly to seasonal naive on its own backtest.
- **Quantiles a planner can trust.** A challenger whose 80 % interval held less than 60 % or
  more than 98 % of its own backtest's actuals is kept out: too narrow to plan safety stock on,
  or too wide to say anything.
- **No series lost.** A challenger that does not forecast a series the champion serves and that
  still sells is kept out, and the reason names those series. Series silent for longer than a
  season may go.

Every decision carries its evidence (mode, series, windows, points, the figure and its interval)
as plain JSON for the version's record. Versions trained before this evidence existed are gated
by the older rule, :func:`salesmesh.rollout.policy.gate`.

Public API::

    compare(Overlap(errors) | NaiveRelative(challenger, champion), settings) -> Comparison
    decide(comparison, coverage, settings, baseline=..., note=...) -> GateDecision
    judge(challenger_metrics, champion_metrics, settings, coverage=None) -> GateDecision
    intervals(challenger_metrics, settings) -> (problem, figures)
"""

from salesmesh.gate.compare import (
    BACKTEST_COLUMNS,
    OVERLAP_COLUMNS,
    Comparison,
    GateSettings,
    NaiveRelative,
    Overlap,
    compare,
    versus_naive,
)
from salesmesh.gate.decide import Coverage, brief, credibly_worse, decide, intervals
from salesmesh.gate.evidence import FILE, GATE, block, judge, read

__all__ = [
    "BACKTEST_COLUMNS",
    "FILE",
    "GATE",
    "OVERLAP_COLUMNS",
    "Comparison",
    "Coverage",
    "GateSettings",
    "NaiveRelative",
    "Overlap",
    "block",
    "brief",
    "compare",
    "credibly_worse",
    "decide",
    "intervals",
    "judge",
    "read",
    "versus_naive",
]
