"""The agent's own forecast of the next interval, from its own recent meter readings.

Pure: no I/O, standard library only (the agent on the Pi has no pandas). The agent
orders on it when no forecasting service serves it (no forecaster key) or when no
fresh signed forecast arrived in time (:mod:`agents.agent`).

A :class:`Registers` is what a reading says at an interval's start: the meter's
cumulative registers (Wh). Two readings one interval apart give that interval's
:class:`Flow`: demand ``d_import - d_export + d_pv - d_battery_in + d_battery_out``
and PV ``d_pv`` (docs/protocol.md, readings). A meter without a PV register (a plain
P1 or Modbus grid meter) shows net export as negative demand: that part counts as
PV, so ``demand - pv`` is always the household's net grid energy without its battery.

:func:`self_forecast` forecasts the interval starting at ``interval``, which has
just opened (its horizon is one interval: the last one's energy is known):

* with a day of history or more, the mean of two figures: the last interval's flow
  and the same slot's mean over the days there are, up to 7 ("own seasonal");
* with less than a day, the last interval's flow (persistence), if it is at most a
  day old;
* else nothing (the agent then orders no trade).

Why the mean of the two: at this horizon persistence is the baseline to beat, and
neither the same-slot mean of 7 days (the best simple day-ahead baseline for one
household) nor the previous day's slot beats it on its own; their mean with the last
interval does, at every history length (bench/bench_selfcast.py, figures in
BENCHMARKS.md). The weight is the untuned one half.

:class:`ReadingRing` keeps the readings that needs, at most 7 days and one interval
of them (bounded memory: 673 readings at 15-minute intervals).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

__all__ = [
    "DAY_S",
    "HISTORY_DAYS",
    "HISTORY_S",
    "Flow",
    "Method",
    "ReadingRing",
    "Registers",
    "SelfForecast",
    "flow_between",
    "ring_slots",
    "self_forecast",
]

DAY_S: Final = 86_400
HISTORY_DAYS: Final = 7
HISTORY_S: Final = HISTORY_DAYS * DAY_S


@dataclass(frozen=True, slots=True)
class Registers:
    """A meter's cumulative registers (Wh) read when the interval ``interval`` opened."""

    interval: int  # epoch s: the start of the interval the reading was taken for
    import_wh: int
    export_wh: int
    pv_wh: int = 0
    battery_in_wh: int = 0
    battery_out_wh: int = 0


@dataclass(frozen=True, slots=True)
class Flow:
    """A household's energy over one interval (Wh), without its battery."""

    demand_wh: int
    pv_wh: int


class Method(Enum):
    """How a :class:`SelfForecast` was made."""

    SEASONAL = "mean of the last interval and the same slot of earlier days"
    SEASONAL_ONLY = "the same slot of earlier days (no last interval)"
    PERSISTENCE = "last interval"


@dataclass(frozen=True, slots=True)
class SelfForecast:
    """The agent's own forecast for one interval (Wh) and how it was made."""

    demand_wh: int
    pv_wh: int
    method: Method
    history_days: int  # whole days of history the ring held

    @property
    def label(self) -> str:
        """What the diagnostics call it: ``own seasonal (N days of history)`` or
        ``persistence``."""
        if self.method is Method.PERSISTENCE:
            return "persistence"
        days = self.history_days
        return f"own seasonal ({days} day{'' if days == 1 else 's'} of history)"


def flow_between(earlier: Registers, later: Registers) -> Flow | None:
    """The flow between two readings; None if a register went backwards (a meter
    swapped or reset): that interval is not evidence of anything."""
    deltas = (
        later.import_wh - earlier.import_wh,
        later.export_wh - earlier.export_wh,
        later.pv_wh - earlier.pv_wh,
        later.battery_in_wh - earlier.battery_in_wh,
        later.battery_out_wh - earlier.battery_out_wh,
    )
    if min(deltas) < 0:
        return None
    d_import, d_export, d_pv, d_in, d_out = deltas
    demand_wh = d_import - d_export + d_pv - d_in + d_out
    if demand_wh < 0:  # export the PV register did not see (or no PV register at all)
        return Flow(0, d_pv - demand_wh)
    return Flow(demand_wh, d_pv)


def ring_slots(interval_s: int) -> int:
    """Readings the ring needs at most: 7 days of intervals and the one after them."""
    if interval_s < 1:
        raise ValueError(f"interval_s must be at least 1, got {interval_s}")
    return HISTORY_S // interval_s + 1


def _mean(values: list[int], count: int | None = None) -> int:
    """``sum(values) / count`` (default: their number), halves rounded up."""
    n = len(values) if count is None else count
    return (2 * sum(values) + n) // (2 * n)


def self_forecast(
    readings: Mapping[int, Registers], interval: int, interval_s: int
) -> SelfForecast | None:
    """The forecast for the interval starting at ``interval`` (epoch s) from
    ``readings`` (by the interval each was taken for); None without a flow to go on."""

    def flow(start: int) -> Flow | None:
        earlier, later = readings.get(start), readings.get(start + interval_s)
        if earlier is None or later is None:
            return None
        return flow_between(earlier, later)

    oldest = min(readings, default=interval)
    history_days = max(0, interval - oldest) // DAY_S
    last = None
    for start in range(interval - interval_s, interval - DAY_S - 1, -interval_s):
        if start < oldest or (last := flow(start)) is not None:
            break
    same_slot: list[Flow] = []
    if DAY_S % interval_s == 0:  # slots repeat daily
        days = range(1, HISTORY_DAYS + 1)
        same_slot = [f for day in days if (f := flow(interval - day * DAY_S)) is not None]
    if same_slot:
        days_kept = max(history_days, 1)
        seasonal = Flow(
            _mean([f.demand_wh for f in same_slot]), _mean([f.pv_wh for f in same_slot])
        )
        if last is None:
            return SelfForecast(seasonal.demand_wh, seasonal.pv_wh, Method.SEASONAL_ONLY, days_kept)
        # (last + mean of n) / 2 = (n * last + sum) / 2n, rounded once
        n = len(same_slot)
        demand_wh = _mean([n * last.demand_wh, *(f.demand_wh for f in same_slot)], 2 * n)
        pv_wh = _mean([n * last.pv_wh, *(f.pv_wh for f in same_slot)], 2 * n)
        return SelfForecast(demand_wh, pv_wh, Method.SEASONAL, days_kept)
    if last is not None:
        return SelfForecast(last.demand_wh, last.pv_wh, Method.PERSISTENCE, history_days)
    return None


class ReadingRing:
    """The readings of the last 7 days (and one interval), by the interval each was
    taken for; older ones are forgotten as newer ones arrive."""

    def __init__(self, readings: Iterable[Registers] = ()) -> None:
        self._readings: dict[int, Registers] = {}  # in the order they came
        self._newest: int | None = None
        for reading in sorted(readings, key=lambda r: r.interval):
            self.add(reading)

    def __len__(self) -> int:
        return len(self._readings)

    @property
    def readings(self) -> Mapping[int, Registers]:
        return self._readings

    def add(self, reading: Registers) -> bool:
        """Keep ``reading`` (replacing one taken for the same interval) and forget
        those more than 7 days older than the newest; False (not kept) if it is that
        old itself."""
        newest = reading.interval if self._newest is None else max(self._newest, reading.interval)
        cutoff = newest - HISTORY_S
        if reading.interval < cutoff:
            return False
        self._readings[reading.interval] = reading
        self._newest = newest
        # Readings come in time order, so the oldest are first.
        while (first := next(iter(self._readings))) < cutoff:
            del self._readings[first]
        return True

    def forecast(self, interval: int, interval_s: int) -> SelfForecast | None:
        """:func:`self_forecast` for ``interval`` over the readings kept."""
        return self_forecast(self._readings, interval, interval_s)
