"""The simulation report: energy and money per household and for the neighbourhood.

Energy figures are integers (Wh) and balance exactly; money in integer micro-units.
Only the derived ratios (``savings_pct``, ``self_sufficiency`` and the ``kpi`` ratios) are
floats. ``kpi`` (for the neighbourhood and in each household's row) holds the field's
KPIs computed from metered energy (:mod:`wattmesh.sim.kpi`); the top-level
``savings_pct`` and ``self_sufficiency`` are the settlement-based figures (grid energy as
the settlements count it: a P2P purchase that was not needed and went back to the grid
counts as the seller's grid import there, not in ``kpi``).

With home batteries (``wattmesh/sim/battery_report.py``) the balance, per household and for
the neighbourhood, is
``demand - pv + battery_losses + battery_soc_change == import - export``
(``battery_soc_change = soc_end - soc_start`` over the simulated period); without a
battery both battery terms are 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wattmesh.broker.errors import CommandError, FailureError
from wattmesh.ledger.accounts import (
    FEES_ACCOUNT,
    GRID_ACCOUNT,
    MARKET_ACCOUNT,
    balances,
    household_account,
)
from wattmesh.ledger.ledger import IntervalOutcome, Ledger
from wattmesh.ledger.metering import Revision
from wattmesh.ledger.settlement import Basis
from wattmesh.sim.battery_report import (
    BatteryTotals,
    battery_comparison,
    household_battery_json,
    reference_costs,
)
from wattmesh.sim.kpi import HouseholdKpi, community_kpi, household_kpis

if TYPE_CHECKING:
    from wattmesh.ledger.clearing import GridTariff
    from wattmesh.sim.scenario import Scenario
    from wattmesh.sim.simulate import SimulationConfig


class BalanceError(CommandError, FailureError):
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
    community_micro: int = 0  # what it paid in all: P2P, grid and network fee
    network_fee_micro: int = 0  # the network fee on its P2P sales (to the operator)
    settled_intervals: int = 0  # on two signed readings (metered)
    estimated_intervals: int = 0  # still on an estimate (a reading missing)
    flagged_intervals: int = 0  # not settled: registers backwards or beyond the limit

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _latest(outcomes: Sequence[IntervalOutcome]) -> list[Revision]:
    """Each household-interval's last revision (settlement or correction)."""
    latest: dict[tuple[str, int], Revision] = {}
    for outcome in outcomes:
        for revision in outcome.revisions:
            latest[(revision.after.agent, revision.after.interval)] = revision
    return list(latest.values())


def _add_settlements(
    households: dict[str, _Household],
    outcomes: Sequence[IntervalOutcome],
    latest: Sequence[Revision],
) -> None:
    """Add each interval's last revision (settlement or correction) to its household."""
    for outcome in outcomes:
        for flag in outcome.flags:
            households[flag.agent].flagged_intervals += 1
    for revision in latest:
        s = revision.after
        h = households[s.agent]
        if revision.basis is Basis.ESTIMATED:
            h.estimated_intervals += 1
        else:
            h.settled_intervals += 1
        h.import_wh += s.import_wh
        h.export_wh += s.export_wh
        h.p2p_bought_wh += s.bought_wh
        h.p2p_sold_wh += s.sold_wh
        h.grid_import_wh += s.grid_buy_wh
        h.grid_export_wh += s.grid_sell_wh
        h.grid_only_micro += s.grid_only_cost_micro
        h.community_micro += s.cost_micro
        h.network_fee_micro += s.network_fee_micro


def build_report(
    *,
    config: SimulationConfig,
    scenario: Scenario,
    outcomes: Sequence[IntervalOutcome],
    ledger: Ledger,
    verified: bool,
    extra: dict[str, Any],
    batteries: Mapping[str, BatteryTotals] | None = None,
    undeclared_wh: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """``undeclared_wh``: energy each household exported with no source in its profile
    (``simulate --inject-faults``' night export), counted in its energy balance."""
    batteries = batteries or {}
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
    trades = sum(len(outcome.clearing.fills) for outcome in outcomes)
    latest = _latest(outcomes)
    _add_settlements(households, outcomes, latest)
    rows = [households[a] for a in sorted(households)]
    accounts = balances(p for outcome in outcomes for p in outcome.postings)
    energy, complete = _energy(rows, batteries, count, undeclared_wh or {})
    _check_money(rows, accounts)
    grid_only = sum(h.grid_only_micro for h in rows)
    kpis = _kpis(scenario, latest)
    per_household = _per_household(rows, scenario, batteries, config.tariff, kpis)
    community = sum(h.community_micro for h in rows)
    fees = sum(h.network_fee_micro for h in rows)
    demand, grid_import = energy["demand"], energy["grid_import"]
    return {
        "households": len(rows),
        "days": config.days,
        "intervals": count,
        "interval_s": scenario.interval_s,
        "seed": config.seed,
        "pv_share": config.pv_share,
        "battery_share": config.battery_share,
        "forecaster": config.forecaster,
        "energy_wh": energy,
        "currency": config.currency,
        "money_micro": {"grid_only": grid_only, "community": community, "network_fees": fees},
        "network_fee_micro_per_kwh": config.mechanism.rules.network_fee_micro_per_kwh,
        "accounts_micro": {a: accounts[a] for a in (GRID_ACCOUNT, MARKET_ACCOUNT, FEES_ACCOUNT)},
        "savings_pct": round(100 * (grid_only - community) / grid_only, 2) if grid_only else 0.0,
        "self_sufficiency": round((demand - grid_import) / demand, 4) if demand else 0.0,
        "kpi": community_kpi(
            kpis, demand_wh=_window(scenario, "demand"), intervals=_starts(scenario)
        ),
        "trades": trades,
        "orders_rejected": sum(ledger.rejections.values()),
        "settlement_complete": complete,
        "ledger_entries": ledger.size,
        "ledger_root": ledger.root.hex(),
        "verified": verified,
        **extra,
        "per_household": per_household,
        "battery_comparison": battery_comparison(per_household),
        "series": _series(config, scenario, outcomes, latest),
    }


def _starts(scenario: Scenario) -> list[int]:
    """The simulated intervals' starts (epoch s)."""
    first, count = scenario.history_intervals, scenario.simulated_intervals
    return [int(scenario.interval_start(first + i).timestamp()) for i in range(count)]


def _window(scenario: Scenario, what: str) -> dict[str, tuple[int, ...]]:
    """Each household's demand or PV (``what``) over the simulated intervals."""
    first, count = scenario.history_intervals, scenario.simulated_intervals
    return {
        hh.spec.agent_id: (hh.demand_wh if what == "demand" else hh.pv_wh)[first : first + count]
        for hh in scenario.households
    }


def _kpis(scenario: Scenario, latest: Sequence[Revision]) -> dict[str, HouseholdKpi]:
    return household_kpis(
        (r.after for r in latest),
        demand_wh=_window(scenario, "demand"),
        pv_wh=_window(scenario, "pv"),
        intervals=_starts(scenario),
    )


def _series(
    config: SimulationConfig,
    scenario: Scenario,
    outcomes: Sequence[IntervalOutcome],
    latest: Sequence[Revision],
) -> dict[str, list[int | None]]:
    """The neighbourhood per simulated interval, as columns of equal length: interval
    start (epoch s), clearing price (None: no clearing) and tariffs in micro-units per
    kWh, P2P volume, metered import/export and grid import/export (each interval's last
    revision) and the scenario's demand and PV, in Wh."""
    first, count = scenario.history_intervals, scenario.simulated_intervals
    starts = _starts(scenario)
    clearing = {o.interval: o.clearing for o in outcomes}
    metered: dict[int, list[int]] = {t: [0, 0, 0, 0] for t in starts}
    for s in (revision.after for revision in latest):
        if s.interval in metered:
            row = metered[s.interval]
            for i, wh in enumerate((s.import_wh, s.export_wh, s.grid_buy_wh, s.grid_sell_wh)):
                row[i] += wh
    tariffs = [config.tariff_at(t) for t in starts]
    profiles = scenario.households
    return {
        "intervals": list(starts),
        "price_micro_per_kwh": [
            clearing[t].price_micro_per_kwh if t in clearing else None for t in starts
        ],
        "retail_micro_per_kwh": [t.retail_micro_per_kwh for t in tariffs],
        "feed_in_micro_per_kwh": [t.feed_in_micro_per_kwh for t in tariffs],
        "p2p_wh": [clearing[t].volume_wh if t in clearing else 0 for t in starts],
        "import_wh": [metered[t][0] for t in starts],
        "export_wh": [metered[t][1] for t in starts],
        "grid_import_wh": [metered[t][2] for t in starts],
        "grid_export_wh": [metered[t][3] for t in starts],
        "demand_wh": [sum(hh.demand_wh[first + i] for hh in profiles) for i in range(count)],
        "pv_wh": [sum(hh.pv_wh[first + i] for hh in profiles) for i in range(count)],
    }


def _energy(
    rows: Sequence[_Household],
    batteries: Mapping[str, BatteryTotals],
    count: int,
    undeclared: Mapping[str, int],
) -> tuple[dict[str, int], bool]:
    """The neighbourhood's energy (Wh) and whether every interval settled on readings;
    BalanceError if a household's or the neighbourhood's energy does not balance."""
    stored = {a: t.balance_wh for a, t in batteries.items()}
    for h in rows:
        net = h.demand_wh - h.pv_wh + stored.get(h.agent, 0) - undeclared.get(h.agent, 0)
        if h.settled_intervals == count and net != h.import_wh - h.export_wh:
            raise BalanceError(f"{h.agent}: metered energy differs from the scenario")
    demand = sum(h.demand_wh for h in rows)
    pv = sum(h.pv_wh for h in rows)
    grid_import = sum(h.grid_import_wh for h in rows)
    grid_export = sum(h.grid_export_wh for h in rows)
    p2p = sum(h.p2p_bought_wh for h in rows)
    flagged = any(h.flagged_intervals for h in rows)  # a flagged side leaves a trade open
    if not flagged and p2p != sum(h.p2p_sold_wh for h in rows):
        raise BalanceError("P2P energy bought differs from energy sold")
    complete = all(h.settled_intervals == count for h in rows)
    losses = sum(t.losses_wh for t in batteries.values())
    soc_change = sum(t.soc_end_wh - t.soc_start_wh for t in batteries.values())
    extra = sum(undeclared.values())
    if complete and demand - pv - extra + losses + soc_change != grid_import - grid_export:
        raise BalanceError("demand - pv (+ battery terms) differs from grid import - export")
    energy = {
        "demand": demand,
        "pv": pv,
        "p2p": p2p,
        "grid_import": grid_import,
        "grid_export": grid_export,
        "battery_losses": losses,
        "battery_soc_change": soc_change,
    }
    return energy, complete


def _check_money(rows: Sequence[_Household], accounts: Mapping[str, int]) -> None:
    """BalanceError unless the postings sum to zero, each household's account holds what
    its settlements say and the operator's fee account holds the network fees."""
    if sum(accounts.values()) != 0:
        raise BalanceError("the postings do not sum to zero over all accounts")
    for h in rows:
        if accounts[household_account(h.agent)] != h.community_micro:
            raise BalanceError(f"{h.agent}: the postings differ from the settlements")
    if sum(h.network_fee_micro for h in rows) != -accounts[FEES_ACCOUNT]:
        raise BalanceError("the network fees differ from the operator's fee account")


def _per_household(
    rows: Sequence[_Household],
    scenario: Scenario,
    batteries: Mapping[str, BatteryTotals],
    tariff: GridTariff,
    kpis: Mapping[str, HouseholdKpi],
) -> list[dict[str, Any]]:
    """Each household's row: its figures, its KPIs, its battery and its reference costs."""
    first, count = scenario.history_intervals, scenario.simulated_intervals
    profiles = {hh.spec.agent_id: hh for hh in scenario.households}
    per_household = []
    for h in rows:
        hh = profiles[h.agent]
        reference, pv_only = reference_costs(hh, first=first, count=count, tariff=tariff)
        per_household.append(
            {
                **h.to_json(),
                "kpi": kpis[h.agent].to_json(),
                "battery": household_battery_json(hh, batteries.get(h.agent)),
                "reference_micro": reference,
                "pv_only_micro": pv_only,
            }
        )
    return per_household
