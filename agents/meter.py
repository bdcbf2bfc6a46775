"""Meters the agent reads, behind one small interface.

A meter returns cumulative registers, like a real electricity meter: grid import and
export (Wh), PV generation (Wh, 0 without PV) and the present grid power (W).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

__all__ = ["MarketClock", "Meter", "MeterReading", "SimulatedMeter", "system_clock"]


@dataclass(frozen=True)
class MeterReading:
    time: int  # epoch s, UTC
    import_wh: int
    export_wh: int
    pv_wh: int
    power_w: int  # positive importing, negative exporting
    battery_in_wh: int | None = None  # cumulative AC energy into a home battery, if any
    battery_out_wh: int | None = None  # cumulative AC energy out of it


class Meter(Protocol):
    async def read(self) -> MeterReading: ...


Clock = Callable[[], int]
"""Returns the present time in epoch seconds."""


def system_clock() -> int:
    return int(time.time())


class MarketClock:
    """Simulated time that follows the market operator's announcements.

    In ``wattmesh simulate`` no wall clock is involved: the agent sets this clock to
    each announced interval start, and the simulated meter reads at that time.
    """

    def __init__(self, start: int) -> None:
        self._now = start

    def set(self, now: int) -> None:
        if now < self._now:
            raise ValueError("simulated time cannot go backwards")
        self._now = now

    def __call__(self) -> int:
        return self._now


class SimulatedMeter:
    """Replays integer per-interval profiles as cumulative registers.

    Interval ``k`` covers ``[start + k*interval_s, start + (k+1)*interval_s)``; within it
    the household consumes ``demand_wh[k]`` and produces ``pv_wh[k]``. The grid meter sees
    the net per interval (import when demand exceeds PV, export otherwise).
    """

    def __init__(
        self,
        *,
        start: int,
        interval_s: int,
        demand_wh: Sequence[int],
        pv_wh: Sequence[int],
        clock: Clock,
    ) -> None:
        if len(demand_wh) != len(pv_wh):
            raise ValueError("demand and PV profiles differ in length")
        if min(demand_wh, default=0) < 0 or min(pv_wh, default=0) < 0:
            raise ValueError("profiles must not be negative")
        self.start = start
        self.interval_s = interval_s
        self._clock = clock
        self._net = [d - p for d, p in zip(demand_wh, pv_wh, strict=True)]
        self._import = [0, *accumulate(max(n, 0) for n in self._net)]
        self._export = [0, *accumulate(max(-n, 0) for n in self._net)]
        self._pv = [0, *accumulate(pv_wh)]

    @property
    def intervals(self) -> int:
        return len(self._net)

    async def read(self) -> MeterReading:
        now = self._clock()
        elapsed = (now - self.start) // self.interval_s
        if not 0 <= elapsed <= self.intervals:
            raise ValueError(f"time {now} is outside the simulated profile")
        current = self._net[elapsed] if elapsed < self.intervals else 0
        return MeterReading(
            time=now,
            import_wh=self._import[elapsed],
            export_wh=self._export[elapsed],
            pv_wh=self._pv[elapsed],
            power_w=current * 3600 // self.interval_s,
        )
