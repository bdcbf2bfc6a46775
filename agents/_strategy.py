"""How a household turns a forecast into an order.

Limit prices sit inside the grid's spread: a buyer never bids above the retail tariff
and a seller never asks below the feed-in tariff, since the grid always offers those.
No order asks for more energy than the household's connection carries over the
interval (:func:`clamp_to_connection`; the ledger refuses such an order).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from wattmesh.broker.connection import energy_limit_wh
from wattmesh.broker.messages import OrderBody, Side


@dataclass(frozen=True)
class LimitPricePolicy:
    """Where in the grid's spread to place limits, in permille of ``retail - feed_in``.

    The defaults bid at 90 % of the way from feed-in to retail and ask at 10 %, so
    buyers and sellers overlap and both gain against the grid.
    """

    buy_permille: int = 900
    sell_permille: int = 100

    def __post_init__(self) -> None:
        for value in (self.buy_permille, self.sell_permille):
            if not 0 <= value <= 1000:
                raise ValueError("permille values must lie in [0, 1000]")

    def price(self, side: Side, retail_micro_per_kwh: int, feed_in_micro_per_kwh: int) -> int:
        permille = self.buy_permille if side is Side.BUY else self.sell_permille
        spread = retail_micro_per_kwh - feed_in_micro_per_kwh
        return feed_in_micro_per_kwh + spread * permille // 1000


def order_for(
    *,
    demand_wh: int,
    pv_wh: int,
    retail_micro_per_kwh: int,
    feed_in_micro_per_kwh: int,
    policy: LimitPricePolicy,
) -> OrderBody:
    """Buy the forecast shortfall or sell the forecast surplus; 0 Wh means no trade."""
    net_wh = demand_wh - pv_wh
    side = Side.BUY if net_wh >= 0 else Side.SELL
    return OrderBody(
        side=side,
        quantity_wh=abs(net_wh),
        price_micro_per_kwh=policy.price(side, retail_micro_per_kwh, feed_in_micro_per_kwh),
    )


def clamp_to_connection(order: OrderBody, *, max_power_w: int, interval_s: int) -> OrderBody:
    """``order`` with its quantity cut to what a connection of ``max_power_w`` W carries
    in ``interval_s`` (:func:`broker.connection.energy_limit_wh`, the ledger's bound)."""
    limit_wh = energy_limit_wh(max_power_w, interval_s)
    if order.quantity_wh <= limit_wh:
        return order
    return replace(order, quantity_wh=limit_wh)
