"""Prediction intervals from a model's own recent errors: empirical residual quantiles.

Pure functions over integer Wh series (:mod:`forecasting._models`). The residuals are a
model's day-ahead errors on the last days of its history (``actual - forecast``, each
tagged with its slot of the day); the 10 % and 90 % quantiles of the residuals of
nearby slots (a window of ``±season/24`` slots, i.e. ±1 h, when each window holds at
least :data:`MIN_PER_WINDOW` residuals; else of all of them) are added to the median
forecast. The bounds are clipped like the forecast: at 0, PV to 0 in night slots and
to the system's capacity, and p10 <= median <= p90 at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from wattmesh.forecasting._models import Forecast, Kind, Series, night_slots

__all__ = [
    "MIN_PER_WINDOW",
    "Band",
    "bands",
    "day_ahead_residuals",
    "forecast_slots",
    "slot_offsets",
]

MIN_PER_WINDOW = 20
"""Residuals a slot's window needs for its own quantiles (else all residuals pooled)."""

Band = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
"""(p10, median, p90) Wh per interval."""

Residual = tuple[int, int]  # (slot of the day, actual - forecast in Wh)


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear between order statistics; 0.0 if empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def day_ahead_residuals(
    series: Series,
    model: Callable[[Series, int], Forecast],
    *,
    season_intervals: int,
    days: int = 7,
) -> list[Residual]:
    """``model``'s errors one day ahead on each of the last ``days`` days of ``series``,
    each forecast from the history before that day (days with less than one day of
    history before them are left out)."""
    values = series.values_wh
    n = len(values)
    out: list[Residual] = []
    for k in range(1, days + 1):
        origin = n - k * season_intervals
        if origin < season_intervals:
            break
        history = Series(series.start_epoch_s, series.interval_s, values[:origin])
        forecast = model(history, season_intervals)
        for h, predicted in enumerate(forecast.values_wh):
            out.append(((origin + h) % season_intervals, values[origin + h] - predicted))
    return out


def slot_offsets(
    residuals: Sequence[Residual], *, season_intervals: int, slots: Iterable[int]
) -> dict[int, tuple[float, float]]:
    """(10 %, 90 %) quantiles of the residuals around each of ``slots`` (slots of the
    day): of its window's residuals when the window holds enough, else of all."""
    pooled = [r for _, r in residuals]
    everywhere = (quantile(pooled, 0.1), quantile(pooled, 0.9))
    wanted = set(slots)
    if len(pooled) < MIN_PER_WINDOW:  # no window can hold enough
        return dict.fromkeys(wanted, everywhere)
    by_slot: dict[int, list[int]] = {}
    for slot, residual in residuals:
        by_slot.setdefault(slot, []).append(residual)
    width = max(season_intervals // 24, 1)
    out: dict[int, tuple[float, float]] = {}
    for slot in wanted:
        window = [
            r
            for d in range(-width, width + 1)
            for r in by_slot.get((slot + d) % season_intervals, ())
        ]
        if len(window) >= MIN_PER_WINDOW:
            out[slot] = (quantile(window, 0.1), quantile(window, 0.9))
        else:
            out[slot] = everywhere
    return out


def forecast_slots(history: Series, steps: int, season_intervals: int) -> set[int]:
    """The slots of the day of the ``steps`` intervals after ``history``."""
    n = len(history.values_wh)
    return {(n + h) % season_intervals for h in range(min(steps, season_intervals))}


def bands(
    forecast: Forecast,
    history: Series,
    offsets: Mapping[int, tuple[float, float]],
    *,
    kind: Kind,
    season_intervals: int,
    capacity_wh: int | None = None,
) -> Band:
    """``forecast`` (which starts where ``history`` ends) with its 10 % and 90 % bounds
    (``offsets``: those of :func:`slot_offsets` for the forecast's slots)."""
    season = season_intervals
    n = len(history.values_wh)
    night = night_slots(history, season_intervals=season) if kind == "pv" else frozenset()
    low: list[int] = []
    mid: list[int] = []
    high: list[int] = []
    for h, median in enumerate(forecast.values_wh):
        slot = (n + h) % season
        if slot in night:
            low.append(0)
            mid.append(0)
            high.append(0)
            continue
        q10, q90 = offsets[slot]
        m = median if capacity_wh is None else min(median, capacity_wh)
        lo = min(max(math.floor(m + q10 + 0.5), 0), m)
        hi = max(math.floor(m + q90 + 0.5), m)
        if capacity_wh is not None:
            hi = min(hi, capacity_wh)
        low.append(lo)
        mid.append(m)
        high.append(hi)
    return tuple(low), tuple(mid), tuple(high)
