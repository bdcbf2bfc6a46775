"""One household's fit: both targets' forecasts with their 10/50/90 % bands.

:func:`fit_household` is what ``forecast serve`` runs in a worker process (its arguments
and result are plain, picklable values): per target, :func:`fit_target` forecasts
``steps`` intervals from the end of the history with the configured model of
:mod:`forecasting.models` and its quantiles (``auto``: the one of :data:`CATALOG_AUTO`
that :func:`forecasting.models.select_model` picks from day-ahead backtests on the
household's own last days; the service runs that choice every ``select_every_days`` and
otherwise names the stored one). Under a day of history (no model has a season yet) it uses
the stand-in of :func:`fit_builtin`. The fitted models (:data:`USES_PAST`) take the
service's own earlier forecasts of the history's last intervals (``FitJob.demand_past``,
``pv_past``) as their calibration forecasts: one fit instead of two, and the band from
those forecasts' errors (see :mod:`forecasting._fitted`).

:func:`fit_builtin` is this module's own (``wattmesh simulate``'s service): seasonal
naive, same-slot mean or Prophet, with the empirical quantiles of the model's own
day-ahead errors over the last 7 days (:func:`forecasting._intervals.to_quantile_forecast`,
pooling the slots within an hour when those hold 20 errors, else all of them); Prophet's
bands come from its in-sample errors on the last days (refitting it for each past day
would cost a fit per day).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal, get_args

from wattmesh.forecasting import _prophet, models
from wattmesh.forecasting._context import ModelContext
from wattmesh.forecasting._intervals import PointRun, to_quantile_forecast
from wattmesh.forecasting._models import (
    Forecast,
    Kind,
    Series,
    backtest,
    intervals_per_day,
    night_slots,
    postprocess_demand,
    postprocess_pv,
    prophet_forecast,
    same_slot_mean,
    seasonal_naive,
)

__all__ = [
    "AUTO_CANDIDATES",
    "CATALOG_AUTO",
    "USES_PAST",
    "FitJob",
    "Fitted",
    "ModelChoice",
    "check_choice",
    "fit_builtin",
    "fit_household",
    "fit_target",
    "past_tail",
    "select_household",
    "select_target",
]

BuiltinChoice = Literal["auto", "naive", "same_slot_mean", "prophet"]
ModelChoice = str  # "auto", a name of forecasting.models.MODELS, "naive" or "same_slot_mean"
AUTO_CANDIDATES: tuple[BuiltinChoice, ...] = ("naive", "same_slot_mean")
CATALOG_AUTO: tuple[str, ...] = ("naive-day", "mean-7d", "mean-14d")
"""What ``auto`` chooses among in the service, by a backtest on the household's own last
days at each refit (cheap models only; name a costlier one to use it)."""
ALIASES = {"naive": "naive-day", "same_slot_mean": "mean-7d"}
USES_PAST = frozenset(("prophet", "mstl"))
"""The models whose bands the service's own past forecasts calibrate (instead of a second
fit); the service keeps past forecasts of these only."""
PastRows = tuple[tuple[int, str, int], ...]
"""Past point forecasts: ``(interval start epoch s, model version, p50 Wh)`` by interval."""
RESIDUAL_DAYS = 7
MIN_PER_WINDOW = 20
"""Day-ahead errors an hour's window needs for the built-in bands (else all are pooled)."""
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
    pv_capacity_w: int | None = None
    demand_state: Mapping[str, Any] | None = None  # the previous fit's Prophet parameters
    pv_state: Mapping[str, Any] | None = None
    demand_past: PastRows = ()  # the service's earlier forecasts (forecast_past)
    pv_past: PastRows = ()


@dataclass(frozen=True)
class Fitted:
    """One target's forecast from ``start_s``: its bands, model, version, fallback, and
    what the next refit starts from (``state``: Prophet's parameters; None for the others)."""

    target: Kind
    start_s: int
    interval_s: int
    p10_wh: tuple[int, ...]
    p50_wh: tuple[int, ...]
    p90_wh: tuple[int, ...]
    model: str
    version: str
    fallback: str | None
    state: Mapping[str, Any] | None = None


def fit_household(job: FitJob) -> tuple[Fitted, Fitted]:
    """Demand and PV of one household (runs in a worker process)."""
    demand = Series(job.start_s, job.interval_s, job.demand_wh)
    pv = Series(job.start_s, job.interval_s, job.pv_wh)
    return (
        fit_target(
            demand, job.steps, "demand", job.demand_model, capacity_w=None,
            state=job.demand_state, past=job.demand_past,
        ),
        fit_target(
            pv, job.steps, "pv", job.pv_model, capacity_w=job.pv_capacity_w, state=job.pv_state,
            past=job.pv_past,
        ),
    )  # fmt: skip


def select_household(job: FitJob) -> tuple[str, str]:
    """What ``auto`` would fit for demand and PV of one household now (the choosing
    backtests alone, runnable apart from the fits)."""
    return (
        select_target(Series(job.start_s, job.interval_s, job.demand_wh), "demand", None),
        select_target(Series(job.start_s, job.interval_s, job.pv_wh), "pv", job.pv_capacity_w),
    )


def select_target(series: Series, kind: Kind, capacity_w: int | None) -> str:
    """The model of :data:`CATALOG_AUTO` that ``auto`` fits for ``series`` (``zero`` when
    nothing was measured, the stand-in's name under a day of history)."""
    season = intervals_per_day(series.interval_s)
    if not any(series.values_wh):
        return "zero"
    if len(series.values_wh) < season:
        return "history_mean"
    return _select_catalog(series, ModelContext(kind=kind, capacity_w=capacity_w), season)


def check_choice(choice: str, kind: Kind) -> str | None:
    """Why ``choice`` is not a model the service can use for ``kind`` (None: it is)."""
    names = models.model_names(kind)
    if choice == "auto" or choice in ALIASES or choice in names:
        return None
    return f"must be auto or one of {', '.join(names)}, got {choice!r}"


def fit_target(
    series: Series,
    steps: int,
    kind: Kind,
    choice: ModelChoice,
    *,
    capacity_w: int | None,
    state: Mapping[str, Any] | None = None,
    past: PastRows = (),
) -> Fitted:
    """The service's forecast of one target: ``choice`` from :mod:`forecasting.models`
    (``auto``: the one of :data:`CATALOG_AUTO` its backtest selects). Under a day of
    history, the built-in stand-in (its mean and spread, model ``history_mean``).
    ``state``: the previous fit's (Prophet warm-starts from it); the result carries its own.
    ``past``: the service's earlier forecasts; the stretch of them that the chosen model
    made (same version) and that ends where the history ends calibrates its band
    (:func:`past_tail`)."""
    problem = check_choice(choice, kind)
    if problem is not None:
        raise ValueError(problem)
    season = intervals_per_day(series.interval_s)
    capacity_wh = None if capacity_w is None else capacity_w * series.interval_s // 3600
    if not any(series.values_wh) or len(series.values_wh) < season:
        return fit_builtin(
            series, steps, kind, "naive", min_history=season, capacity_wh=capacity_wh
        )
    kept = dict(state or {})
    ctx = ModelContext(kind=kind, capacity_w=capacity_w, prophet_state=kept)
    name = ALIASES.get(choice, choice)
    if name == "auto":
        name = _select_catalog(series, ctx, season)
    if name in USES_PAST and (tail := past_tail(past, series, _version(name))):
        ctx = ModelContext(kind=kind, capacity_w=capacity_w, prophet_state=kept,
                           past_forecasts={name: tail})  # fmt: skip
    q = models.forecast(name, series, steps, ctx)
    return Fitted(
        kind, q.start_epoch_s, q.interval_s, q.p10_wh, q.p50_wh, q.p90_wh, model=q.model,
        version=_version(q.model), fallback=q.fallback_reason, state=kept or None,
    )  # fmt: skip


def past_tail(past: PastRows, series: Series, version: str) -> tuple[float, ...]:
    """The longest run of ``past`` forecasts made by ``version`` for consecutive intervals
    that ends with the history's last interval (empty if that interval has none)."""
    by_interval = {t: (v, wh) for t, v, wh in past}
    out: list[float] = []
    t = series.end_epoch_s - series.interval_s
    while len(out) < len(series.values_wh) and (row := by_interval.get(t)) and row[0] == version:
        out.append(float(row[1]))
        t -= series.interval_s
    return tuple(reversed(out))


@dataclass(frozen=True)
class _Score:
    mase: float


@dataclass(frozen=True)
class _Scores:
    models: dict[str, _Score]


def _select_catalog(series: Series, ctx: ModelContext, season: int) -> str:
    """:func:`forecasting.models.select_model` over day-ahead backtests of the last
    days (up to 5 origins) of the household's history."""
    origins = min(5, len(series.values_wh) // season - 2)
    if origins < 1:
        return CATALOG_AUTO[0]
    scores: dict[str, _Score] = {}
    for name in CATALOG_AUTO:

        def point(history: Series, horizon: int, name: str = name) -> Forecast:
            q = models.forecast(name, history, horizon, ctx)
            return Forecast(q.start_epoch_s, q.interval_s, q.p50_wh, q.model, q.fallback_reason)

        result = backtest(series, model=point, horizon=season, origins=origins, step=season)
        scores[name] = _Score(result.mase)
    return models.select_model(_Scores(scores))


def fit_builtin(
    series: Series,
    steps: int,
    kind: Kind,
    choice: BuiltinChoice,
    *,
    min_history: int,
    capacity_wh: int | None,
) -> Fitted:
    """One target's forecast of ``steps`` intervals with its bands, by this module's own
    models (``auto``: naive or same-slot mean by backtest; ``wattmesh simulate``'s)."""
    if choice not in get_args(BuiltinChoice):
        raise ValueError(f"unknown model {choice!r}")
    season = intervals_per_day(series.interval_s)
    if not any(series.values_wh):  # nothing ever measured (e.g. no PV): exactly zero
        zero = (0,) * steps
        return Fitted(kind, series.end_epoch_s, series.interval_s, zero, zero, zero, "zero",
                      f"zero/{FIT_VERSION}", None)  # fmt: skip
    if choice == "auto":
        choice = _select(series, kind, season)
    if choice == "prophet":
        forecast, calib = _prophet_calib(series, steps, kind, minimum=min_history, season=season)
    else:
        model = _cheap(choice, kind, season)
        forecast = model(series, steps)
        calib = day_ahead_calib(series, model, season=season, days=RESIDUAL_DAYS)
        if not calib and forecast.values_wh:  # under two days: the spread about its first value
            calib = (float(forecast.values_wh[0]),) * len(series.values_wh)
    cap = capacity_wh
    values = tuple(float(v if cap is None else min(v, cap)) for v in forecast.values_wh)
    q = to_quantile_forecast(
        PointRun(values, calib, forecast.model), history_wh=series.values_wh,
        start_epoch_s=forecast.start_epoch_s, interval_s=series.interval_s, season=season,
        upper_wh=cap, shift_median=False, pool_slots=max(season // 24, 1),
        min_per_window=MIN_PER_WINDOW,
        zero_slots=night_slots(series, season_intervals=season) if kind == "pv" else (),
    )  # fmt: skip
    return Fitted(
        kind,
        forecast.start_epoch_s,
        series.interval_s,
        q.p10_wh,
        q.p50_wh,
        q.p90_wh,
        model=forecast.model,
        version=_version(forecast.model),
        fallback=forecast.fallback_reason,
    )


def _cheap(choice: BuiltinChoice, kind: Kind, season: int) -> Callable[[Series, int], Forecast]:
    if choice == "naive":
        return lambda s, h: seasonal_naive(s, h, season_intervals=season, kind=kind)
    return lambda s, h: same_slot_mean(s, h, season_intervals=season, kind=kind)


def _select(series: Series, kind: Kind, season: int) -> BuiltinChoice:
    """The candidate with the lowest MASE over up to 7 day-ahead origins (the first
    candidate when the history is too short to tell)."""
    origins = min(RESIDUAL_DAYS, len(series.values_wh) // season - 2)
    if origins < 1:
        return AUTO_CANDIDATES[0]
    scores: list[tuple[float, int, BuiltinChoice]] = []
    for rank, choice in enumerate(AUTO_CANDIDATES):
        result = backtest(
            series, model=_cheap(choice, kind, season), horizon=season, origins=origins,
            step=season,
        )  # fmt: skip
        score = result.mase if math.isfinite(result.mase) else result.mae_wh
        scores.append((score, rank, choice))
    return min(scores)[2]


def day_ahead_calib(
    series: Series, model: Callable[[Series, int], Forecast], *, season: int, days: int
) -> tuple[float, ...]:
    """``model``'s day-ahead forecasts of the last ``days`` days of ``series`` (fewer when
    the history is shorter: each needs a day of history before it), each from the history
    before its day; for the last ``len`` intervals of the history."""
    values = series.values_wh
    n = len(values)
    k = max(min(days, n // season - 1), 0)
    out: list[float] = []
    for origin in range(n - k * season, n, season):
        history = Series(series.start_epoch_s, series.interval_s, values[:origin])
        out.extend(float(v) for v in model(history, season).values_wh)
    return tuple(out)


def _prophet_calib(
    series: Series, steps: int, kind: Kind, *, minimum: int, season: int
) -> tuple[Forecast, tuple[float, ...]]:
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
        calib = day_ahead_calib(series, _cheap("naive", kind, season), season=season,
                                days=RESIDUAL_DAYS)  # fmt: skip
    else:
        future = raw[tail:]
        values = (
            postprocess_pv(future, history=series, season_intervals=season)
            if kind == "pv"
            else postprocess_demand(future)
        )
        forecast = Forecast(series.end_epoch_s, step, values, "prophet", None)
        calib = tuple(float(round(raw[i])) for i in range(tail))  # in sample
    return forecast, calib


def _version(model: str) -> str:
    """``<model>[-<library version>]/<fit version>``, e.g. ``prophet-1.5.0/1``."""
    if model == "prophet":
        try:
            return f"prophet-{metadata.version('prophet')}/{FIT_VERSION}"
        except metadata.PackageNotFoundError:
            pass
    return f"{model}/{FIT_VERSION}"
