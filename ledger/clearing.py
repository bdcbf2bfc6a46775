"""The clearing's values: orders, the grid's tariff, fills and the local result.

The auctions that produce them are in :mod:`ledger.mechanisms` (the default, uniform
price: :func:`ledger.mechanisms._auctions.clear_uniform`). The grid bounds every order: a
buyer never needs to pay more than the retail tariff, a seller never needs to take less
than the feed-in tariff. What is left unmatched is settled with the grid at its tariffs
(see :mod:`ledger.settlement`).
"""

from __future__ import annotations

from dataclasses import dataclass

from wattmesh.broker.messages import Side

__all__ = ["GridTariff", "Order"]


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
