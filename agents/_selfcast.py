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

:func:`self_forecast` picks, for the interval starting at ``interval``:

* the same slot's mean over the last 7 days when all 7 are there (the strongest
  simple single-household baseline measured, MASE 0.82-0.87 day-ahead);
* with less, the previous day's same slot (or, when that one is missing, the mean of
  the older same slots there are);
* with less than a day, the last interval's flow (persistence), if it is at most a
  day old;
* else nothing (the agent then orders no trade).

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

    SEASONAL_WEEK = "same-slot mean of the last 7 days"
    SEASONAL_DAY = "previous day's same slot"
    SEASONAL_OLDER = "same-slot mean of the older days"
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


def _mean(values: list[int]) -> int:
    """Integer mean, halves rounded up."""
    return (2 * sum(values) + len(values)) // (2 * len(values))


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
    if DAY_S % interval_s == 0:  # slots repeat daily
        same_slot = [flow(interval - day * DAY_S) for day in range(1, HISTORY_DAYS + 1)]
        present = [f for f in same_slot if f is not None]
        if len(present) == HISTORY_DAYS:
            return _combined(present, Method.SEASONAL_WEEK, history_days)
        if (yesterday := same_slot[0]) is not None:
            return _combined([yesterday], Method.SEASONAL_DAY, history_days)
        if present:
            return _combined(present, Method.SEASONAL_OLDER, history_days)
    for start in range(interval - interval_s, interval - DAY_S - 1, -interval_s):
        if start < oldest:
            break
        last = flow(start)
        if last is not None:
            return SelfForecast(last.demand_wh, last.pv_wh, Method.PERSISTENCE, history_days)
    return None


def _combined(flows: list[Flow], method: Method, history_days: int) -> SelfForecast:
    demand_wh = _mean([f.demand_wh for f in flows])
    pv_wh = _mean([f.pv_wh for f in flows])
    return SelfForecast(demand_wh, pv_wh, method, max(history_days, 1))


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
