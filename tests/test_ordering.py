"""What the agent orders for an interval (agents/_ordering.py), with and without a battery."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattmesh.agents._battery_strategy import battery_order_for
from wattmesh.agents._ordering import forecast_figures, order_for_interval
from wattmesh.agents._strategy import LimitPricePolicy, clamp_to_connection, order_for
from wattmesh.agents.battery import BatteryMode, BatterySpec
from wattmesh.agents.battery_meter import BatteryMeter
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W, energy_limit_wh
from wattmesh.broker.messages import AnnouncementBody, ForecastBody, OrderBody, Phase, Side

STEP = 900
T = 1_751_241_600
OPEN = AnnouncementBody(Phase.OPEN, STEP, 300_000, 80_000)
POLICY = LimitPricePolicy()
BATTERY = BatterySpec(
    capacity_wh=10_000, max_charge_w=4_000, max_discharge_w=4_000, round_trip_permille=900
)


def test_forecast_figures_are_the_covering_step_or_no_trade() -> None:
    forecast = ForecastBody(T, STEP, (500, 600, 700), (10, 20, 30), "naive", None)
    assert forecast_figures(forecast, T) == (500, 10)
    assert forecast_figures(forecast, T + 2 * STEP) == (700, 30)
    assert forecast_figures(forecast, T + 3 * STEP) == (0, 0)  # past its last step
    assert forecast_figures(forecast, T - STEP) == (0, 0)  # before it starts
    assert forecast_figures(None, T) == (0, 0)
    empty = ForecastBody(T, STEP, (), (), "naive", None)
    assert forecast_figures(empty, T) == (0, 0)


async def test_without_a_battery_the_order_is_the_strategy_s() -> None:
    order = await order_for_interval(
        T,
        OPEN,
        demand_wh=500,
        pv_wh=800,
        policy=POLICY,
        battery=None,
        agent_id="h001",
        max_power_w=DEFAULT_MAX_POWER_W,
    )
    assert order == order_for(
        demand_wh=500,
        pv_wh=800,
        retail_micro_per_kwh=OPEN.retail_micro_per_kwh,
        feed_in_micro_per_kwh=OPEN.feed_in_micro_per_kwh,
        policy=POLICY,
    )


def _meter(now: list[int]) -> BatteryMeter:
    return BatteryMeter(
        start=T,
        interval_s=STEP,
        demand_wh=[500, 500],
        pv_wh=[2_000, 2_000],
        battery=BATTERY,
        clock=lambda: now[0],
        soc_wh=4_000,
        default_mode=BatteryMode.SELL_SURPLUS,
    )


# The plan at the meter's SoC: store the surplus (a stored Wh is worth more than the ask).
PLAN = battery_order_for(
    demand_wh=500,
    pv_wh=2_000,
    soc_wh=4_000,
    battery=BATTERY,
    interval_s=STEP,
    retail_micro_per_kwh=OPEN.retail_micro_per_kwh,
    feed_in_micro_per_kwh=OPEN.feed_in_micro_per_kwh,
    policy=POLICY,
)


async def test_with_a_battery_the_order_is_the_plan_s_and_the_battery_runs_its_mode() -> None:
    assert PLAN.mode is BatteryMode.STORE_SURPLUS
    now = [T]
    meter = _meter(now)
    order = await order_for_interval(
        T,
        OPEN,
        demand_wh=500,
        pv_wh=2_000,
        policy=POLICY,
        battery=meter,
        agent_id="h001",
        max_power_w=DEFAULT_MAX_POWER_W,
    )
    assert order == PLAN.order
    now[0] = T + STEP
    assert await meter.soc_wh() == PLAN.plan.soc_end_wh > 4_000  # the commanded mode ran


async def test_a_battery_command_refused_is_logged_and_the_order_still_made(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [T + STEP]  # the interval has been applied: too late to command it
    meter = _meter(now)
    with caplog.at_level(logging.WARNING, logger="wattmesh.agents._ordering"):
        order = await order_for_interval(
            T,
            OPEN,
            demand_wh=500,
            pv_wh=2_000,
            policy=POLICY,
            battery=meter,
            agent_id="h001",
            max_power_w=DEFAULT_MAX_POWER_W,
        )
    assert order == PLAN.order  # the SoC was the same: the default mode stored nothing
    assert [r.getMessage() for r in caplog.records] == [
        f"h001: battery command refused: interval {T} has already been applied"
    ]


@given(
    demand_wh=st.integers(0, 10**7),
    pv_wh=st.integers(0, 10**7),
    max_power_w=st.integers(1, 1_000_000),
    interval_s=st.sampled_from([1, 20, 60, 300, 900, 3600]),
    battery=st.booleans(),
)
async def test_no_order_goes_beyond_the_connection(
    demand_wh: int, pv_wh: int, max_power_w: int, interval_s: int, battery: bool
) -> None:
    """Whatever the forecast (a 9 GWh one too), with or without a battery, the order's
    quantity is the unbounded one cut to what the connection carries in the interval."""
    announced = AnnouncementBody(Phase.OPEN, interval_s, 300_000, 80_000)
    meter = _meter([T]) if battery else None
    order = await order_for_interval(
        T,
        announced,
        demand_wh=demand_wh,
        pv_wh=pv_wh,
        policy=POLICY,
        battery=meter,
        agent_id="h001",
        max_power_w=max_power_w,
    )
    limit_wh = energy_limit_wh(max_power_w, interval_s)
    assert order.quantity_wh <= limit_wh
    if meter is None:
        free = order_for(
            demand_wh=demand_wh,
            pv_wh=pv_wh,
            retail_micro_per_kwh=300_000,
            feed_in_micro_per_kwh=80_000,
            policy=POLICY,
        )
        assert (order.side, order.price_micro_per_kwh) == (free.side, free.price_micro_per_kwh)
        assert order.quantity_wh == min(free.quantity_wh, limit_wh)


@given(
    quantity_wh=st.integers(0, 10**7),
    max_power_w=st.integers(1, 1_000_000),
    interval_s=st.integers(1, 86_400),
)
def test_clamping_keeps_side_and_price_and_cuts_only_above_the_limit(
    quantity_wh: int, max_power_w: int, interval_s: int
) -> None:
    order = OrderBody(Side.SELL, quantity_wh, 123_456)
    clamped = clamp_to_connection(order, max_power_w=max_power_w, interval_s=interval_s)
    limit_wh = energy_limit_wh(max_power_w, interval_s)
    assert clamped == (
        order if quantity_wh <= limit_wh else OrderBody(Side.SELL, limit_wh, 123_456)
    )


def test_the_default_connection_bounds_a_20_s_interval_at_96_wh() -> None:
    order = OrderBody(Side.BUY, 9_000_000, 270_000)
    assert clamp_to_connection(order, max_power_w=DEFAULT_MAX_POWER_W, interval_s=20) == OrderBody(
        Side.BUY, 96, 270_000
    )  # ceil(17,250 W * 20 s / 3600 s)
