"""Values shared by every market mechanism: rules, results, limits as the market sees them.

Conventions (docs/protocol.md, "Market mechanisms"):

- A fill's ``price_micro_per_kwh`` is what the buyer pays per kWh. With a network fee
  ``f`` (micro-units per kWh, to the operator) the seller nets ``price - f``.
- The grid bounds every order: a buyer never needs to pay more than retail ``R``, a
  seller never needs to net less than feed-in ``F``. So a buy's limit is
  ``min(bid, R)`` and a sell's *gross* limit (what a buyer must pay so that the seller
  nets its limit) is ``max(ask, F) + f``. A pair can trade iff bid limit >= gross ask.
- Whatever an order does not trade locally goes to the grid: a buy's rest is bought at
  ``R``, a sell's rest is sold at ``F`` (:class:`GridFill`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from wattmesh.broker.messages import Side
from wattmesh.ledger.clearing import ClearingResult, Fill, GridTariff, Order

__all__ = ["MarketResult", "MarketRules"]

_BUY = Side.BUY  # a module constant: enum member lookups are slow in hot loops


@dataclass(frozen=True)
class MarketRules:
    """Parameters of a market's mechanism.

    ``k`` (in [0, 1]) places a price between a sell's gross ask (k = 0) and a buy's bid
    (k = 1); it is used by ``uniform`` and ``pay-as-bid``. ``network_fee_micro_per_kwh``
    is charged on every locally traded kWh and credited to the operator.
    """

    k: Fraction = Fraction(1, 2)
    network_fee_micro_per_kwh: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.k <= 1:
            raise ValueError("k must lie in [0, 1]")
        if self.network_fee_micro_per_kwh < 0:
            raise ValueError("the network fee must not be negative")


@dataclass(frozen=True)
class GridFill:
    """The rest of one order, bought from (``BUY``) or sold to (``SELL``) the grid."""

    agent: str
    order_ref: str
    side: Side
    quantity_wh: int
    price_micro_per_kwh: int


@dataclass(frozen=True)
class MarketResult:
    """One interval cleared by a mechanism.

    ``price_micro_per_kwh`` is the single local price (uniform, sdr, mmr), the
    volume-weighted mean rounded down (pay-as-bid), or None when nothing traded.
    """

    mechanism: str
    price_micro_per_kwh: int | None
    fills: tuple[Fill, ...]
    grid: tuple[GridFill, ...]
    network_fee_micro_per_kwh: int = 0

    @property
    def volume_wh(self) -> int:
        return sum(f.quantity_wh for f in self.fills)

    @property
    def clearing(self) -> ClearingResult:
        """The local part, as the ledger logs and settles it."""
        return ClearingResult(self.price_micro_per_kwh, self.fills)


class Limited(NamedTuple):
    """An order with Wh to trade, its position in the book and its market limit.

    ``limit`` is ``min(bid, R)`` for a buy and the gross ask ``max(ask, F) + f`` for a
    sell (see the module docstring); ``quantity_wh`` is what is still to trade (the
    order's quantity at first).
    """

    pos: int
    order: Order
    limit: int
    quantity_wh: int


def limited(
    book: Sequence[Order], tariff: GridTariff, rules: MarketRules
) -> tuple[list[Limited], list[Limited]]:
    """Buys and sells with positive quantity and their market limits, in book order."""
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    fee = rules.network_fee_micro_per_kwh
    buys: list[Limited] = []
    sells: list[Limited] = []
    for i, o in enumerate(book):
        if o.quantity_wh <= 0:
            continue
        if o.side is _BUY:
            buys.append(Limited(i, o, min(o.price_micro_per_kwh, retail), o.quantity_wh))
        else:
            sells.append(Limited(i, o, max(o.price_micro_per_kwh, feed_in) + fee, o.quantity_wh))
    return buys, sells


def canonical_key(x: Limited) -> tuple[str, str, int, int]:
    """A ranking that does not depend on arrival order (orders still tied are identical)."""
    return (x.order.agent, x.order.order_ref, x.order.quantity_wh, x.limit)


def fill(buy: Order, sell: Order, quantity_wh: int, price_micro_per_kwh: int) -> Fill:
    return Fill(
        buy.agent, sell.agent, quantity_wh, price_micro_per_kwh, buy.order_ref, sell.order_ref
    )


def grid_rests(
    book: Sequence[Order], traded_wh: Sequence[int], tariff: GridTariff
) -> tuple[GridFill, ...]:
    """Each order's untraded rest at the grid's tariff, in book order (rests > 0 only)."""
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    return tuple(
        GridFill(o.agent, o.order_ref, o.side, rest, retail if o.side is _BUY else feed_in)
        for o, traded in zip(book, traded_wh, strict=True)
        if (rest := o.quantity_wh - traded) > 0
    )
