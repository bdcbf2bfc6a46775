"""Key performance indicators of a simulated run, as the field defines them.

The definitions are gsy-e's (Grid Singularity's KPI module), computed from METERED energy:
each household's import and export in each simulated interval as its last settlement
revision gives them (``import_wh``, ``export_wh``: its meter, not its trades), and its
demand and PV production from the scenario (what its meter saw). Energy stays integer Wh
and money integer micro-units; the three ratios are the only floats, formed at the end.

For an area A (a household, or the whole neighbourhood) over the simulated intervals k:

* ``self_consumed_wh(A)``: the energy A's demand took from inside A (its own PV, directly
  or through its battery; for the neighbourhood also from the neighbours' PV), per
  interval ``max(0, D_k - G_k)`` where ``D_k`` is A's demand and ``G_k`` the energy that
  entered A from outside: for a household its metered import ``I_k``; for the
  neighbourhood the net import across its boundary, ``max(0, sum(I_k - E_k))`` over the
  households (one neighbour's export feeds another's import inside the same interval).
* ``self_sufficiency = self_consumed_wh / demand_wh`` ("locally supplied energy over
  demand");
* ``self_consumption = self_consumed_wh / pv_wh`` ("locally consumed PV over PV
  production"); both ``None`` when the denominator is 0 and at most 1 (gsy-e caps them).
* ``grid_only_bill_micro``: the base case, interval by interval its metered import at the
  interval's retail tariff minus its metered export at the feed-in tariff (the
  settlements' ``grid_only_cost_micro``); ``bill_micro``: what it paid in the market (P2P,
  grid and network fee; the settlements' ``cost_micro``); ``saving_micro = grid_only_bill
  - bill``; ``savings_pct = 100 * saving / |grid_only_bill|`` (``None`` when the base case
  is 0; a net producer's base case is negative, hence the absolute value, as in gsy-e).
* per household, ``worse_off_intervals``: the intervals whose bill exceeded their
  grid-only bill (forecast errors do that), and ``worse_off_micro``: by how much in all.

An interval a household has no settlement for (a flagged reading) counts as all of its
demand imported and nothing exported, and adds nothing to its bills.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wattmesh.ledger.settlement import Settlement

__all__ = ["HouseholdKpi", "community_kpi", "household_kpis", "ratio"]


def ratio(part: int, whole: int, *, digits: int = 4) -> float | None:
    """``part / whole`` capped at 1 (gsy-e), None when ``whole`` is 0."""
    if whole <= 0:
        return None
    return round(min(max(part, 0) / whole, 1.0), digits)


def savings_pct(saving_micro: int, base_micro: int) -> float | None:
    """``100 * saving / |base|``, None when the base case is 0."""
    if base_micro == 0:
        return None
    return round(100 * saving_micro / abs(base_micro), 2)


@dataclass
class HouseholdKpi:
    """One household's metered figures over the simulated period."""

    agent: str
    demand_wh: int = 0
    pv_wh: int = 0
    self_consumed_wh: int = 0
    bill_micro: int = 0
    grid_only_bill_micro: int = 0
    worse_off_intervals: int = 0
    worse_off_micro: int = 0
    flows: dict[int, tuple[int, int]] = field(default_factory=dict)  # interval: (I, E)

    def to_json(self) -> dict[str, Any]:
        saving = self.grid_only_bill_micro - self.bill_micro
        return {
            "self_sufficiency": ratio(self.self_consumed_wh, self.demand_wh),
            "self_consumption": ratio(self.self_consumed_wh, self.pv_wh),
            "savings_pct": savings_pct(saving, self.grid_only_bill_micro),
            "self_consumed_wh": self.self_consumed_wh,
            "bill_micro": self.bill_micro,
            "grid_only_bill_micro": self.grid_only_bill_micro,
            "saving_micro": saving,
            "worse_off_intervals": self.worse_off_intervals,
            "worse_off_micro": self.worse_off_micro,
        }


def household_kpis(
    settlements: Iterable[Settlement],
    *,
    demand_wh: Mapping[str, Sequence[int]],
    pv_wh: Mapping[str, Sequence[int]],
    intervals: Sequence[int],
) -> dict[str, HouseholdKpi]:
    """Each household's KPI figures from the last settlement of each interval.

    ``intervals`` are the simulated intervals' starts (epoch s); ``demand_wh[agent][i]``
    and ``pv_wh[agent][i]`` the household's energy in ``intervals[i]``."""
    index = {start: i for i, start in enumerate(intervals)}
    kpis = {
        agent: HouseholdKpi(agent, demand_wh=sum(series), pv_wh=sum(pv_wh[agent]))
        for agent, series in demand_wh.items()
    }
    for s in settlements:
        if s.interval not in index or s.agent not in kpis:
            continue
        k = kpis[s.agent]
        k.flows[s.interval] = (s.import_wh, s.export_wh)
        k.bill_micro += s.cost_micro
        k.grid_only_bill_micro += s.grid_only_cost_micro
        if s.cost_micro > s.grid_only_cost_micro:
            k.worse_off_intervals += 1
            k.worse_off_micro += s.cost_micro - s.grid_only_cost_micro
    for agent, k in kpis.items():
        for start, i in index.items():
            import_wh = k.flows.get(start, (demand_wh[agent][i], 0))[0]
            k.self_consumed_wh += max(0, demand_wh[agent][i] - import_wh)
    return kpis


def community_kpi(
    households: Mapping[str, HouseholdKpi],
    *,
    demand_wh: Mapping[str, Sequence[int]],
    intervals: Sequence[int],
) -> dict[str, Any]:
    """The neighbourhood as one area (see the module docstring)."""
    self_consumed = 0
    for i, start in enumerate(intervals):
        demand = net = 0
        for agent, k in households.items():
            d = demand_wh[agent][i]
            import_wh, export_wh = k.flows.get(start, (d, 0))
            demand += d
            net += import_wh - export_wh
        self_consumed += max(0, demand - max(net, 0))
    demand_total = sum(k.demand_wh for k in households.values())
    pv_total = sum(k.pv_wh for k in households.values())
    bill = sum(k.bill_micro for k in households.values())
    base = sum(k.grid_only_bill_micro for k in households.values())
    return {
        "self_sufficiency": ratio(self_consumed, demand_total),
        "self_consumption": ratio(self_consumed, pv_total),
        "savings_pct": savings_pct(base - bill, base),
        "self_consumed_wh": self_consumed,
        "bill_micro": bill,
        "grid_only_bill_micro": base,
        "saving_micro": base - bill,
        "households_worse_off_overall": sum(
            1 for k in households.values() if k.bill_micro > k.grid_only_bill_micro
        ),
        "households_worse_off_sometimes": sum(
            1 for k in households.values() if k.worse_off_intervals
        ),
        "worse_off_intervals": sum(k.worse_off_intervals for k in households.values()),
        "worse_off_micro": sum(k.worse_off_micro for k in households.values()),
    }
