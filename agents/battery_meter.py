"""A simulated household with a battery behind its grid meter.

Like ``SimulatedMeter`` it replays per-interval demand and PV profiles, but the battery
acts on the *real* demand and PV of each interval (``agents.battery.step``) in the mode
the agent commanded for it, and the grid registers change only by the remainder; the
battery's own registers (AC energy in and out) are read too, so the forecaster can tell
demand from battery flows. The
battery advances lazily, interval by interval, as simulated time passes a boundary, so
the agent's command for an interval (given when it orders) is in force before that
interval is applied. An interval without a command runs in ``default_mode``.
"""

from __future__ import annotations

from collections.abc import Sequence

from wattmesh.agents.battery import BatteryMode, BatterySpec, BatteryStep, step
from wattmesh.agents.meter import Clock, MeterReading

__all__ = ["BatteryMeter"]


class BatteryMeter:
    """Cumulative grid and PV registers of a household whose battery follows its commands.

    Interval ``k`` covers ``[start + k*interval_s, start + (k+1)*interval_s)``. ``steps``
    holds what the battery did in each interval applied so far.
    """

    def __init__(
        self,
        *,
        start: int,
        interval_s: int,
        demand_wh: Sequence[int],
        pv_wh: Sequence[int],
        battery: BatterySpec,
        clock: Clock,
        soc_wh: int | None = None,
        default_mode: BatteryMode = BatteryMode.STORE_SURPLUS,
    ) -> None:
        if len(demand_wh) != len(pv_wh):
            raise ValueError("demand and PV profiles differ in length")
        if min(demand_wh, default=0) < 0 or min(pv_wh, default=0) < 0:
            raise ValueError("profiles must not be negative")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        initial = battery.min_soc_wh if soc_wh is None else soc_wh
        battery.check_soc(initial)
        self.start = start
        self.interval_s = interval_s
        self.initial_soc_wh = initial
        self.default_mode = default_mode
        self.steps: list[BatteryStep] = []
        self._battery = battery
        self._clock = clock
        self._demand = tuple(demand_wh)
        self._pv = tuple(pv_wh)
        self._modes: dict[int, BatteryMode] = {}
        self._import = [0]
        self._export = [0]
        self._pv_register = [0]
        self._battery_in = [0]
        self._battery_out = [0]

    @property
    def battery(self) -> BatterySpec:
        return self._battery

    @property
    def intervals(self) -> int:
        return len(self._demand)

    def command(self, interval: int, mode: BatteryMode) -> None:
        """Run the interval starting at ``interval`` (epoch s) in ``mode``."""
        index, rest = divmod(interval - self.start, self.interval_s)
        if rest or not 0 <= index < self.intervals:
            raise ValueError(f"{interval} is not the start of a simulated interval")
        if index < len(self.steps):
            raise ValueError(f"interval {interval} has already been applied")
        self._modes[index] = mode

    def _soc_now(self) -> int:
        return self.steps[-1].soc_end_wh if self.steps else self.initial_soc_wh

    def _elapsed(self) -> int:
        now = self._clock()
        elapsed = (now - self.start) // self.interval_s
        if not 0 <= elapsed <= self.intervals:
            raise ValueError(f"time {now} is outside the simulated profile")
        while len(self.steps) < elapsed:
            self.steps.append(self._apply(len(self.steps), self._modes.get(len(self.steps))))
        return elapsed

    def _apply(self, index: int, mode: BatteryMode | None) -> BatteryStep:
        done = step(
            self._battery,
            soc_wh=self._soc_now(),
            demand_wh=self._demand[index],
            pv_wh=self._pv[index],
            interval_s=self.interval_s,
            mode=self.default_mode if mode is None else mode,
        )
        self._import.append(self._import[-1] + done.import_wh)
        self._export.append(self._export[-1] + done.export_wh)
        self._pv_register.append(self._pv_register[-1] + self._pv[index])
        self._battery_in.append(self._battery_in[-1] + done.charge_wh)
        self._battery_out.append(self._battery_out[-1] + done.discharge_wh)
        return done

    async def soc_wh(self) -> int:
        """The SoC (Wh) at the present simulated time."""
        self._elapsed()
        return self._soc_now()

    async def read(self) -> MeterReading:
        now = self._clock()
        elapsed = self._elapsed()
        power_w = 0
        if elapsed < self.intervals:
            # Grid power at the start of the interval: the battery's response so far.
            mode = self._modes.get(elapsed, self.default_mode)
            preview = step(
                self._battery,
                soc_wh=self._soc_now(),
                demand_wh=self._demand[elapsed],
                pv_wh=self._pv[elapsed],
                interval_s=self.interval_s,
                mode=mode,
            )
            power_w = (preview.import_wh - preview.export_wh) * 3600 // self.interval_s
        return MeterReading(
            time=now,
            import_wh=self._import[elapsed],
            export_wh=self._export[elapsed],
            pv_wh=self._pv_register[elapsed],
            power_w=power_w,
            battery_in_wh=self._battery_in[elapsed],
            battery_out_wh=self._battery_out[elapsed],
        )
