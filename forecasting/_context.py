"""What a model run knows besides the history: the target, the PV site, weather, holidays.

A :class:`Job` is one forecast: a history, a horizon and a :class:`ModelContext`. It memoises
each model's :class:`PointRun` (and shared inputs such as the clear-sky series), so that the
combinations reuse their members' runs instead of fitting them again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wattmesh.forecasting._intervals import PointRun
from wattmesh.forecasting._models import Kind, Series, intervals_per_day, night_slots
from wattmesh.forecasting.weather import WeatherProvider, WeatherSeries

__all__ = ["Job", "ModelContext", "PvSite"]

CALIB_DAYS = 14
"""Days at the end of each history whose day-ahead errors calibrate the intervals."""


@dataclass(frozen=True, slots=True)
class PvSite:
    """Where a PV system is and how it faces (degrees; azimuth 180 = due south)."""

    latitude_deg: float
    longitude_deg: float
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0
    altitude_m: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelContext:
    """What the models may use besides the history.

    ``capacity_w``: the PV system's capacity (PV forecasts never exceed it);
    ``site``: the PV site, for pvlib's clear-sky power (without it the clear-sky profile is
    the envelope of the last two weeks); ``weather``: a weather provider (optional);
    ``country``: ISO 3166 code whose public holidays the demand model knows;
    ``utc_offset_s``: the households' local clock (the days and holidays the models see);
    ``prophet_state``: Prophet's warm start: the previous fit's parameters in, this forecast's
    full fit's parameters out (None: cold, nothing kept);
    ``past_forecasts``: per model name, that model's own earlier point forecasts (Wh per
    interval, made by the service at its earlier refits, each from an origin before the
    interval) for the last ``len`` intervals of the history, one contiguous stretch ending
    where the history ends. The fitted models use them as their calibration forecasts
    instead of a second fit on the shortened history (:mod:`forecasting._fitted`).
    """

    kind: Kind
    capacity_w: int | None = None
    site: PvSite | None = None
    weather: WeatherProvider | None = None
    country: str | None = None
    utc_offset_s: int = 0
    calib_days: int = CALIB_DAYS
    prophet_state: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    past_forecasts: Mapping[str, tuple[float, ...]] = field(
        default_factory=dict, compare=False, hash=False
    )


@dataclass
class Job:
    """One forecast to make (see the module docstring)."""

    history: Series
    horizon: int
    ctx: ModelContext
    _memo: dict[str, Any] = field(default_factory=dict)

    @property
    def season(self) -> int:
        """Intervals per day."""
        return intervals_per_day(self.history.interval_s)

    @property
    def values(self) -> tuple[int, ...]:
        return self.history.values_wh

    @property
    def calib_len(self) -> int:
        """Calibration intervals wanted: ``calib_days`` days, at most the history less 2 days."""
        return max(0, min(self.ctx.calib_days * self.season, len(self.values) - 2 * self.season))

    @property
    def capacity_wh(self) -> int | None:
        """The PV capacity as Wh per interval (None for demand or when unknown)."""
        if self.ctx.kind != "pv" or self.ctx.capacity_w is None:
            return None
        return self.ctx.capacity_w * self.history.interval_s // 3600

    def zero_slots(self) -> frozenset[int]:
        """PV: slots of the day that were night (0 Wh) on each of the last 7 days."""
        if self.ctx.kind != "pv":
            return frozenset()
        return night_slots(self.history, season_intervals=self.season)

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per job and key."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def weather(self) -> WeatherSeries | None:
        """The provider's weather over the history and the horizon, or None without one."""
        provider = self.ctx.weather
        if provider is None:
            return None
        count = len(self.values) + self.horizon
        series: WeatherSeries = self.memo(
            "weather",
            lambda: provider.weather(self.history.start_epoch_s, self.history.interval_s, count),
        )
        return series

    def run(self, name: str, make: Callable[[Job], PointRun]) -> PointRun:
        """The memoised point run of model ``name``."""
        run: PointRun = self.memo("run:" + name, lambda: make(self))
        return run
