"""The two double auctions: uniform price (pay-as-clear) and pay-as-bid (discriminatory).

Both match in merit order (:mod:`ledger.mechanisms._matching`), so both trade the
efficient volume with the same fills; they differ only in price.

- ``uniform``: one price for all, ``ask + floor(k * (bid - ask))`` of the last matched
  pair (gross ask). :func:`clear_uniform` is its local part alone (no grid rests), what
  the ledger logs and settles.
- ``pay-as-bid``: each matched pair at its own price ``ask + floor(k * (bid - ask))``
  of that pair's own limits. The default k = 1/2 is the pair's midpoint: it splits
  each pair's surplus equally, so neither side gains by shading its limit more than the
  other, and it stays inside both limits. k = 1 is the textbook "buyers pay their bid".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

from wattmesh.ledger.clearing import ClearingResult, GridTariff, Order
from wattmesh.ledger.mechanisms._matching import Match, merit_order, traded_per_index
from wattmesh.ledger.mechanisms.base import (
    GridFill,
    MarketResult,
    MarketRules,
    fill,
    grid_rests,
    limited,
)


def k_price(ask: int, bid: int, k: Fraction) -> int:
    """``ask + floor(k * (bid - ask))`` for ``ask <= bid``: in [ask, bid]."""
    return ask + int((bid - ask) * k)


def _matches(book: Sequence[Order], tariff: GridTariff, rules: MarketRules) -> list[Match]:
    """The merit-order matches of the book (both auctions trade these)."""
    buys, sells = limited(book, tariff, rules)
    return merit_order(buys, sells)


def _grid(book: Sequence[Order], matches: list[Match], tariff: GridTariff) -> tuple[GridFill, ...]:
    """What each order's rest trades with the grid."""
    return grid_rests(book, traded_per_index(len(book), matches), tariff)


def _at_marginal_price(matches: list[Match], rules: MarketRules) -> ClearingResult:
    """Every match at the k-price of the marginal (last matched) pair."""
    if not matches:
        return ClearingResult(None, ())
    last = matches[-1]
    price = k_price(last.sell.limit, last.buy.limit, rules.k)
    fills = tuple(fill(m.buy.order, m.sell.order, m.quantity_wh, price) for m in matches)
    return ClearingResult(price, fills)


def uniform_local(
    orders: Sequence[Order], tariff: GridTariff, rules: MarketRules
) -> ClearingResult:
    """The local part of :func:`clear_uniform_price`, without building the grid rests."""
    return _at_marginal_price(_matches(tuple(orders), tariff, rules), rules)


def clear_uniform(
    orders: Iterable[Order], tariff: GridTariff, *, k: Fraction = Fraction(1, 2)
) -> ClearingResult:
    """Uniform pricing without a network fee, local part (``orders`` is read once)."""
    return uniform_local(tuple(orders), tariff, MarketRules(k=k))


def clear_uniform_price(
    orders: Sequence[Order], tariff: GridTariff, rules: MarketRules
) -> MarketResult:
    """Pay-as-clear: every fill at the k-price of the marginal (last matched) pair."""
    book = tuple(orders)
    matches = _matches(book, tariff, rules)
    local = _at_marginal_price(matches, rules)
    fee = rules.network_fee_micro_per_kwh
    grid = _grid(book, matches, tariff)
    return MarketResult("uniform", local.price_micro_per_kwh, local.fills, grid, fee)


def clear_pay_as_bid(
    orders: Sequence[Order], tariff: GridTariff, rules: MarketRules
) -> MarketResult:
    """Discriminatory: each matched pair at the k-price of its own bid and gross ask."""
    book = tuple(orders)
    matches = _matches(book, tariff, rules)
    fee = rules.network_fee_micro_per_kwh
    fills = tuple(
        fill(m.buy.order, m.sell.order, m.quantity_wh, k_price(m.sell.limit, m.buy.limit, rules.k))
        for m in matches
    )
    volume = sum(f.quantity_wh for f in fills)
    mean = sum(f.quantity_wh * f.price_micro_per_kwh for f in fills) // volume if volume else None
    return MarketResult("pay-as-bid", mean, fills, _grid(book, matches, tariff), fee)
