"""Rolling-origin backtests of the forecast models on a measured series, and their scores.

Origins step back from the end by ``step_s`` (24 h): the last forecast ends where the data
ends. At each origin every model trains on the ``window_days`` days before it (gaps filled
from earlier data only, see :meth:`MeasuredSeries.energy_wh`) and forecasts ``horizon``;
only measured intervals are scored. Scores, in W (average power per interval):

* ``mae_w``, ``rmse_w``: pooled over all origins and steps; ``nmae``: MAE / mean actual.
* ``mase``: the mean over origins of (origin MAE / the in-sample one-day seasonal naive MAE
  of that origin's training window, over measured pairs only).
* ``coverage_80``: the share of actuals inside [p10, p90]; ``width_80_w``: its mean width.
* PV: ``daylight_mae_w`` (steps outside the slots that were night on each of the last 7
  days of the window) and ``nrmse_capacity`` (RMSE / capacity).

``naive-day`` always runs; ``selected`` is :func:`models.select_model`'s choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wattmesh.broker.errors import ConfigError
from wattmesh.forecasting._measured import MeasuredSeries, parse_measured_csv
from wattmesh.forecasting._models import Kind, Series, night_slots
from wattmesh.forecasting.models import (
    ModelContext,
    QuantileForecast,
    forecast_many,
    model_names,
    select_model,
)

__all__ = [
    "BacktestReport",
    "MeasuredSeries",
    "ModelScore",
    "mase_scale_w",
    "parse_measured_csv",
    "run_backtest",
]

DAY_S = 86_400
WINDOW_DAYS = 60


@dataclass(frozen=True, slots=True)
class ModelScore:
    """One model's backtest scores (see the module docstring); None where not defined."""

    mae_w: float
    rmse_w: float
    mase: float
    coverage_80: float
    width_80_w: float
    nmae: float
    daylight_mae_w: float | None = None
    nrmse_capacity: float | None = None
    fallbacks: int = 0


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """A whole backtest: its setup, every model's scores and the selected model."""

    target: Kind
    origins: int
    horizon_s: int
    interval_s: int
    gaps: int
    window_days: int
    models: dict[str, ModelScore]
    selected: str

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` shape of ``wattmesh forecast backtest``."""
        hours = self.horizon_s / 3600
        models: dict[str, dict[str, Any]] = {}
        for name, s in self.models.items():
            row: dict[str, Any] = {
                "mae_w": round(s.mae_w, 1),
                "rmse_w": round(s.rmse_w, 1),
                "mase": _round(s.mase, 4),
                "coverage_80": round(s.coverage_80, 4),
                "width_80_w": round(s.width_80_w, 1),
                "nmae": _round(s.nmae, 4),
                "fallbacks": s.fallbacks,
            }
            if self.target == "pv":
                row["daylight_mae_w"] = _round(s.daylight_mae_w, 1)
                row["nrmse_capacity"] = _round(s.nrmse_capacity, 4)
            models[name] = row
        return {
            "target": self.target,
            "origins": self.origins,
            "horizon_h": int(hours) if hours.is_integer() else hours,
            "interval_s": self.interval_s,
            "window_days": self.window_days,
            "gaps": self.gaps,
            "models": models,
            "selected": self.selected,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def mase_scale_w(values_w: Sequence[float | None], season: int) -> float:
    """In-sample one-day seasonal naive MAE over the pairs where both values are measured."""
    diffs = [
        abs(a - b)
        for a, b in zip(values_w[season:], values_w[: len(values_w) - season], strict=True)
        if a is not None and b is not None
    ]
    return sum(diffs) / len(diffs) if diffs else math.nan


@dataclass
class _Tally:
    abs_err: list[float] = field(default_factory=list)
    sq_err: list[float] = field(default_factory=list)
    actual: list[float] = field(default_factory=list)
    inside: int = 0
    width: float = 0.0
    daylight_err: list[float] = field(default_factory=list)
    origin_mase: list[float] = field(default_factory=list)
    fallbacks: int = 0

    def add(
        self,
        fc: QuantileForecast,
        actual: Sequence[float | None],
        *,
        to_w: float,
        scale_w: float,
        night: frozenset[int],
        first_slot: int,
        season: int,
    ) -> None:
        self.fallbacks += fc.fallback_reason is not None
        errors: list[float] = []
        for h, a in enumerate(actual):
            if a is None:
                continue
            p10, p50, p90 = fc.p10_wh[h] * to_w, fc.p50_wh[h] * to_w, fc.p90_wh[h] * to_w
            err = abs(p50 - a)
            errors.append(err)
            self.sq_err.append(err * err)
            self.actual.append(a)
            self.inside += p10 <= a <= p90
            self.width += p90 - p10
            if (first_slot + h) % season not in night:
                self.daylight_err.append(err)
        self.abs_err.extend(errors)
        if errors and scale_w > 0:
            self.origin_mase.append(sum(errors) / len(errors) / scale_w)

    def score(self, *, pv: bool, capacity_w: int | None) -> ModelScore:
        n = len(self.abs_err)
        mae = sum(self.abs_err) / n if n else math.nan
        rmse = math.sqrt(sum(self.sq_err) / n) if n else math.nan
        mean_actual = sum(self.actual) / n if n else math.nan
        return ModelScore(
            mae_w=mae,
            rmse_w=rmse,
            mase=sum(self.origin_mase) / len(self.origin_mase) if self.origin_mase else math.nan,
            coverage_80=self.inside / n if n else math.nan,
            width_80_w=self.width / n if n else math.nan,
            nmae=mae / mean_actual if mean_actual else math.nan,
            daylight_mae_w=(
                sum(self.daylight_err) / len(self.daylight_err) if self.daylight_err else math.nan
            )
            if pv
            else None,
            nrmse_capacity=rmse / capacity_w if pv and capacity_w else None,
            fallbacks=self.fallbacks,
        )


def _origins(length: int, *, horizon: int, origins: int, step: int, season: int) -> list[int]:
    last = length - horizon
    points = [last - k * step for k in range(max(origins, 1))][::-1]
    if origins < 1 or points[0] < 2 * season:
        days = length / season
        raise ConfigError(
            f"{days:.1f} days of data are too short for {origins} origins a day apart "
            f"with a {horizon}-interval horizon after 2 days of training"
        )
    return points


def run_backtest(
    series: MeasuredSeries,
    *,
    ctx: ModelContext,
    horizon_s: int,
    origins: int,
    models: Sequence[str] | None = None,
    window_days: int = WINDOW_DAYS,
    step_s: int = DAY_S,
) -> BacktestReport:
    """Backtest ``models`` (default: all for ``ctx.kind``) on ``series``; see the module doc."""
    interval = series.interval_s
    if horizon_s <= 0 or horizon_s % interval:
        raise ConfigError(f"horizon of {horizon_s} s is not a whole number of {interval} s")
    if ctx.kind == "pv" and not ctx.capacity_w:
        raise ConfigError("a PV backtest needs the capacity (--capacity-w)")
    names = list(models) if models is not None else list(model_names(ctx.kind))
    known = model_names(ctx.kind)
    for name in names:
        if name not in known:
            raise ConfigError(f"no {ctx.kind} model {name!r}; known: {', '.join(known)}")
    if "naive-day" not in names:
        names.insert(0, "naive-day")
    names.sort(key=known.index)
    season = DAY_S // interval
    horizon = horizon_s // interval
    energy = series.energy_wh()
    points = _origins(
        len(energy), horizon=horizon, origins=origins, step=step_s // interval, season=season
    )
    to_w = 3600 / interval
    tallies = {name: _Tally() for name in names}
    for origin in points:
        begin = max(0, origin - window_days * season)
        history = Series(
            series.start_epoch_s + begin * interval, interval, tuple(energy[begin:origin])
        )
        forecasts = forecast_many(names, history, horizon, ctx)
        scale = mase_scale_w(series.values_w[begin:origin], season)
        night = night_slots(history, season_intervals=season) if ctx.kind == "pv" else frozenset()
        actual = series.values_w[origin : origin + horizon]
        for name in names:
            tallies[name].add(
                forecasts[name],
                actual,
                to_w=to_w,
                scale_w=scale,
                night=night,
                first_slot=origin - begin,
                season=season,
            )
    scores = {
        name: tally.score(pv=ctx.kind == "pv", capacity_w=ctx.capacity_w)
        for name, tally in tallies.items()
    }
    report = BacktestReport(
        target=ctx.kind,
        origins=len(points),
        horizon_s=horizon_s,
        interval_s=interval,
        gaps=series.gaps,
        window_days=window_days,
        models=scores,
        selected="naive-day",
    )
    return dataclasses.replace(report, selected=select_model(report))
