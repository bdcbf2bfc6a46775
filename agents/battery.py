"""A home battery behind the grid meter: a pure model of one interval.

Units: energy in integer Wh, power in integer W, time in seconds.

Losses are all applied on charging, so every figure stays an integer and the state of
charge (SoC) is exactly the energy that can still be delivered:

* charging with ``c`` Wh of AC energy (taken from the household's surplus) raises the
  SoC by ``stored(c) = floor(c * round_trip_permille / 1000)``; ``c - stored(c)`` is lost;
* discharging ``d`` Wh of AC energy (delivered to the household) lowers the SoC by ``d``.

Per-interval energy limits are ``max_charge_w * interval_s // 3600`` (AC energy in) and
``max_discharge_w * interval_s // 3600`` (AC energy out), and the SoC stays within
``[min_soc_wh, capacity_wh]``.

The exact balance of one interval (``step`` below), with ``charge``/``discharge`` the AC
energy into and out of the battery and ``import``/``export`` the grid meter's deltas::

    demand - pv == import - export + discharge - charge
    soc_end - soc_start == stored(charge) - discharge
    losses == charge - stored(charge)
    =>  demand - pv + losses + (soc_end - soc_start) == import - export
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = ["BatteryController", "BatterySpec"]

PERMILLE = 1000


@dataclass(frozen=True)
class BatterySpec:
    """A battery's ratings: capacity and SoC floor in Wh, power limits in W.

    ``round_trip_permille`` (1..1000) is the share of the AC energy put in that can be
    taken out again; see the module docstring for how losses are applied.
    """

    capacity_wh: int
    max_charge_w: int
    max_discharge_w: int
    round_trip_permille: int = 900
    min_soc_wh: int = 0

    def __post_init__(self) -> None:
        if self.capacity_wh <= 0:
            raise ValueError(f"capacity_wh must be > 0, got {self.capacity_wh}")
        if self.max_charge_w < 0 or self.max_discharge_w < 0:
            raise ValueError("max_charge_w and max_discharge_w must be >= 0")
        if not 1 <= self.round_trip_permille <= PERMILLE:
            raise ValueError(
                f"round_trip_permille must lie in [1, 1000], got {self.round_trip_permille}"
            )
        if not 0 <= self.min_soc_wh <= self.capacity_wh:
            raise ValueError(f"min_soc_wh must lie in [0, capacity_wh], got {self.min_soc_wh}")

    def charge_limit_wh(self, interval_s: int) -> int:
        """Most AC energy (Wh) the battery can take in over ``interval_s`` seconds."""
        return self.max_charge_w * interval_s // 3600

    def discharge_limit_wh(self, interval_s: int) -> int:
        """Most AC energy (Wh) the battery can deliver over ``interval_s`` seconds."""
        return self.max_discharge_w * interval_s // 3600

    def stored_wh(self, charge_wh: int) -> int:
        """SoC gained by charging ``charge_wh`` Wh of AC energy."""
        return charge_wh * self.round_trip_permille // PERMILLE

    def charge_for_headroom_wh(self, headroom_wh: int) -> int:
        """The largest AC charge ``c`` with ``stored_wh(c) <= headroom_wh``."""
        return (PERMILLE * (headroom_wh + 1) - 1) // self.round_trip_permille

    def check_soc(self, soc_wh: int) -> None:
        if not self.min_soc_wh <= soc_wh <= self.capacity_wh:
            raise ValueError(f"SoC {soc_wh} Wh outside [{self.min_soc_wh}, {self.capacity_wh}] Wh")


class BatteryMode(Enum):
    """What the battery does with the household's surplus in an interval.

    In both modes stored energy covers the household's own shortfall first.
    """

    STORE_SURPLUS = "store-surplus"  # charge from surplus; only the rest is exported
    SELL_SURPLUS = "sell-surplus"  # never charge; all surplus goes to the grid / market


@dataclass(frozen=True)
class BatteryStep:
    """What happened (or is planned) in one interval; all figures in Wh, all >= 0."""

    soc_start_wh: int
    soc_end_wh: int
    charge_wh: int  # AC energy into the battery
    discharge_wh: int  # AC energy out of the battery
    import_wh: int  # grid meter: energy imported in the interval
    export_wh: int  # grid meter: energy exported in the interval

    @property
    def losses_wh(self) -> int:
        return self.charge_wh - (self.soc_end_wh - self.soc_start_wh) - self.discharge_wh


def step(
    battery: BatterySpec,
    *,
    soc_wh: int,
    demand_wh: int,
    pv_wh: int,
    interval_s: int,
    mode: BatteryMode,
) -> BatteryStep:
    """Self-consumption for one interval: cover the shortfall from the battery, store the
    surplus (``STORE_SURPLUS``), each up to the battery's limits; the rest is the grid's.

    The battery only ever charges from surplus and discharges into shortfall, so the grid
    import is never above ``max(demand - pv, 0)`` and export never above ``max(pv - demand, 0)``.
    """
    if demand_wh < 0 or pv_wh < 0:
        raise ValueError("demand_wh and pv_wh must not be negative")
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    battery.check_soc(soc_wh)
    net_wh = demand_wh - pv_wh
    charge = discharge = 0
    if net_wh > 0:
        discharge = min(net_wh, soc_wh - battery.min_soc_wh, battery.discharge_limit_wh(interval_s))
    elif net_wh < 0 and mode is BatteryMode.STORE_SURPLUS:
        charge = min(
            -net_wh,
            battery.charge_limit_wh(interval_s),
            battery.charge_for_headroom_wh(battery.capacity_wh - soc_wh),
        )
    grid_wh = net_wh - discharge + charge
    return BatteryStep(
        soc_start_wh=soc_wh,
        soc_end_wh=soc_wh + battery.stored_wh(charge) - discharge,
        charge_wh=charge,
        discharge_wh=discharge,
        import_wh=max(grid_wh, 0),
        export_wh=max(-grid_wh, 0),
    )


class BatteryController(Protocol):
    """The agent's view of its battery: ratings, present SoC, and a mode per interval."""

    @property
    def battery(self) -> BatterySpec: ...

    async def soc_wh(self) -> int:
        """The SoC (Wh) now."""
        ...

    def command(self, interval: int, mode: BatteryMode) -> None:
        """Run the interval starting at ``interval`` (epoch s) in ``mode``."""
        ...
