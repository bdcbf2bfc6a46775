"""The two double auctions: uniform price (pay-as-clear) and pay-as-bid (discriminatory).

Both match in merit order (:mod:`ledger.mechanisms.matching`), so both trade the
efficient volume with the same fills; they differ only in price.

- ``uniform``: one price for all, ``ask + floor(k * (bid - ask))`` of the last matched
  pair (gross ask). With no network fee this is exactly
  :func:`ledger.clearing.clear_uniform`.
- ``pay-as-bid``: each matched pair at its own price ``ask + floor(k * (bid - ask))``
  of that pair's own limits. The default k = 1/2 is the pair's midpoint: it splits
  each pair's surplus equally, so neither side gains by shading its limit more than the
  other, and it stays inside both limits. k = 1 is the textbook "buyers pay their bid".
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from ledger.clearing import GridTariff, Order
from ledger.mechanisms.base import GridFill, MarketResult, MarketRules, fill, grid_rests, limited
from ledger.mechanisms.matching import Match, merit_order, traded_per_index


def k_price(ask: int, bid: int, k: Fraction) -> int:
    """``ask + floor(k * (bid - ask))`` for ``ask <= bid``: in [ask, bid]."""
    return ask + int((bid - ask) * k)


def _matched(
    orders: Sequence[Order], tariff: GridTariff, rules: MarketRules
) -> tuple[list[Match], tuple[GridFill, ...]]:
    """The merit-order matches of the book (both auctions trade these) and what each
    order's rest trades with the grid."""
    book = tuple(orders)
    buys, sells = limited(book, tariff, rules)
    matches = merit_order(buys, sells)
    return matches, grid_rests(book, traded_per_index(len(book), matches), tariff)


def clear_uniform_price(
    orders: Sequence[Order], tariff: GridTariff, rules: MarketRules
) -> MarketResult:
    """Pay-as-clear: every fill at the k-price of the marginal (last matched) pair."""
    matches, grid = _matched(orders, tariff, rules)
    fee = rules.network_fee_micro_per_kwh
    if not matches:
        return MarketResult("uniform", None, (), grid, fee)
    last = matches[-1]
    price = k_price(last.sell.limit, last.buy.limit, rules.k)
    fills = tuple(fill(m.buy.order, m.sell.order, m.quantity_wh, price) for m in matches)
    return MarketResult("uniform", price, fills, grid, fee)


def clear_pay_as_bid(
    orders: Sequence[Order], tariff: GridTariff, rules: MarketRules
) -> MarketResult:
    """Discriminatory: each matched pair at the k-price of its own bid and gross ask."""
    matches, grid = _matched(orders, tariff, rules)
    fee = rules.network_fee_micro_per_kwh
    fills = tuple(
        fill(m.buy.order, m.sell.order, m.quantity_wh, k_price(m.sell.limit, m.buy.limit, rules.k))
        for m in matches
    )
    volume = sum(f.quantity_wh for f in fills)
    mean = sum(f.quantity_wh * f.price_micro_per_kwh for f in fills) // volume if volume else None
    return MarketResult("pay-as-bid", mean, fills, grid, fee)
