"""Prediction intervals from a model's own recent day-ahead errors, and the quantile forecast.

A model produces a :class:`PointRun`: its point forecast for the horizon and, for the last
days of its history, the point forecasts it would have made for them from earlier origins
(its calibration forecasts). The residuals ``actual - forecast`` of those days, pooled over
the same hours of the day (slot +-2 h), give the 10/50/90 % quantiles added to the point
forecast (empirical, split-conformal style). For demand the 50 % quantile shifts the point
forecast by the median of its errors, towards the forecast whose absolute error is smallest
(household demand is skewed: rare high peaks pull a mean up).

The one implementation of residual quantiles: the service's models (:mod:`forecasting.models`)
and ``wattmesh simulate``'s built-in forecaster (:func:`forecasting._fit.fit_builtin`,
which pools the slots within an hour, falls back to all residuals where a window holds
under 20, and does not shift the median) both end here.

Units: Wh per interval (floats inside, integer Wh out), epoch seconds, interval seconds.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["PointRun", "QuantileForecast", "quantile", "to_quantile_forecast"]

POOL_SECONDS = 2 * 3600
"""Residuals of slots within this many seconds of a step's slot are pooled for its quantiles."""
LEVELS = (0.1, 0.5, 0.9)


@dataclass(frozen=True, slots=True)
class QuantileForecast:
    """A forecast with its 10/50/90 % quantiles in integer Wh per interval.

    ``p50_wh`` is the forecast itself. ``model`` names what produced it;
    ``fallback_reason`` says why that differs from what was asked for (None if it does not).
    Always ``0 <= p10_wh <= p50_wh <= p90_wh`` step by step.
    """

    start_epoch_s: int
    interval_s: int
    p10_wh: tuple[int, ...]
    p50_wh: tuple[int, ...]
    p90_wh: tuple[int, ...]
    model: str
    fallback_reason: str | None = None

    def __post_init__(self) -> None:
        if not len(self.p10_wh) == len(self.p50_wh) == len(self.p90_wh):
            raise ValueError("p10, p50 and p90 differ in length")
        for lo, mid, hi in zip(self.p10_wh, self.p50_wh, self.p90_wh, strict=True):
            if not (type(lo) is int and type(mid) is int and type(hi) is int):
                raise TypeError("quantiles must be int Wh")
            if not 0 <= lo <= mid <= hi:
                raise ValueError(f"quantiles out of order: {lo}, {mid}, {hi}")

    @property
    def values_wh(self) -> tuple[int, ...]:
        """The forecast (the 50 % quantile)."""
        return self.p50_wh


@dataclass(frozen=True, slots=True)
class PointRun:
    """A model's point forecast and its calibration forecasts (floats, Wh per interval).

    ``values``: the forecast for the ``horizon`` intervals after the history.
    ``calib``: forecasts for the last ``len(calib)`` intervals of the history, each made from
    an origin before it (day-ahead, like the forecast); empty when the history is too short.
    """

    values: tuple[float, ...]
    calib: tuple[float, ...]
    model: str
    fallback_reason: str | None = None


def quantile(sorted_values: Sequence[float], level: float) -> float:
    """Linear-interpolated quantile of already sorted values (``numpy.quantile``'s default)."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    pos = level * (len(sorted_values) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def _round(value: float, upper_wh: int | None) -> int:
    if not math.isfinite(value):
        raise ValueError(f"non-finite forecast value {value!r}")
    rounded = max(math.floor(value + 0.5), 0)
    return rounded if upper_wh is None else min(rounded, upper_wh)


def _slot_residuals(
    actual: Sequence[int], calib: Sequence[float], *, first_slot: int, season: int
) -> list[list[float]]:
    by_slot: list[list[float]] = [[] for _ in range(season)]
    for i, (a, f) in enumerate(zip(actual, calib, strict=True)):
        by_slot[(first_slot + i) % season].append(a - f)
    return by_slot


def _slot_quantiles(
    by_slot: list[list[float]], pool: int, *, shift_median: bool, min_per_window: int
) -> list[tuple[float, float, float]]:
    season = len(by_slot)
    everywhere = sorted(r for rs in by_slot for r in rs)
    out: list[tuple[float, float, float]] = []
    for slot in range(season):
        pooled = sorted(r for d in range(-pool, pool + 1) for r in by_slot[(slot + d) % season])
        if len(pooled) < min_per_window or len(everywhere) < min_per_window:
            pooled = everywhere
        if not pooled:
            out.append((0.0, 0.0, 0.0))
            continue
        q10, q50, q90 = (quantile(pooled, level) for level in LEVELS)
        q50 = q50 if shift_median else 0.0
        out.append((min(q10, q50), q50, max(q90, q50)))
    return out


def to_quantile_forecast(
    run: PointRun,
    *,
    history_wh: Sequence[int],
    start_epoch_s: int,
    interval_s: int,
    season: int,
    upper_wh: int | None = None,
    zero_slots: Collection[int] = (),
    shift_median: bool = True,
    pool_slots: int | None = None,
    min_per_window: int = 0,
) -> QuantileForecast:
    """The quantile forecast for ``run`` made after ``history_wh`` (see the module docstring).

    Steps whose slot (``(len(history) + h) % season``) is in ``zero_slots`` (PV nights) are
    exactly 0; every quantile is clipped to ``[0, upper_wh]``. With ``shift_median`` False
    the 50 % quantile is the point forecast itself (PV: the shift did worse on the tuning
    months, whose errors are bimodal: sunny or not). ``pool_slots``: the slots either side
    pooled (default: those within :data:`POOL_SECONDS`); a window holding fewer than
    ``min_per_window`` residuals (or all of them fewer) takes every residual instead.
    """
    n = len(history_wh)
    m = len(run.calib)
    if m > n:
        raise ValueError("more calibration forecasts than history")
    pool = POOL_SECONDS // interval_s if pool_slots is None else pool_slots
    by_slot = _slot_residuals(
        history_wh[n - m :], run.calib, first_slot=(n - m) % season, season=season
    )
    quants = _slot_quantiles(
        by_slot, min(pool, season // 2), shift_median=shift_median, min_per_window=min_per_window
    )
    zero = frozenset(zero_slots)
    p10: list[int] = []
    p50: list[int] = []
    p90: list[int] = []
    for h, value in enumerate(run.values):
        slot = (n + h) % season
        if slot in zero:
            p10.append(0)
            p50.append(0)
            p90.append(0)
            continue
        q10, q50, q90 = quants[slot]
        p10.append(_round(value + q10, upper_wh))
        p50.append(_round(value + q50, upper_wh))
        p90.append(_round(value + q90, upper_wh))
    reason = run.fallback_reason
    if m == 0:
        extra = "no calibration history: the interval has no width"
        reason = extra if reason is None else f"{reason}; {extra}"
    return QuantileForecast(
        start_epoch_s=start_epoch_s,
        interval_s=interval_s,
        p10_wh=tuple(p10),
        p50_wh=tuple(p50),
        p90_wh=tuple(p90),
        model=run.model,
        fallback_reason=reason,
    )
