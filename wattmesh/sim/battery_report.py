"""Battery figures for the simulation report, and savings with and without batteries.

Per household (simulated period only; energy Wh, money micro-units):

* ``battery``: ``None``, or its ratings and what it did: ``charge_wh`` and
  ``discharge_wh`` (AC energy in and out), ``losses_wh``, ``soc_start_wh`` and
  ``soc_end_wh``. Its exact balance is
  ``demand - pv + losses + (soc_end - soc_start) == import - export``.
* ``reference_micro``: the household's demand bought at retail, interval by interval
  (no PV, no battery, no market).
* ``pv_only_micro``: its demand minus PV, interval by interval, at the grid's tariffs
  (its PV, but no battery and no market). For a household without a battery this
  equals ``grid_only_micro``, which the settlements compute from the meter.

``battery_comparison`` groups households as ``pv_battery``, ``pv_only`` and ``none``
and gives, per group, the count, ``savings_pct`` (the group's KPI savings, pooled:
``100 * sum(grid_only_bill - bill) / sum(|grid_only_bill|)`` over its households, see
:mod:`wattmesh.sim.kpi`; None when that sum is 0), ``mean_saving_micro`` (the mean of
``grid_only_bill - bill``) and ``mean_cost_micro`` (mean community cost); for
``pv_battery`` also ``mean_battery_savings_micro``, the mean of ``pv_only - grid_only``:
what the batteries alone saved against the grid. (It used to give ``mean_savings_pct``,
the mean of ``100 * (reference - community) / reference``: demand at retail against the
bill, so it counted the PV's own value and its feed-in revenue as market savings and
showed 111-130 % for the PV households.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wattmesh.ledger.money import cost_micro

if TYPE_CHECKING:
    from wattmesh.agents.battery_meter import BatteryMeter
    from wattmesh.ledger.clearing import GridTariff
    from wattmesh.sim.scenario import HouseholdProfile, Scenario


@dataclass(frozen=True)
class BatteryTotals:
    """What one battery did over the simulated period (Wh)."""

    charge_wh: int
    discharge_wh: int
    losses_wh: int
    soc_start_wh: int
    soc_end_wh: int

    @property
    def balance_wh(self) -> int:
        """``losses + soc_end - soc_start``: what the battery added to the household's net."""
        return self.losses_wh + self.soc_end_wh - self.soc_start_wh


def battery_totals(meter: BatteryMeter, *, first: int, count: int) -> BatteryTotals:
    """Sum the battery's steps over intervals ``first .. first + count - 1`` applied so far."""
    steps = meter.steps[first : first + count]
    if not steps:  # not reached yet: the last SoC known
        done = min(first, len(meter.steps))
        soc = meter.steps[done - 1].soc_end_wh if done else meter.initial_soc_wh
        return BatteryTotals(0, 0, 0, soc, soc)
    return BatteryTotals(
        charge_wh=sum(s.charge_wh for s in steps),
        discharge_wh=sum(s.discharge_wh for s in steps),
        losses_wh=sum(s.losses_wh for s in steps),
        soc_start_wh=steps[0].soc_start_wh,
        soc_end_wh=steps[-1].soc_end_wh,
    )


def household_battery_json(hh: HouseholdProfile, totals: BatteryTotals | None) -> Any:
    battery = hh.spec.battery
    if battery is None or totals is None:
        return None
    return {
        "capacity_wh": battery.capacity_wh,
        "max_charge_w": battery.max_charge_w,
        "max_discharge_w": battery.max_discharge_w,
        "round_trip_permille": battery.round_trip_permille,
        "min_soc_wh": battery.min_soc_wh,
        "charge_wh": totals.charge_wh,
        "discharge_wh": totals.discharge_wh,
        "losses_wh": totals.losses_wh,
        "soc_start_wh": totals.soc_start_wh,
        "soc_end_wh": totals.soc_end_wh,
    }


def reference_costs(
    hh: HouseholdProfile, *, first: int, count: int, tariff: GridTariff
) -> tuple[int, int]:
    """``(reference_micro, pv_only_micro)`` of one household, see the module docstring."""
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    reference = pv_only = 0
    for k in range(first, first + count):
        net = hh.demand_wh[k] - hh.pv_wh[k]
        reference += cost_micro(hh.demand_wh[k], retail)
        pv_only += cost_micro(max(net, 0), retail) - cost_micro(max(-net, 0), feed_in)
    return reference, pv_only


def battery_comparison(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Group the report's household rows (see the module docstring)."""
    groups: dict[str, list[dict[str, Any]]] = {"pv_battery": [], "pv_only": [], "none": []}
    for row in rows:
        kind = "none" if row["pv_peak_w"] == 0 else "pv_only"
        groups["pv_battery" if row["battery"] is not None else kind].append(row)
    result: dict[str, dict[str, Any]] = {}
    for kind, members in groups.items():
        n = len(members)
        saved = sum(r["kpi"]["saving_micro"] for r in members)
        base = sum(abs(r["kpi"]["grid_only_bill_micro"]) for r in members)
        figures: dict[str, Any] = {
            "households": n,
            "savings_pct": round(100 * saved / base, 2) if base else None,
            "mean_saving_micro": saved // n if n else 0,
            "mean_cost_micro": sum(r["community_micro"] for r in members) // n if n else 0,
        }
        if kind == "pv_battery":
            battery = sum(r["pv_only_micro"] - r["grid_only_micro"] for r in members)
            figures["mean_battery_savings_micro"] = battery // n if n else 0
        result[kind] = figures
    return result


def battery_balances(
    scenario: Scenario, meters: Mapping[str, BatteryMeter]
) -> dict[str, BatteryTotals]:
    """Totals over the simulated period for every household with a battery."""
    first, count = scenario.history_intervals, scenario.simulated_intervals
    return {
        agent: battery_totals(meter, first=first, count=count) for agent, meter in meters.items()
    }
