"""``forecast serve``'s neighbourhood forecast: the sum of the households' histories.

The market clears on the aggregate, so the service also forecasts the neighbourhood's
total demand and PV: the model run on the sum of the households' logged histories
(:func:`forecasting.models.neighbourhood_forecast`'s rule: forecast the sum rather than
add up forecasts, so the bands know how much the households' errors cancel).

Households' histories differ in span (one joined later, one's series starts again after
a flagged reading): the sum is taken over their common window. A household whose span
would leave that window under a day (under half the longest span while none has two
days yet) is left out (the one of the window's limiting households with the shortest span first,
until the window holds that much), and the forecast's ``fallback`` says how many were.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass

from wattmesh.forecasting._fit import FitJob, Fitted, ModelChoice, fit_household
from wattmesh.forecasting._models import intervals_per_day
from wattmesh.forecasting.history import HistoryStore, series_from_readings

__all__ = [
    "NEIGHBOURHOOD",
    "Aggregate",
    "aggregate",
    "histories",
    "left_out_reason",
    "neighbourhood_fit",
]

NEIGHBOURHOOD = "neighbourhood"
"""The fit job's name for the aggregate (not a household id)."""


@dataclass(frozen=True)
class Aggregate:
    """The neighbourhood's summed history over the common window ``[start_s, ...)``."""

    agents: tuple[str, ...]  # summed
    left_out: tuple[str, ...]  # spans too short for a common window of a day
    start_s: int
    interval_s: int
    demand_wh: tuple[int, ...]
    pv_wh: tuple[int, ...]


History = tuple[int, "array[int]", "array[int]"]
"""(start epoch s, demand Wh, PV Wh) per interval: one household's regular series."""


def histories(store: HistoryStore, *, since_s: int, interval_s: int) -> dict[str, History]:
    """Every household's trainable series from ``since_s`` (flagged readings, the
    ledger's and the service's own episodes, are not learnt: as the household fits),
    one household read at a time, kept as compact integer arrays."""
    out: dict[str, History] = {}
    for agent in store.agents():
        rows = store.readings(agent, since_s=since_s)
        start, demand, pv = series_from_readings(((f, r) for _, f, r in rows), interval_s)
        if demand:
            out[agent] = (start, array("q", demand), array("q", pv))
    return out


def aggregate(series: Mapping[str, History], *, interval_s: int) -> Aggregate | None:
    """The sum over the households' common window (see the module docstring); None
    without any history."""
    spans = {a: (s, s + len(d) * interval_s) for a, (s, d, _) in series.items() if d}
    kept = sorted(spans)
    longest = max((b - a for a, b in spans.values()), default=0)
    wanted = min(intervals_per_day(interval_s) * interval_s, longest // 2)
    while kept:
        lo = max(spans[a][0] for a in kept)
        hi = min(spans[a][1] for a in kept)
        if hi - lo >= wanted or len(kept) == 1:
            break
        limiting = [a for a in kept if spans[a][0] == lo or spans[a][1] == hi]
        kept.remove(min(limiting, key=lambda a: (spans[a][1] - spans[a][0], a)))
    if not kept or hi <= lo:
        return None
    count = (hi - lo) // interval_s
    demand = [0] * count
    pv = [0] * count
    for agent in kept:
        start, d, p = series[agent]
        k = (lo - start) // interval_s
        for i in range(count):
            demand[i] += d[k + i]
            pv[i] += p[k + i]
    left_out = tuple(sorted(set(spans) - set(kept)))
    return Aggregate(tuple(kept), left_out, lo, interval_s, tuple(demand), tuple(pv))


def neighbourhood_fit(
    agg: Aggregate,
    *,
    steps: int,
    demand_model: ModelChoice,
    pv_model: ModelChoice,
    pv_capacity_w: Mapping[str, int],
) -> tuple[Fitted, Fitted]:
    """Both targets' forecast of the aggregate, as a household's fit is made (the same
    model choice, bands and stand-in); PV capped at the summed capacity when every
    summed household's is known. Plain values in and out: runs in a worker process."""
    caps = [pv_capacity_w.get(a) for a in agg.agents]
    capacity = None if None in caps else sum(c for c in caps if c is not None)
    job = FitJob(
        agent=NEIGHBOURHOOD,
        start_s=agg.start_s,
        interval_s=agg.interval_s,
        demand_wh=agg.demand_wh,
        pv_wh=agg.pv_wh,
        steps=steps,
        demand_model=demand_model,
        pv_model=pv_model,
        pv_capacity_w=capacity,
    )
    return fit_household(job)


def left_out_reason(agg: Aggregate) -> str | None:
    """What the forecast's ``fallback`` says about the households not summed."""
    if not agg.left_out:
        return None
    return (
        f"{len(agg.left_out)} of {len(agg.agents) + len(agg.left_out)} households left out:"
        " too short a history in the common window"
    )
