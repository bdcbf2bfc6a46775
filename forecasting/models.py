"""The forecast models by name, their quantile forecasts, and the choice among them.

``MODELS`` lists every model, simplest first: ``naive-day``, ``naive-week``, ``mean-7d``,
``clearsky-index`` (PV only), ``mstl``, ``prophet``, ``best2`` (the mean of the two members
with the lowest recent day-ahead error) and ``blend`` (all members weighted by the inverse
of that error). :func:`forecast` runs one, :func:`forecast_many` several on one history
(sharing the members' fits), :func:`neighbourhood_forecast` forecasts the sum of many
households' histories, and :func:`select_model` picks the backtest's winner. Every forecast
carries 10/50/90 % quantiles in integer Wh per interval (:class:`QuantileForecast`).
Importing this module does not import pandas, prophet, pvlib or statsforecast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from wattmesh.forecasting import _baselines, _combine, _fitted, _pv
from wattmesh.forecasting._context import Job, ModelContext, PvSite
from wattmesh.forecasting._intervals import PointRun, QuantileForecast, to_quantile_forecast
from wattmesh.forecasting._models import Kind, Series

__all__ = [
    "MODELS",
    "TIE_MASE",
    "ModelContext",
    "ModelSpec",
    "PvSite",
    "QuantileForecast",
    "Series",
    "forecast",
    "forecast_many",
    "model_names",
    "neighbourhood_forecast",
    "select_model",
]

TIE_MASE = 0.005
"""Backtest MASEs this close count as a tie, which the simpler model wins."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model: its name, the targets it serves, and how it makes a point run."""

    name: str
    kinds: frozenset[Kind]
    make: Callable[[Job], PointRun]
    summary: str


_BOTH: frozenset[Kind] = frozenset(("demand", "pv"))
_MEMBERS: dict[Kind, tuple[str, ...]] = {
    "demand": ("naive-day", "mean-7d", "mean-14d", "mstl", "prophet"),
    "pv": ("naive-day", "mean-7d", "clearsky-index", "mstl", "prophet"),
}


def _combo(job: Job, *, model: str, best: int | None) -> PointRun:
    members = [_run(job, name) for name in _MEMBERS[job.ctx.kind]]
    return _combine.blend(members, job.values, model=model, best=best)


_SPECS = (
    ModelSpec(
        "naive-day",
        _BOTH,
        partial(_baselines.naive_lag, days=1, model="naive-day"),
        "the previous day",
    ),
    ModelSpec(
        "naive-week",
        _BOTH,
        partial(_baselines.naive_lag, days=7, model="naive-week"),
        "the same day last week",
    ),
    ModelSpec(
        "mean-7d",
        _BOTH,
        partial(_baselines.mean_days, days=7, model="mean-7d"),
        "the same hour's mean over the last 7 days",
    ),
    ModelSpec(
        "mean-14d",
        _BOTH,
        partial(_baselines.mean_days, days=14, model="mean-14d"),
        "the same hour's mean over the last 14 days",
    ),
    ModelSpec(
        "clearsky-index",
        frozenset(("pv",)),
        partial(_pv.clearsky_index, model="clearsky-index"),
        "clear-sky PV times the recent clear-sky index",
    ),
    ModelSpec("mstl", _BOTH, partial(_fitted.mstl, model="mstl"), "MSTL (statsforecast)"),
    ModelSpec(
        "prophet",
        _BOTH,
        partial(_fitted.prophet, model="prophet"),
        "Prophet with holidays (demand) or the clear-sky regressor (PV)",
    ),
    ModelSpec(
        "best2",
        _BOTH,
        partial(_combo, model="best2", best=2),
        "mean of the two members with the lowest recent error",
    ),
    ModelSpec(
        "blend",
        _BOTH,
        partial(_combo, model="blend", best=None),
        "all members weighted by 1 / recent error",
    ),
)
MODELS: Mapping[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
_RANK = {name: rank for rank, name in enumerate(MODELS)}


def model_names(kind: Kind) -> tuple[str, ...]:
    """The models that serve ``kind``, simplest first."""
    return tuple(name for name, spec in MODELS.items() if kind in spec.kinds)


def _spec(name: str, kind: Kind) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None or kind not in spec.kinds:
        raise ValueError(f"no {kind} model named {name!r}; known: {', '.join(model_names(kind))}")
    return spec


def _run(job: Job, name: str) -> PointRun:
    return job.run(name, _spec(name, job.ctx.kind).make)


def _quantiles(job: Job, run: PointRun) -> QuantileForecast:
    return to_quantile_forecast(
        run,
        history_wh=job.values,
        start_epoch_s=job.history.end_epoch_s,
        interval_s=job.history.interval_s,
        season=job.season,
        upper_wh=job.capacity_wh,
        zero_slots=job.zero_slots(),
        shift_median=job.ctx.kind == "demand",
    )


def forecast_many(
    names: Sequence[str], history: Series, horizon: int, ctx: ModelContext
) -> dict[str, QuantileForecast]:
    """Each named model's forecast of ``horizon`` intervals after ``history``."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 interval, got {horizon}")
    for name in names:
        _spec(name, ctx.kind)
    job = Job(history, horizon, ctx)
    return {name: _quantiles(job, _run(job, name)) for name in names}


def forecast(name: str, history: Series, horizon: int, ctx: ModelContext) -> QuantileForecast:
    """Model ``name``'s forecast of ``horizon`` intervals after ``history``."""
    return forecast_many([name], history, horizon, ctx)[name]


def neighbourhood_forecast(
    histories: Sequence[Series], horizon: int, ctx: ModelContext, *, model: str
) -> QuantileForecast:
    """Forecast of the neighbourhood's total: ``model`` run on the sum of the histories.

    Forecasting the sum (rather than summing forecasts) gives intervals that know how much
    the households' errors cancel. The histories must share start, interval and length;
    ``ctx.capacity_w`` is then the neighbourhood's total PV capacity.
    """
    if not histories:
        raise ValueError("no histories to add up")
    first = histories[0]
    for other in histories[1:]:
        if (other.start_epoch_s, other.interval_s, len(other.values_wh)) != (
            first.start_epoch_s,
            first.interval_s,
            len(first.values_wh),
        ):
            raise ValueError("the histories differ in start, interval or length")
    total = tuple(sum(column) for column in zip(*(h.values_wh for h in histories), strict=True))
    return forecast(model, Series(first.start_epoch_s, first.interval_s, total), horizon, ctx)


class _Score(Protocol):
    @property
    def mase(self) -> float: ...


class _Result(Protocol):
    @property
    def models(self) -> Mapping[str, _Score]: ...


def select_model(result: _Result) -> str:
    """The backtest's winner: the lowest MASE, where MASEs within :data:`TIE_MASE` of it
    tie and the simplest of those wins (the order of :data:`MODELS`). NaN MASEs never win."""
    scored = {n: s.mase for n, s in result.models.items() if not math.isnan(s.mase)}
    if not scored:
        return "naive-day"
    best = min(scored.values())
    tied = [n for n, m in scored.items() if m <= best + TIE_MASE]
    return min(tied, key=lambda n: _RANK.get(n, len(_RANK)))
