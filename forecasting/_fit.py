"""One household's fit: both targets' forecasts with their 10/50/90 % bands.

:func:`fit_household` is what the forecasting service runs in a worker process (its
arguments and result are plain, picklable values). Per target it fits the configured
model (``auto``: the one of :data:`AUTO_CANDIDATES` with the lowest MASE in a
rolling-origin backtest on the household's own recent history), forecasts ``steps``
intervals from the end of the history, and adds the empirical quantiles of that
model's own day-ahead errors (:mod:`forecasting._quantiles`). Prophet's bands come
from its in-sample errors on the last days (refitting it for each past day would cost
a fit per day).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Literal, get_args

from wattmesh.forecasting import _prophet
from wattmesh.forecasting._models import (
    Forecast,
    Kind,
    Series,
    backtest,
    intervals_per_day,
    postprocess_demand,
    postprocess_pv,
    prophet_forecast,
    same_slot_mean,
    seasonal_naive,
)
from wattmesh.forecasting._quantiles import (
    Band,
    bands,
    day_ahead_residuals,
    forecast_slots,
    slot_offsets,
)

__all__ = ["AUTO_CANDIDATES", "FitJob", "Fitted", "ModelChoice", "fit_household", "fit_target"]

ModelChoice = Literal["auto", "naive", "same_slot_mean", "prophet"]
AUTO_CANDIDATES: tuple[ModelChoice, ...] = ("naive", "same_slot_mean")
RESIDUAL_DAYS = 7
FIT_VERSION = 1  # bumped when what a fit does changes


@dataclass(frozen=True)
class FitJob:
    """One household's history (Wh per interval from ``start_s``) and what to fit."""

    agent: str
    start_s: int
    interval_s: int
    demand_wh: tuple[int, ...]
    pv_wh: tuple[int, ...]
    steps: int
    demand_model: ModelChoice = "auto"
    pv_model: ModelChoice = "auto"
    min_history: int = 2 * 96
    pv_capacity_wh: int | None = None


@dataclass(frozen=True)
class Fitted:
    """One target's forecast from ``start_s``: its bands, model, version, fallback."""

    target: Kind
    start_s: int
    interval_s: int
    p10_wh: tuple[int, ...]
    p50_wh: tuple[int, ...]
    p90_wh: tuple[int, ...]
    model: str
    version: str
    fallback: str | None


def fit_household(job: FitJob) -> tuple[Fitted, Fitted]:
    """Demand and PV of one household (runs in a worker process)."""
    demand = Series(job.start_s, job.interval_s, job.demand_wh)
    pv = Series(job.start_s, job.interval_s, job.pv_wh)
    return (
        fit_target(
            demand,
            job.steps,
            "demand",
            job.demand_model,
            min_history=job.min_history,
            capacity_wh=None,
        ),
        fit_target(
            pv,
            job.steps,
            "pv",
            job.pv_model,
            min_history=job.min_history,
            capacity_wh=job.pv_capacity_wh,
        ),
    )


def fit_target(
    series: Series,
    steps: int,
    kind: Kind,
    choice: ModelChoice,
    *,
    min_history: int,
    capacity_wh: int | None,
) -> Fitted:
    """One target's forecast of ``steps`` intervals with its bands."""
    if choice not in get_args(ModelChoice):
        raise ValueError(f"unknown model {choice!r}")
    season = intervals_per_day(series.interval_s)
    if not any(series.values_wh):  # nothing ever measured (e.g. no PV): exactly zero
        zero = (0,) * steps
        return Fitted(kind, series.end_epoch_s, series.interval_s, zero, zero, zero, "zero",
                      f"zero/{FIT_VERSION}", None)  # fmt: skip
    if choice == "auto":
        choice = _select(series, kind, season)
    if choice == "prophet":
        forecast, band = _prophet_band(
            series, steps, kind, minimum=min_history, season=season, capacity_wh=capacity_wh
        )
    else:
        model = _cheap(choice, kind, season)
        forecast = model(series, steps)
        residuals = day_ahead_residuals(series, model, season_intervals=season, days=RESIDUAL_DAYS)
        if not residuals and forecast.values_wh:  # under a day: the spread about its mean
            mean = forecast.values_wh[0]
            residuals = [(i % season, v - mean) for i, v in enumerate(series.values_wh)]
        slots = forecast_slots(series, steps, season)
        offsets = slot_offsets(residuals, season_intervals=season, slots=slots)
        band = bands(
            forecast, series, offsets, kind=kind, season_intervals=season, capacity_wh=capacity_wh
        )
    return Fitted(
        kind,
        forecast.start_epoch_s,
        series.interval_s,
        *band,
        model=forecast.model,
        version=_version(forecast.model),
        fallback=forecast.fallback_reason,
    )


def _cheap(choice: ModelChoice, kind: Kind, season: int) -> Callable[[Series, int], Forecast]:
    if choice == "naive":
        return lambda s, h: seasonal_naive(s, h, season_intervals=season, kind=kind)
    return lambda s, h: same_slot_mean(s, h, season_intervals=season, kind=kind)


def _select(series: Series, kind: Kind, season: int) -> ModelChoice:
    """The candidate with the lowest MASE over up to 7 day-ahead origins (the first
    candidate when the history is too short to tell)."""
    origins = min(RESIDUAL_DAYS, len(series.values_wh) // season - 2)
    if origins < 1:
        return AUTO_CANDIDATES[0]
    scores: list[tuple[float, int, ModelChoice]] = []
    for rank, choice in enumerate(AUTO_CANDIDATES):
        result = backtest(
            series, model=_cheap(choice, kind, season), horizon=season, origins=origins,
            step=season,
        )  # fmt: skip
        score = result.mase if math.isfinite(result.mase) else result.mae_wh
        scores.append((score, rank, choice))
    return min(scores)[2]


def _prophet_band(
    series: Series, steps: int, kind: Kind, *, minimum: int, season: int, capacity_wh: int | None
) -> tuple[Forecast, Band]:
    n = len(series.values_wh)
    tail = min(RESIDUAL_DAYS * season, n)
    step = series.interval_s
    raw: list[float] | None = None
    if n >= minimum:
        try:
            raw = _prophet.fit_predict(
                history_epoch_s=[series.start_epoch_s + i * step for i in range(n)],
                values_wh=series.values_wh,
                future_epoch_s=[series.start_epoch_s + i * step for i in range(n - tail, n)]
                + [series.end_epoch_s + h * step for h in range(steps)],
                kind=kind,
            )
            if len(raw) != tail + steps or not all(math.isfinite(v) for v in raw):
                raw = None
        except Exception:  # any Prophet failure: the substitute below says why
            raw = None
    if raw is None:  # prophet_forecast's own fallback (seasonal naive), with its reason
        forecast = prophet_forecast(series, steps, kind=kind, min_history_intervals=minimum)
        if n >= minimum:  # it was long enough: Prophet failed (or gave no finite values)
            naive = seasonal_naive(series, steps, season_intervals=season, kind=kind)
            forecast = Forecast(naive.start_epoch_s, naive.interval_s, naive.values_wh,
                                naive.model, "prophet failed")  # fmt: skip
        model = _cheap("naive", kind, season)
        residuals = day_ahead_residuals(series, model, season_intervals=season, days=RESIDUAL_DAYS)
    else:
        future = raw[tail:]
        values = (
            postprocess_pv(future, history=series, season_intervals=season)
            if kind == "pv"
            else postprocess_demand(future)
        )
        forecast = Forecast(series.end_epoch_s, step, values, "prophet", None)
        residuals = [
            ((n - tail + i) % season, series.values_wh[n - tail + i] - round(raw[i]))
            for i in range(tail)
        ]
    slots = forecast_slots(series, steps, season)
    offsets = slot_offsets(residuals, season_intervals=season, slots=slots)
    band = bands(
        forecast, series, offsets, kind=kind, season_intervals=season, capacity_wh=capacity_wh
    )
    return forecast, band


def _version(model: str) -> str:
    """``<model>[-<library version>]/<fit version>``, e.g. ``prophet-1.5.0/1``."""
    if model == "prophet":
        try:
            return f"prophet-{metadata.version('prophet')}/{FIT_VERSION}"
        except metadata.PackageNotFoundError:
            pass
    return f"{model}/{FIT_VERSION}"
