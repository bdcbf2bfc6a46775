"""Uniform-price double auction between neighbours, with the grid as the fallback.

A pure function over small typed values. The grid bounds every order: a buyer never
needs to pay more than the retail tariff (it can always buy from the grid), and a seller
never needs to take less than the feed-in tariff, so limits are clamped to
``[feed_in, retail]`` before matching. What is left unmatched is settled with the grid
at its tariffs (see :mod:`ledger.settlement`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from broker.messages import Side


@dataclass(frozen=True)
class Order:
    """An accepted order. ``order_ref`` identifies it in the log (its message id)."""

    agent: str
    side: Side
    quantity_wh: int
    price_micro_per_kwh: int
    order_ref: str = ""


@dataclass(frozen=True)
class GridTariff:
    retail_micro_per_kwh: int
    feed_in_micro_per_kwh: int

    def __post_init__(self) -> None:
        if not 0 <= self.feed_in_micro_per_kwh <= self.retail_micro_per_kwh:
            raise ValueError("tariffs need 0 <= feed_in <= retail")


@dataclass(frozen=True)
class Fill:
    buyer: str
    seller: str
    quantity_wh: int
    price_micro_per_kwh: int
    buy_ref: str
    sell_ref: str


@dataclass(frozen=True)
class ClearingResult:
    price_micro_per_kwh: int | None  # None when nothing traded
    fills: tuple[Fill, ...]

    @property
    def volume_wh(self) -> int:
        return sum(f.quantity_wh for f in self.fills)


def clear_uniform(
    orders: Iterable[Order], tariff: GridTariff, *, k: Fraction = Fraction(1, 2)
) -> ClearingResult:
    """Clear a pay-as-clear double auction.

    Buys are ranked by falling limit, sells by rising limit (ties by agent id, order
    ref, then quantity, so the result does not depend on arrival order: orders still
    tied are interchangeable, they yield the same fills). Quantities are matched
    while the buy limit is at least the sell limit. The uniform price is
    ``ask + k * (bid - ask)`` of the last matched pair (k-pricing, rounded down),
    which lies between every matched buyer's and seller's (clamped) limit.
    """
    if not 0 <= k <= 1:
        raise ValueError("k must lie in [0, 1]")
    book = tuple(orders)  # read once: ``orders`` may be a one-shot iterator
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    buys = sorted(
        (
            (min(o.price_micro_per_kwh, retail), o)
            for o in book
            if o.side is Side.BUY and o.quantity_wh > 0
        ),
        key=lambda p: (-p[0], p[1].agent, p[1].order_ref, p[1].quantity_wh),
    )
    sells = sorted(
        (
            (max(o.price_micro_per_kwh, feed_in), o)
            for o in book
            if o.side is Side.SELL and o.quantity_wh > 0
        ),
        key=lambda p: (p[0], p[1].agent, p[1].order_ref, p[1].quantity_wh),
    )
    matched: list[tuple[Order, Order, int]] = []
    bi = si = 0
    buy_left = buys[0][1].quantity_wh if buys else 0
    sell_left = sells[0][1].quantity_wh if sells else 0
    last_bid = last_ask = 0
    while bi < len(buys) and si < len(sells) and buys[bi][0] >= sells[si][0]:
        quantity = min(buy_left, sell_left)
        matched.append((buys[bi][1], sells[si][1], quantity))
        last_bid, last_ask = buys[bi][0], sells[si][0]
        buy_left -= quantity
        sell_left -= quantity
        if buy_left == 0:
            bi += 1
            buy_left = buys[bi][1].quantity_wh if bi < len(buys) else 0
        if sell_left == 0:
            si += 1
            sell_left = sells[si][1].quantity_wh if si < len(sells) else 0
    if not matched:
        return ClearingResult(None, ())
    price = last_ask + int((last_bid - last_ask) * k)
    fills = tuple(Fill(b.agent, s.agent, q, price, b.order_ref, s.order_ref) for b, s, q in matched)
    return ClearingResult(price, fills)
