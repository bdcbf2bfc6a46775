"""The run's KPIs (wattmesh.sim.kpi): gsy-e's definitions on metered energy."""

from __future__ import annotations

from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.settlement import settle_flows
from wattmesh.sim.battery_report import battery_comparison
from wattmesh.sim.kpi import community_kpi, household_kpis, ratio, savings_pct

TARIFF = GridTariff(300_000, 80_000)  # retail 0.30, feed-in 0.08 per kWh
T0, T1 = 0, 900


def _fill(buyer: str, seller: str, wh: int, price: int) -> Fill:
    return Fill(buyer, seller, wh, price, buy_ref=f"{buyer}-1", sell_ref=f"{seller}-1")


def test_a_p2p_purchase_resold_to_the_grid_is_no_import_in_the_kpis() -> None:
    # "a" sold 1 kWh to "b" at 0.20 but its PV made nothing spare (it imported the
    # kWh from the grid); "b" needed nothing and its meter exported the kWh again.
    fills = [_fill("b", "a", 1_000, 200_000)]
    sa = settle_flows(
        agent="a", interval=T0, import_wh=1_000, export_wh=0, fills=fills, tariff=TARIFF
    )
    sb = settle_flows(
        agent="b", interval=T0, import_wh=0, export_wh=1_000, fills=fills, tariff=TARIFF
    )
    # The settlements count 2 kWh bought from the grid (a: its import and the kWh it
    # sold) and 2 kWh sold to it (b: its export and the kWh it bought), so the
    # settlement-based self-sufficiency, (demand - grid buy) / demand, is -1 here ...
    assert (sa.grid_buy_wh, sb.grid_sell_wh) == (2_000, 2_000)
    # ... while physically b's export fed a's import: nothing crossed to the grid.
    demand = {"a": [1_000], "b": [0]}
    pv = {"a": [0], "b": [1_000]}
    kpis = household_kpis([sa, sb], demand_wh=demand, pv_wh=pv, intervals=[T0])
    community = community_kpi(kpis, demand_wh=demand, intervals=[T0])
    assert community["self_consumed_wh"] == 1_000
    assert community["self_sufficiency"] == 1.0
    assert community["self_consumption"] == 1.0
    # Per household, its own area: a took everything from outside, b used none of its PV.
    assert kpis["a"].to_json()["self_sufficiency"] == 0.0
    assert kpis["b"].to_json()["self_sufficiency"] is None  # no demand
    assert kpis["b"].to_json()["self_consumption"] == 0.0


def test_bills_savings_and_worse_off_intervals() -> None:
    # Interval 0: "a" bought 2 kWh at 0.25 but imported only 1 kWh; the other kWh went
    # back to the grid at 0.08 (its bill 0.50 - 0.08 = 0.42 > grid-only 0.30: worse off).
    # Interval 1: "a" bought 1 kWh at 0.25 and imported it (better off by 0.05).
    f0 = [_fill("a", "p", 2_000, 250_000)]
    f1 = [_fill("a", "p", 1_000, 250_000)]
    s0 = settle_flows(agent="a", interval=T0, import_wh=1_000, export_wh=0, fills=f0, tariff=TARIFF)
    s1 = settle_flows(agent="a", interval=T1, import_wh=1_000, export_wh=0, fills=f1, tariff=TARIFF)
    assert (s0.cost_micro, s0.grid_only_cost_micro) == (420_000, 300_000)
    assert (s1.cost_micro, s1.grid_only_cost_micro) == (250_000, 300_000)
    demand = {"a": [1_000, 1_000]}
    pv = {"a": [0, 0]}
    k = household_kpis([s0, s1], demand_wh=demand, pv_wh=pv, intervals=[T0, T1])["a"]
    row = k.to_json()
    assert row["bill_micro"] == 670_000
    assert row["grid_only_bill_micro"] == 600_000
    assert row["saving_micro"] == -70_000
    assert row["savings_pct"] == round(100 * -70_000 / 600_000, 2)
    assert (row["worse_off_intervals"], row["worse_off_micro"]) == (1, 120_000)
    assert row["self_consumption"] is None  # no PV


def test_a_pv_household_saves_against_its_grid_only_bill_not_its_demand_at_retail() -> None:
    # 2 kWh PV, 1 kWh demand: 1 kWh exported, sold P2P at 0.20 instead of 0.08.
    fills = [_fill("x", "a", 1_000, 200_000)]
    s = settle_flows(
        agent="a", interval=T0, import_wh=0, export_wh=1_000, fills=fills, tariff=TARIFF
    )
    k = household_kpis([s], demand_wh={"a": [1_000]}, pv_wh={"a": [2_000]}, intervals=[T0])
    row = k["a"].to_json()
    assert row["grid_only_bill_micro"] == -80_000  # it earns feed-in in the base case
    assert row["bill_micro"] == -200_000
    assert row["saving_micro"] == 120_000
    assert row["savings_pct"] == 150.0  # 0.12 more than the 0.08 of feed-in
    assert (row["self_sufficiency"], row["self_consumption"]) == (1.0, 0.5)


def test_an_unsettled_interval_counts_as_all_imported() -> None:
    k = household_kpis([], demand_wh={"a": [500]}, pv_wh={"a": [800]}, intervals=[T0])
    assert k["a"].self_consumed_wh == 0
    assert k["a"].to_json()["bill_micro"] == 0


def test_ratios_are_capped_and_none_without_a_denominator() -> None:
    assert ratio(3, 0) is None
    assert ratio(5, 4) == 1.0
    assert ratio(1, 3) == 0.3333
    assert savings_pct(10, 0) is None
    assert savings_pct(-5, -10) == -50.0


def test_the_battery_groups_pool_their_savings_against_grid_only_bills() -> None:
    def row(pv: int, battery: object, bill: int, grid_only: int) -> dict[str, object]:
        kpi = {"saving_micro": grid_only - bill, "grid_only_bill_micro": grid_only}
        return {
            "pv_peak_w": pv, "battery": battery, "community_micro": bill,
            "grid_only_micro": grid_only, "pv_only_micro": grid_only, "kpi": kpi,
        }  # fmt: skip

    # A net producer (grid-only -0.50, market -0.70) and a consumer (1.00 -> 0.90):
    # 0.30 saved against 1.50 of grid-only bills (in absolute value) = 20 %, however
    # much the PV itself is worth against buying all demand at retail.
    groups = battery_comparison(
        [
            row(5000, None, -700_000, -500_000),
            row(4000, None, 900_000, 1_000_000),
            row(0, None, 2_000_000, 2_000_000),
        ]
    )
    assert groups["pv_only"] == {
        "households": 2, "savings_pct": 20.0, "mean_saving_micro": 150_000,
        "mean_cost_micro": 100_000,
    }  # fmt: skip
    assert groups["none"]["savings_pct"] == 0.0
    assert groups["pv_battery"]["savings_pct"] is None
