"""The simulation report: energy and money per household and for the neighbourhood.

Energy figures are integers (Wh) and balance exactly; money in integer micro-units.
Only the derived ratios (``savings_pct``, ``self_sufficiency``) are floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.ledger import IntervalOutcome, Ledger

if TYPE_CHECKING:
    from wattmesh.scenario import Scenario
    from wattmesh.simulate import SimulationConfig


class BalanceError(AssertionError):
    """The report's energy does not balance: a bug, never a rounding matter."""


@dataclass
class _Household:
    agent: str
    pv_peak_w: int
    demand_wh: int
    pv_wh: int
    import_wh: int = 0
    export_wh: int = 0
    p2p_bought_wh: int = 0
    p2p_sold_wh: int = 0
    grid_import_wh: int = 0
    grid_export_wh: int = 0
    grid_only_micro: int = 0
    community_micro: int = 0
    settled_intervals: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_report(
    *,
    config: SimulationConfig,
    scenario: Scenario,
    outcomes: Sequence[IntervalOutcome],
    ledger: Ledger,
    verified: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    first, count = scenario.history_intervals, scenario.simulated_intervals
    households = {
        hh.spec.agent_id: _Household(
            agent=hh.spec.agent_id,
            pv_peak_w=hh.spec.pv_peak_w,
            demand_wh=sum(hh.demand_wh[first : first + count]),
            pv_wh=sum(hh.pv_wh[first : first + count]),
        )
        for hh in scenario.households
    }
    trades = 0
    for outcome in outcomes:
        trades += len(outcome.clearing.fills)
        for s in outcome.settlements:
            h = households[s.agent]
            h.import_wh += s.import_wh
            h.export_wh += s.export_wh
            h.p2p_bought_wh += s.bought_wh
            h.p2p_sold_wh += s.sold_wh
            h.grid_import_wh += s.grid_buy_wh
            h.grid_export_wh += s.grid_sell_wh
            h.grid_only_micro += s.grid_only_cost_micro
            h.community_micro += s.cost_micro
            h.settled_intervals += 1
    rows = [households[a] for a in sorted(households)]
    for h in rows:
        if h.settled_intervals == count and h.demand_wh - h.pv_wh != h.import_wh - h.export_wh:
            raise BalanceError(f"{h.agent}: metered energy differs from the scenario")
    demand = sum(h.demand_wh for h in rows)
    pv = sum(h.pv_wh for h in rows)
    grid_import = sum(h.grid_import_wh for h in rows)
    grid_export = sum(h.grid_export_wh for h in rows)
    p2p = sum(h.p2p_bought_wh for h in rows)
    if p2p != sum(h.p2p_sold_wh for h in rows):
        raise BalanceError("P2P energy bought differs from energy sold")
    complete = all(h.settled_intervals == count for h in rows)
    if complete and demand - pv != grid_import - grid_export:
        raise BalanceError("demand - pv differs from grid import - grid export")
    grid_only = sum(h.grid_only_micro for h in rows)
    community = sum(h.community_micro for h in rows)
    return {
        "households": len(rows),
        "days": config.days,
        "intervals": count,
        "interval_s": scenario.interval_s,
        "seed": config.seed,
        "pv_share": config.pv_share,
        "forecaster": config.forecaster,
        "energy_wh": {
            "demand": demand,
            "pv": pv,
            "p2p": p2p,
            "grid_import": grid_import,
            "grid_export": grid_export,
        },
        "money_micro": {"grid_only": grid_only, "community": community},
        "savings_pct": round(100 * (grid_only - community) / grid_only, 2) if grid_only else 0.0,
        "self_sufficiency": round((demand - grid_import) / demand, 4) if demand else 0.0,
        "trades": trades,
        "orders_rejected": sum(ledger.rejections.values()),
        "settlement_complete": complete,
        "ledger_entries": ledger.size,
        "ledger_root": ledger.root.hex(),
        "verified": verified,
        **extra,
        "per_household": [h.to_json() for h in rows],
    }
