"""Forecast models for one household's energy series, plus a rolling-origin backtest.

Units: energy is integer Wh per interval, times are integer UTC epoch seconds, interval
lengths are seconds. A "season" is one day of intervals (96 at 900 s). Slots of the day are
history indices modulo the season, so a forecast step ``h`` after a history of ``n`` values
sits in slot ``(n + h) % season``.

Every model returns integer Wh >= 0 and post-processes by ``kind``: demand is clipped at 0 and
rounded; PV is additionally forced to exactly 0 in the slots the data shows to be night
(see :func:`night_slots`). Importing this module does not import pandas or prophet.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from wattmesh.forecasting import _prophet

Kind = Literal["demand", "pv"]

SECONDS_PER_DAY = 86_400
NIGHT_LOOKBACK_DAYS = 7
"""Days of history a slot must have produced exactly 0 Wh on to count as night."""
_MAX_REASON_CHARS = 300

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Series:
    """A regular history of one quantity, oldest first.

    ``start_epoch_s``: start of the first interval (UTC epoch seconds);
    ``interval_s``: interval length in seconds; ``values_wh``: energy per interval in Wh.
    """

    start_epoch_s: int
    interval_s: int
    values_wh: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {self.interval_s}")
        if not all(type(v) is int for v in self.values_wh):
            raise TypeError("values_wh must hold int Wh values")

    @property
    def end_epoch_s(self) -> int:
        """End of the last interval (UTC epoch seconds): where a forecast starts."""
        return self.start_epoch_s + len(self.values_wh) * self.interval_s


@dataclass(frozen=True, slots=True)
class Forecast:
    """Energy forecast in Wh per interval, starting at ``start_epoch_s`` (UTC epoch seconds).

    ``model`` names what produced the values ("prophet", "seasonal_naive", "same_slot_mean",
    "history_mean"); ``fallback_reason`` says why that differs from what was asked for, and is
    None when the requested model ran.
    """

    start_epoch_s: int
    interval_s: int
    values_wh: tuple[int, ...]
    model: str
    fallback_reason: str | None

    def __post_init__(self) -> None:
        if not all(type(v) is int and v >= 0 for v in self.values_wh):
            raise ValueError("forecast values_wh must be int Wh >= 0")


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Rolling-origin backtest metrics (statistics, so floats).

    ``mae_wh``: mean absolute error in Wh per interval, pooled over all origins and steps.
    ``mase``: mean over origins of (origin MAE / in-sample one-day seasonal naive MAE of that
    origin's training history); NaN when that scale is 0 (e.g. a flat history).
    ``fallbacks``: how many of the forecasts carried a ``fallback_reason``.
    """

    mae_wh: float
    mase: float
    origin_mae_wh: tuple[float, ...]
    horizon: int
    fallbacks: int


def intervals_per_day(interval_s: int) -> int:
    """Number of ``interval_s``-second intervals in a day; the interval must divide a day."""
    if interval_s <= 0 or SECONDS_PER_DAY % interval_s != 0:
        raise ValueError(f"interval_s={interval_s} does not divide a day evenly")
    return SECONDS_PER_DAY // interval_s


def _check_args(horizon: int, season_intervals: int, kind: str) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 interval, got {horizon}")
    if season_intervals < 1:
        raise ValueError(f"season_intervals must be >= 1, got {season_intervals}")
    if kind not in get_args(Kind):
        raise ValueError(f"kind must be one of {get_args(Kind)}, got {kind!r}")


def _round_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def _clip_round(value: float) -> int:
    if not math.isfinite(value):
        raise ValueError(f"non-finite forecast value {value!r}")
    rounded = math.floor(value + 0.5)  # half up, like _round_div
    return rounded if rounded > 0 else 0


def night_slots(history: Series, *, season_intervals: int) -> frozenset[int]:
    """Slots of the day (index modulo ``season_intervals``) that produced exactly 0 Wh on every
    one of the last :data:`NIGHT_LOOKBACK_DAYS` days of ``history``.

    With less history the days available count; a slot never seen in the window is not night.
    """
    values = history.values_wh
    n = len(values)
    seen: set[int] = set()
    producing: set[int] = set()
    for i in range(max(0, n - NIGHT_LOOKBACK_DAYS * season_intervals), n):
        slot = i % season_intervals
        seen.add(slot)
        if values[i] != 0:
            producing.add(slot)
    return frozenset(seen - producing)


def postprocess_demand(values: Sequence[float]) -> tuple[int, ...]:
    """Demand forecast in Wh: negatives clipped to 0, rounded half up to integer Wh."""
    return tuple(_clip_round(v) for v in values)


def postprocess_pv(
    values: Sequence[float], *, history: Series, season_intervals: int
) -> tuple[int, ...]:
    """PV forecast in Wh starting at the end of ``history``: exactly 0 in night slots
    (:func:`night_slots`), elsewhere negatives clipped to 0 and rounded half up to integer Wh."""
    night = night_slots(history, season_intervals=season_intervals)
    n = len(history.values_wh)
    return tuple(
        0 if (n + h) % season_intervals in night else _clip_round(v) for h, v in enumerate(values)
    )


def _postprocess(
    values: Sequence[float], *, kind: Kind, history: Series, season_intervals: int
) -> tuple[int, ...]:
    if kind == "pv":
        return postprocess_pv(values, history=history, season_intervals=season_intervals)
    return postprocess_demand(values)


def _forecast(
    history: Series,
    values: Sequence[float],
    *,
    kind: Kind,
    season_intervals: int,
    model: str,
    fallback_reason: str | None,
) -> Forecast:
    return Forecast(
        start_epoch_s=history.end_epoch_s,
        interval_s=history.interval_s,
        values_wh=_postprocess(
            values, kind=kind, history=history, season_intervals=season_intervals
        ),
        model=model,
        fallback_reason=fallback_reason,
    )


def _history_mean(
    series: Series, horizon: int, *, season_intervals: int, kind: Kind, reason: str
) -> Forecast:
    n = len(series.values_wh)
    mean_wh = _round_div(sum(series.values_wh), n) if n else 0
    return _forecast(
        series,
        [mean_wh] * horizon,
        kind=kind,
        season_intervals=season_intervals,
        model="history_mean",
        fallback_reason=reason,
    )


def _short_history_reason(n: int, season_intervals: int) -> str:
    if n == 0:
        return "empty history: forecasting zeros"
    return (
        f"history of {n} intervals is shorter than one season ({season_intervals}): "
        "repeating its mean"
    )


def _short_history(
    series: Series, horizon: int, *, season_intervals: int, kind: Kind
) -> Forecast | None:
    """The history's mean repeated when ``series`` holds less than one season, else None."""
    n = len(series.values_wh)
    if n >= season_intervals:
        return None
    reason = _short_history_reason(n, season_intervals)
    return _history_mean(
        series, horizon, season_intervals=season_intervals, kind=kind, reason=reason
    )


def _repeat_season(
    series: Series, season_wh: Sequence[int], horizon: int, *, kind: Kind, model: str
) -> Forecast:
    """``season_wh`` (one value per slot of a season) repeated for ``horizon`` intervals."""
    season_intervals = len(season_wh)
    return _forecast(
        series,
        [season_wh[h % season_intervals] for h in range(horizon)],
        kind=kind,
        season_intervals=season_intervals,
        model=model,
        fallback_reason=None,
    )


def seasonal_naive(series: Series, horizon: int, *, season_intervals: int, kind: Kind) -> Forecast:
    """Repeat the last ``season_intervals`` values of ``series`` for ``horizon`` intervals.

    With less than one season of history, repeats the history's mean (0 Wh when empty) as
    model "history_mean" with a ``fallback_reason``.
    """
    _check_args(horizon, season_intervals, kind)
    short = _short_history(series, horizon, season_intervals=season_intervals, kind=kind)
    if short is not None:
        return short
    last_season = series.values_wh[len(series.values_wh) - season_intervals :]
    return _repeat_season(series, last_season, horizon, kind=kind, model="seasonal_naive")


def same_slot_mean(
    series: Series, horizon: int, *, season_intervals: int, kind: Kind, seasons: int = 7
) -> Forecast:
    """Mean (rounded half up to integer Wh) of the same slot over the last ``seasons`` seasons.

    Uses as many of those seasons as the history holds; with less than one season of history,
    repeats the history's mean as model "history_mean" with a ``fallback_reason``.
    """
    _check_args(horizon, season_intervals, kind)
    if seasons < 1:
        raise ValueError(f"seasons must be >= 1, got {seasons}")
    short = _short_history(series, horizon, season_intervals=season_intervals, kind=kind)
    if short is not None:
        return short
    values = series.values_wh
    n = len(values)
    per_phase: list[int] = []
    for phase in range(season_intervals):
        picks = [
            values[i] for k in range(1, seasons + 1) if (i := n - k * season_intervals + phase) >= 0
        ]
        per_phase.append(_round_div(sum(picks), len(picks)))
    return _repeat_season(series, per_phase, horizon, kind=kind, model="same_slot_mean")


def _prophet_fallback(
    series: Series, horizon: int, *, season_intervals: int, kind: Kind, reason: str
) -> Forecast:
    substitute = seasonal_naive(series, horizon, season_intervals=season_intervals, kind=kind)
    if substitute.fallback_reason is not None:
        reason = f"{reason}; {substitute.fallback_reason}"
    return Forecast(
        start_epoch_s=substitute.start_epoch_s,
        interval_s=substitute.interval_s,
        values_wh=substitute.values_wh,
        model=substitute.model,
        fallback_reason=reason,
    )


def prophet_forecast(
    series: Series, horizon: int, *, kind: Kind, min_history_intervals: int
) -> Forecast:
    """Prophet forecast (daily seasonality, plus weekly for demand; MAP fit) in Wh per interval.

    Falls back to :func:`seasonal_naive` (one day season), with a ``fallback_reason``, when the
    history has fewer than ``min_history_intervals`` values or when Prophet fails in any way.
    ``series.interval_s`` must divide a day.
    """
    season_intervals = intervals_per_day(series.interval_s)
    _check_args(horizon, season_intervals, kind)
    n = len(series.values_wh)
    if n < min_history_intervals:
        reason = f"history of {n} intervals is below min_history_intervals={min_history_intervals}"
        return _prophet_fallback(
            series, horizon, season_intervals=season_intervals, kind=kind, reason=reason
        )
    step = series.interval_s
    try:
        raw = _prophet.fit_predict(
            history_epoch_s=[series.start_epoch_s + i * step for i in range(n)],
            values_wh=series.values_wh,
            future_epoch_s=[series.end_epoch_s + h * step for h in range(horizon)],
            kind=kind,
        )
        if len(raw) != horizon or not all(math.isfinite(v) for v in raw):
            raise ValueError(f"prophet returned {len(raw)} values, not {horizon} finite ones")
    except Exception as exc:  # any Prophet/Stan/pandas failure means: use the substitute
        _log.debug("prophet failed, falling back to seasonal naive", exc_info=True)
        reason = f"prophet failed: {type(exc).__name__}: {exc}"[:_MAX_REASON_CHARS]
        return _prophet_fallback(
            series, horizon, season_intervals=season_intervals, kind=kind, reason=reason
        )
    return _forecast(
        series,
        raw,
        kind=kind,
        season_intervals=season_intervals,
        model="prophet",
        fallback_reason=None,
    )


def _head(series: Series, length: int) -> Series:
    return Series(series.start_epoch_s, series.interval_s, series.values_wh[:length])


def _seasonal_naive_scale_wh(values: Sequence[int], season_intervals: int) -> float:
    diffs = [
        abs(values[t] - values[t - season_intervals]) for t in range(season_intervals, len(values))
    ]
    return sum(diffs) / len(diffs)


def backtest(
    series: Series,
    *,
    model: Callable[[Series, int], Forecast],
    horizon: int,
    origins: int,
    step: int,
) -> BacktestResult:
    """Rolling-origin backtest of ``model`` on ``series``.

    Origins (in intervals) are ``n - horizon - k * step`` for ``k = 0 .. origins - 1``: the
    last forecast ends at the end of the history. Each origin's training history must be
    longer than one day so the in-sample one-day seasonal naive MAE (the MASE scale) exists.
    """
    if horizon < 1 or origins < 1 or step < 1:
        raise ValueError("horizon, origins and step must all be >= 1")
    season_intervals = intervals_per_day(series.interval_s)
    values = series.values_wh
    first_origin = len(values) - horizon - (origins - 1) * step
    if first_origin <= season_intervals:
        raise ValueError(
            f"history of {len(values)} intervals is too short for {origins} origins "
            f"(step {step}, horizon {horizon}) after one day ({season_intervals}) of training"
        )
    abs_errors: list[int] = []
    origin_mae: list[float] = []
    scaled: list[float] = []
    fallbacks = 0
    for origin in range(first_origin, len(values) - horizon + 1, step):
        history = _head(series, origin)
        forecast = model(history, horizon)
        if len(forecast.values_wh) != horizon or forecast.start_epoch_s != history.end_epoch_s:
            raise ValueError(f"model returned a forecast that does not fit origin {origin}")
        fallbacks += forecast.fallback_reason is not None
        errors = [
            abs(f - a)
            for f, a in zip(forecast.values_wh, values[origin : origin + horizon], strict=True)
        ]
        abs_errors.extend(errors)
        mae = sum(errors) / horizon
        origin_mae.append(mae)
        scale = _seasonal_naive_scale_wh(history.values_wh, season_intervals)
        scaled.append(mae / scale if scale > 0 else math.nan)
    return BacktestResult(
        mae_wh=sum(abs_errors) / len(abs_errors),
        mase=sum(scaled) / len(scaled),
        origin_mae_wh=tuple(origin_mae),
        horizon=horizon,
        fallbacks=fallbacks,
    )
