"""What the household agent orders for an interval, and the battery mode it sets.

:func:`order_for_interval` turns forecast energy (Wh) and the interval's announced
tariffs into an order: by :func:`agents._strategy.order_for`, or with a battery by
:func:`agents._battery_strategy.battery_order_for` on the SoC read at that moment,
commanding the battery to the plan's mode. :func:`forecast_figures` is pure: the
figures an older forecast gives for an interval (:func:`covers`: whether it has
one), which the agent uses when no fresh forecast arrived in time. When and whether
an order is sent is :mod:`agents.agent`'s.
"""

from __future__ import annotations

import logging

from wattmesh.agents._battery_strategy import battery_order_for
from wattmesh.agents._strategy import LimitPricePolicy, clamp_to_connection, order_for
from wattmesh.agents.battery import BatteryController
from wattmesh.broker.messages import AnnouncementBody, ForecastBody, OrderBody

_LOG = logging.getLogger(__name__)


async def order_for_interval(
    interval: int,
    announced: AnnouncementBody,
    *,
    demand_wh: int,
    pv_wh: int,
    policy: LimitPricePolicy,
    battery: BatteryController | None,
    agent_id: str,
    max_power_w: int,
) -> OrderBody:
    """The order for ``interval`` (epoch s) from forecast ``demand_wh`` and ``pv_wh``.

    With a ``battery``, its SoC is read, the interval planned, and the battery told to
    run it in the plan's mode (a refusal, e.g. the interval has begun, is logged as a
    warning for ``agent_id``); the order is the plan's grid remainder. Either way its
    quantity is at most what a connection of ``max_power_w`` carries over the
    announced interval (:func:`agents._strategy.clamp_to_connection`).
    """
    order = await _unbounded_order(
        interval,
        announced,
        demand_wh=demand_wh,
        pv_wh=pv_wh,
        policy=policy,
        battery=battery,
        agent_id=agent_id,
    )
    return clamp_to_connection(order, max_power_w=max_power_w, interval_s=announced.interval_s)


async def _unbounded_order(
    interval: int,
    announced: AnnouncementBody,
    *,
    demand_wh: int,
    pv_wh: int,
    policy: LimitPricePolicy,
    battery: BatteryController | None,
    agent_id: str,
) -> OrderBody:
    if battery is None:
        return order_for(
            demand_wh=demand_wh,
            pv_wh=pv_wh,
            retail_micro_per_kwh=announced.retail_micro_per_kwh,
            feed_in_micro_per_kwh=announced.feed_in_micro_per_kwh,
            policy=policy,
        )
    decision = battery_order_for(
        demand_wh=demand_wh,
        pv_wh=pv_wh,
        soc_wh=await battery.soc_wh(),
        battery=battery.battery,
        interval_s=announced.interval_s,
        retail_micro_per_kwh=announced.retail_micro_per_kwh,
        feed_in_micro_per_kwh=announced.feed_in_micro_per_kwh,
        policy=policy,
    )
    try:
        battery.command(interval, decision.mode)
    except ValueError as exc:  # e.g. a late order: the interval has begun
        _LOG.warning("%s: battery command refused: %s", agent_id, exc)
    return decision.order


def forecast_figures(forecast: ForecastBody | None, interval: int) -> tuple[int, int]:
    """(demand_wh, pv_wh) that ``forecast`` gives for the interval starting at
    ``interval`` (epoch s); (0, 0), a no-trade order, if it does not cover it."""
    if forecast is None or not covers(forecast, interval):
        return 0, 0
    step = (interval - forecast.start) // forecast.interval_s
    return forecast.demand_wh[step], forecast.pv_wh[step]


def covers(forecast: ForecastBody, interval: int) -> bool:
    """Whether ``forecast`` has a step for the interval starting at ``interval``."""
    steps = len(forecast.demand_wh)
    return forecast.start <= interval < forecast.start + steps * forecast.interval_s
