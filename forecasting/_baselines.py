"""The baselines: seasonal naive (previous day, previous week) and the same-hour mean of 7 days.

Each returns a :class:`PointRun` whose calibration forecasts are the same rule applied to
the history's last days from day-aligned origins, exactly as the rule would have forecast
them: the previous day's (or week's) value, or the mean of the 7 days before the origin.
With less history than the rule needs, the history's mean stands in (with a reason).
"""

from __future__ import annotations

import statistics

from wattmesh.forecasting._context import Job
from wattmesh.forecasting._intervals import PointRun

__all__ = ["history_mean", "mean_days", "naive_lag"]


def history_mean(job: Job, model: str, reason: str) -> PointRun:
    """The history's mean (0 when empty) for every step; no calibration."""
    values = job.values
    mean = sum(values) / len(values) if values else 0.0
    return PointRun((mean,) * job.horizon, (), model=model, fallback_reason=reason)


def naive_lag(job: Job, *, days: int, model: str) -> PointRun:
    """The value ``days`` days before each step (the last ``days`` days, repeated)."""
    values = job.values
    n = len(values)
    lag = days * job.season
    if n < lag:
        return history_mean(job, model, f"history of {n} intervals is shorter than {lag}")
    forecast = tuple(float(values[n - lag + h % lag]) for h in range(job.horizon))
    m = max(0, min(job.calib_len, n - lag))
    calib = tuple(float(values[i - lag]) for i in range(n - m, n))
    return PointRun(forecast, calib, model=model)


def _slot_mean(
    values: tuple[int, ...], end: int, phase: int, season: int, *, days: int, median: bool
) -> float:
    picks = [values[i] for k in range(1, days + 1) if (i := end - k * season + phase) >= 0]
    if median:
        return float(statistics.median(picks))
    return sum(picks) / len(picks)


def mean_days(job: Job, *, days: int, model: str, median: bool = False) -> PointRun:
    """Mean (or median) of the same slot over the ``days`` days before the origin, repeated
    daily."""
    values = job.values
    n = len(values)
    season = job.season
    if n < season:
        return history_mean(job, model, f"history of {n} intervals is shorter than one day")
    profile = [_slot_mean(values, n, p, season, days=days, median=median) for p in range(season)]
    forecast = tuple(profile[h % season] for h in range(job.horizon))
    m = max(0, min(job.calib_len, n - season))
    calib: list[float] = []
    for i in range(n - m, n):
        # i's day-aligned origin (aligned on n) and its phase after that origin
        back = -((i - n) // season) * season  # ceil to whole days before n
        origin = n - back
        calib.append(_slot_mean(values, origin, i - origin, season, days=days, median=median))
    return PointRun(forecast, tuple(calib), model=model)
