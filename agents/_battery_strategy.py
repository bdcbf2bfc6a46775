"""How a household with a battery turns its forecast into an order.

The policy, in order:

1. **Self-consumption first.** Stored energy covers the forecast shortfall, up to the
   battery's discharge limit and SoC floor; only the rest is bought.
2. **Store or sell the surplus.** A Wh of surplus stored now later displaces a Wh that
   would be bought; after losses it is worth ``retail * round_trip_permille / 1000``
   (micro-units per kWh). Selling it now earns at most the household's ask, the
   ``LimitPricePolicy`` sell price. The surplus is stored (up to the charge limit and the
   capacity) when the stored value is at least the ask, else all of it is sold
   (``BatteryMode.SELL_SURPLUS``). What does not fit is sold.
3. **Order the remainder.** The order is the grid remainder of that plan: buy
   ``max(demand - pv - discharge + charge, 0)`` Wh or sell the negative of it, at the
   ``LimitPricePolicy`` price for its side (inside the grid's spread, as without a
   battery).

The plan is the same function (``agents.battery.step``) the battery runs physically on
the real demand and PV, so with a perfect forecast the order equals the interval's
metered net exactly. The battery never charges from the grid or the market here.
"""

from __future__ import annotations

from dataclasses import dataclass

from wattmesh.agents._strategy import LimitPricePolicy
from wattmesh.agents.battery import PERMILLE, BatteryMode, BatterySpec, BatteryStep, step
from wattmesh.broker.messages import OrderBody, Side


@dataclass(frozen=True)
class BatteryDecision:
    """The mode to run the battery in, the planned interval and the order for it."""

    mode: BatteryMode
    plan: BatteryStep
    order: OrderBody


def surplus_mode(
    battery: BatterySpec,
    *,
    retail_micro_per_kwh: int,
    feed_in_micro_per_kwh: int,
    policy: LimitPricePolicy,
) -> BatteryMode:
    """Store surplus when a stored Wh (after losses) is worth at least the ask."""
    ask = policy.price(Side.SELL, retail_micro_per_kwh, feed_in_micro_per_kwh)
    stored_value = retail_micro_per_kwh * battery.round_trip_permille // PERMILLE
    return BatteryMode.STORE_SURPLUS if stored_value >= ask else BatteryMode.SELL_SURPLUS


def battery_order_for(
    *,
    demand_wh: int,
    pv_wh: int,
    soc_wh: int,
    battery: BatterySpec,
    interval_s: int,
    retail_micro_per_kwh: int,
    feed_in_micro_per_kwh: int,
    policy: LimitPricePolicy,
) -> BatteryDecision:
    """Plan the interval from the forecast (Wh) and the SoC at its start (Wh)."""
    mode = surplus_mode(
        battery,
        retail_micro_per_kwh=retail_micro_per_kwh,
        feed_in_micro_per_kwh=feed_in_micro_per_kwh,
        policy=policy,
    )
    plan = step(
        battery, soc_wh=soc_wh, demand_wh=demand_wh, pv_wh=pv_wh, interval_s=interval_s, mode=mode
    )
    side = Side.BUY if plan.import_wh >= plan.export_wh else Side.SELL
    order = OrderBody(
        side=side,
        quantity_wh=plan.import_wh if side is Side.BUY else plan.export_wh,
        price_micro_per_kwh=policy.price(side, retail_micro_per_kwh, feed_in_micro_per_kwh),
    )
    return BatteryDecision(mode=mode, plan=plan, order=order)
