"""The battery model, its strategy and its physical application (agents/battery*.py)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.agents._battery_strategy import battery_order_for, surplus_mode
from wattmesh.agents._strategy import LimitPricePolicy
from wattmesh.agents.battery import BatteryMode, BatterySpec, BatteryStep, step
from wattmesh.agents.battery_meter import BatteryMeter
from wattmesh.agents.meter import MarketClock, SimulatedMeter
from wattmesh.broker.messages import Side

INTERVALS_S = st.sampled_from([60, 300, 900, 1800, 3600])
ENERGY = st.integers(min_value=0, max_value=20_000)


@st.composite
def batteries(draw: st.DrawFn) -> BatterySpec:
    capacity = draw(st.integers(min_value=1, max_value=20_000))
    return BatterySpec(
        capacity_wh=capacity,
        max_charge_w=draw(st.integers(min_value=0, max_value=10_000)),
        max_discharge_w=draw(st.integers(min_value=0, max_value=10_000)),
        round_trip_permille=draw(st.integers(min_value=1, max_value=1000)),
        min_soc_wh=draw(st.integers(min_value=0, max_value=capacity)),
    )


@st.composite
def battery_and_soc(draw: st.DrawFn) -> tuple[BatterySpec, int]:
    battery = draw(batteries())
    return battery, draw(st.integers(min_value=battery.min_soc_wh, max_value=battery.capacity_wh))


def _check_step(
    battery: BatterySpec, s: BatteryStep, *, demand_wh: int, pv_wh: int, interval_s: int
) -> None:
    """Every limit and the exact balance of one interval."""
    assert battery.min_soc_wh <= s.soc_end_wh <= battery.capacity_wh
    assert 0 <= s.charge_wh <= battery.max_charge_w * interval_s // 3600
    assert 0 <= s.discharge_wh <= battery.max_discharge_w * interval_s // 3600
    assert s.charge_wh == 0 or s.discharge_wh == 0
    assert s.import_wh >= 0 and s.export_wh >= 0 and s.import_wh * s.export_wh == 0
    # Efficiency: all losses on charging, floor(charge * rt / 1000) stored.
    stored = s.charge_wh * battery.round_trip_permille // 1000
    assert s.soc_end_wh - s.soc_start_wh == stored - s.discharge_wh
    assert s.losses_wh == s.charge_wh - stored >= 0
    # Sources pv + import + discharge equal sinks demand + export + charge.
    assert demand_wh - pv_wh == s.import_wh - s.export_wh + s.discharge_wh - s.charge_wh
    assert (
        demand_wh - pv_wh + s.losses_wh + s.soc_end_wh - s.soc_start_wh == s.import_wh - s.export_wh
    )
    # Only surplus charges it and it only discharges into shortfall: never more grid.
    assert s.import_wh <= max(demand_wh - pv_wh, 0)
    assert s.export_wh <= max(pv_wh - demand_wh, 0)


@settings(max_examples=300, deadline=None)
@given(battery_and_soc(), ENERGY, ENERGY, INTERVALS_S, st.sampled_from(BatteryMode))
def test_step_respects_limits_and_balances(
    bs: tuple[BatterySpec, int], demand: int, pv: int, interval_s: int, mode: BatteryMode
) -> None:
    battery, soc = bs
    s = step(battery, soc_wh=soc, demand_wh=demand, pv_wh=pv, interval_s=interval_s, mode=mode)
    assert s.soc_start_wh == soc
    _check_step(battery, s, demand_wh=demand, pv_wh=pv, interval_s=interval_s)
    if mode is BatteryMode.SELL_SURPLUS:
        assert s.charge_wh == 0
    # Self-consumption is greedy: what is left for the grid could not be absorbed.
    if s.import_wh > 0:
        assert s.soc_end_wh == battery.min_soc_wh or s.discharge_wh == battery.discharge_limit_wh(
            interval_s
        )
    if s.export_wh > 0 and mode is BatteryMode.STORE_SURPLUS:
        one_more = battery.stored_wh(s.charge_wh + 1)
        assert (
            s.charge_wh == battery.charge_limit_wh(interval_s)
            or s.soc_start_wh + one_more > battery.capacity_wh
        )


def test_losses_are_applied_on_charging_and_rounded_down() -> None:
    battery = BatterySpec(
        capacity_wh=10_000, max_charge_w=4_000, max_discharge_w=4_000, round_trip_permille=900
    )
    s = step(
        battery, soc_wh=0, demand_wh=0, pv_wh=999, interval_s=900, mode=BatteryMode.STORE_SURPLUS
    )
    assert (s.charge_wh, s.soc_end_wh, s.losses_wh, s.export_wh) == (999, 899, 100, 0)
    # 4 kW over 15 minutes is 1 kWh at most; the rest is exported.
    s = step(
        battery, soc_wh=0, demand_wh=0, pv_wh=3_000, interval_s=900, mode=BatteryMode.STORE_SURPLUS
    )
    assert (s.charge_wh, s.soc_end_wh, s.export_wh) == (1_000, 900, 2_000)
    # Near full: charge only what fits after losses (9 Wh of headroom take 10 Wh).
    s = step(
        battery,
        soc_wh=9_991,
        demand_wh=0,
        pv_wh=500,
        interval_s=900,
        mode=BatteryMode.STORE_SURPLUS,
    )
    assert (s.charge_wh, s.soc_end_wh, s.export_wh) == (11, 10_000, 489)
    # Discharge covers the shortfall one for one, down to the floor.
    floor = BatterySpec(capacity_wh=10_000, max_charge_w=0, max_discharge_w=8_000, min_soc_wh=1_000)
    s = step(
        floor, soc_wh=1_500, demand_wh=900, pv_wh=0, interval_s=900, mode=BatteryMode.STORE_SURPLUS
    )
    assert (s.discharge_wh, s.soc_end_wh, s.import_wh) == (500, 1_000, 400)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity_wh": 0}, "capacity_wh"),
        ({"max_charge_w": -1}, "max_charge_w"),
        ({"round_trip_permille": 0}, "round_trip_permille"),
        ({"round_trip_permille": 1001}, "round_trip_permille"),
        ({"min_soc_wh": 5_001}, "min_soc_wh"),
    ],
)
def test_bad_battery_specs_are_refused(kwargs: dict[str, int], message: str) -> None:
    base = {"capacity_wh": 5_000, "max_charge_w": 1_000, "max_discharge_w": 1_000}
    with pytest.raises(ValueError, match=message):
        BatterySpec(**{**base, **kwargs})


def test_soc_outside_the_battery_is_refused() -> None:
    battery = BatterySpec(capacity_wh=5_000, max_charge_w=1, max_discharge_w=1, min_soc_wh=100)
    for soc in (99, 5_001):
        with pytest.raises(ValueError, match="SoC"):
            step(
                battery,
                soc_wh=soc,
                demand_wh=0,
                pv_wh=0,
                interval_s=900,
                mode=BatteryMode.STORE_SURPLUS,
            )


TARIFFS = st.tuples(
    st.integers(min_value=0, max_value=1_000_000), st.integers(min_value=0, max_value=1_000_000)
).map(sorted)
POLICIES = st.builds(
    LimitPricePolicy,
    buy_permille=st.integers(min_value=0, max_value=1000),
    sell_permille=st.integers(min_value=0, max_value=1000),
)


@settings(max_examples=300, deadline=None)
@given(battery_and_soc(), ENERGY, ENERGY, INTERVALS_S, TARIFFS, POLICIES)
def test_strategy_orders_the_remainder_of_a_plan_within_limits(
    bs: tuple[BatterySpec, int],
    demand: int,
    pv: int,
    interval_s: int,
    tariff: list[int],
    policy: LimitPricePolicy,
) -> None:
    battery, soc = bs
    feed_in, retail = tariff
    decision = battery_order_for(
        demand_wh=demand,
        pv_wh=pv,
        soc_wh=soc,
        battery=battery,
        interval_s=interval_s,
        retail_micro_per_kwh=retail,
        feed_in_micro_per_kwh=feed_in,
        policy=policy,
    )
    plan, order = decision.plan, decision.order
    _check_step(battery, plan, demand_wh=demand, pv_wh=pv, interval_s=interval_s)
    assert order.quantity_wh >= 0
    signed = order.quantity_wh if order.side is Side.BUY else -order.quantity_wh
    assert signed == plan.import_wh - plan.export_wh
    assert feed_in <= order.price_micro_per_kwh <= retail
    # Storing is chosen exactly when a stored Wh is worth at least the ask.
    ask = policy.price(Side.SELL, retail, feed_in)
    stores = retail * battery.round_trip_permille // 1000 >= ask
    assert decision.mode is (BatteryMode.STORE_SURPLUS if stores else BatteryMode.SELL_SURPLUS)
    if not stores:
        assert plan.charge_wh == 0


def test_a_lossy_battery_sells_surplus_rather_than_store_it() -> None:
    policy = LimitPricePolicy()  # ask 10 % into the spread: 102,000 at 300,000 / 80,000
    good = BatterySpec(capacity_wh=5_000, max_charge_w=1, max_discharge_w=1)
    lossy = BatterySpec(
        capacity_wh=5_000, max_charge_w=1, max_discharge_w=1, round_trip_permille=300
    )
    kwargs = {"retail_micro_per_kwh": 300_000, "feed_in_micro_per_kwh": 80_000, "policy": policy}
    assert surplus_mode(good, **kwargs) is BatteryMode.STORE_SURPLUS  # 270,000 >= 102,000
    assert surplus_mode(lossy, **kwargs) is BatteryMode.SELL_SURPLUS  # 90,000 < 102,000


PROFILES = st.integers(min_value=1, max_value=48).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=0, max_value=3_000), min_size=n, max_size=n),
        st.lists(st.integers(min_value=0, max_value=3_000), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(
    battery_and_soc(),
    PROFILES,
    st.sampled_from([300, 900, 3600]),
    st.lists(st.sampled_from(BatteryMode), min_size=48, max_size=48),
)
async def test_battery_meter_balances_and_never_imports_more(
    bs: tuple[BatterySpec, int],
    profiles: tuple[list[int], list[int]],
    interval_s: int,
    modes: list[BatteryMode],
) -> None:
    battery, soc = bs
    demand, pv = profiles
    start = 1_700_000_100 - 1_700_000_100 % interval_s
    clock = MarketClock(start)
    meter = BatteryMeter(
        start=start,
        interval_s=interval_s,
        demand_wh=demand,
        pv_wh=pv,
        battery=battery,
        clock=clock,
        soc_wh=soc,
    )
    plain = SimulatedMeter(
        start=start, interval_s=interval_s, demand_wh=demand, pv_wh=pv, clock=clock
    )
    readings, plain_readings = [await meter.read()], [await plain.read()]
    for k in range(len(demand)):
        meter.command(start + k * interval_s, modes[k])
        clock.set(start + (k + 1) * interval_s)
        readings.append(await meter.read())
        plain_readings.append(await plain.read())
    assert len(meter.steps) == len(demand)
    for k, s in enumerate(meter.steps):
        _check_step(battery, s, demand_wh=demand[k], pv_wh=pv[k], interval_s=interval_s)
        assert modes[k] is BatteryMode.STORE_SURPLUS or s.charge_wh == 0
    for (a, b), (pa, pb) in zip(pairwise(readings), pairwise(plain_readings), strict=True):
        assert b.import_wh - a.import_wh <= pb.import_wh - pa.import_wh
        assert b.export_wh - a.export_wh <= pb.export_wh - pa.export_wh
        assert b.pv_wh - a.pv_wh == pb.pv_wh - pa.pv_wh
    for a, b in pairwise(meter.steps):
        assert b.soc_start_wh == a.soc_end_wh
    end = readings[-1]
    losses = sum(s.losses_wh for s in meter.steps)
    soc_end = await meter.soc_wh()
    assert soc_end == meter.steps[-1].soc_end_wh
    assert sum(demand) - sum(pv) + losses + soc_end - soc == end.import_wh - end.export_wh
    assert end.import_wh <= plain_readings[-1].import_wh
    with pytest.raises(ValueError, match="already been applied"):
        meter.command(start, BatteryMode.STORE_SURPLUS)


@settings(max_examples=60, deadline=None)
@given(battery_and_soc(), PROFILES, TARIFFS, POLICIES)
async def test_with_a_perfect_forecast_orders_equal_what_is_metered(
    bs: tuple[BatterySpec, int],
    profiles: tuple[list[int], list[int]],
    tariff: list[int],
    policy: LimitPricePolicy,
) -> None:
    battery, soc = bs
    demand, pv = profiles
    feed_in, retail = tariff
    interval_s, start = 900, 1_700_000_100 - 1_700_000_100 % 900
    clock = MarketClock(start)
    meter = BatteryMeter(
        start=start,
        interval_s=interval_s,
        demand_wh=demand,
        pv_wh=pv,
        battery=battery,
        clock=clock,
        soc_wh=soc,
    )
    before = await meter.read()
    for k in range(len(demand)):
        decision = battery_order_for(
            demand_wh=demand[k],
            pv_wh=pv[k],
            soc_wh=await meter.soc_wh(),
            battery=battery,
            interval_s=interval_s,
            retail_micro_per_kwh=retail,
            feed_in_micro_per_kwh=feed_in,
            policy=policy,
        )
        meter.command(start + k * interval_s, decision.mode)
        clock.set(start + (k + 1) * interval_s)
        after = await meter.read()
        order = decision.order
        signed = order.quantity_wh if order.side is Side.BUY else -order.quantity_wh
        assert signed == (after.import_wh - before.import_wh) - (after.export_wh - before.export_wh)
        assert meter.steps[k] == decision.plan
        before = after
