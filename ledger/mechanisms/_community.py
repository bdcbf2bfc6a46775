"""Community pricing: the supply-demand ratio (SDR) and mid-market rate (MMR) schemes.

Both set one internal price ``p`` for the interval from the grid's tariffs, instead of
from the bids. With retail ``R`` and the seller's floor ``F' = F + f`` (feed-in plus the
network fee, so a seller always nets at least feed-in):

- MMR (Long et al., 2017): ``p = floor((R + F') / 2)``, the midpoint of the spread.
- SDR (Liu et al., 2017): ``SDR = S / D``, total sell over total buy quantity of the
  candidate orders (those whose limits admit some price in ``[F', R]``: buys with
  ``min(bid, R) >= F'``, sells with ``max(ask, F) + f <= R``); then
  ``p = floor(R * F' / ((R - F') * SDR + F'))`` for ``SDR < 1`` and ``p = F'`` for
  ``SDR >= 1``. The price falls from ``R`` (no local supply) to ``F'`` (supply covers
  demand).

At ``p`` trade every buy whose limit is at least ``p`` and every sell whose gross ask is
at most ``p``. The short side trades all of its quantity; the long side shares the
volume pro rata to quantity (largest remainder to whole Wh; ties by the canonical
ranking agent, order ref, quantity). What is then left and could still trade locally
(pairs whose limits exclude ``p``) is matched in merit order, each pair at the price
nearest ``p`` that both its limits admit; so the volume is the efficient one, as for
the auctions. Whatever is left after that goes to the grid. With price-taking
households (the papers' setting) that second step is empty, and a buyer's average over
local and grid energy is the papers' ``SDR * p + (1 - SDR) * R``.
"""

from __future__ import annotations

from collections.abc import Sequence

from wattmesh.ledger.clearing import Fill, GridTariff, Order
from wattmesh.ledger.mechanisms._matching import merit_order
from wattmesh.ledger.mechanisms.base import (
    Limited,
    MarketResult,
    MarketRules,
    canonical_key,
    fill,
    grid_rests,
    limited,
)


def mmr_price(tariff: GridTariff, rules: MarketRules) -> int | None:
    """The mid-market rate, or None when the fee leaves no room (``F + f > R``)."""
    floor_ = tariff.feed_in_micro_per_kwh + rules.network_fee_micro_per_kwh
    retail = tariff.retail_micro_per_kwh
    return None if floor_ > retail else (retail + floor_) // 2


def sdr_price(tariff: GridTariff, rules: MarketRules, sell_wh: int, buy_wh: int) -> int | None:
    """The SDR internal price for ``sell_wh`` offered against ``buy_wh`` wanted.

    None when nothing can trade (no supply, no demand, or ``F + f > R``).
    """
    floor_ = tariff.feed_in_micro_per_kwh + rules.network_fee_micro_per_kwh
    retail = tariff.retail_micro_per_kwh
    if floor_ > retail or sell_wh <= 0 or buy_wh <= 0:
        return None
    if sell_wh >= buy_wh or floor_ == retail:
        return floor_
    # R * F' / ((R - F') * S / D + F'), multiplied through by D; denominator > 0.
    return (retail * floor_ * buy_wh) // ((retail - floor_) * sell_wh + floor_ * buy_wh)


def pro_rata(volume_wh: int, side: list[Limited]) -> list[int]:
    """Split ``volume_wh`` (at most the side's total) pro rata, largest remainder first."""
    total = sum(x.quantity_wh for x in side)
    if volume_wh >= total:
        return [x.quantity_wh for x in side]
    shares = [volume_wh * x.quantity_wh // total for x in side]
    remainders = [volume_wh * x.quantity_wh % total for x in side]
    left = volume_wh - sum(shares)
    for i in sorted(range(len(side)), key=lambda i: -remainders[i])[:left]:
        shares[i] += 1
    return shares


def clear_at_price(
    name: str,
    book: tuple[Order, ...],
    *,
    tariff: GridTariff,
    rules: MarketRules,
    price: int | None,
    limits: tuple[list[Limited], list[Limited]],
) -> MarketResult:
    """Trade everything that can trade at ``price``; pair the shares in canonical order.

    ``limits`` is ``limited(book, tariff, rules)``.
    """
    buys, sells = limits
    fee = rules.network_fee_micro_per_kwh
    traded = [0] * len(book)
    fills: list[Fill] = []
    if price is not None:
        b_in = sorted((x for x in buys if x.limit >= price), key=canonical_key)
        s_in = sorted((x for x in sells if x.limit <= price), key=canonical_key)
        volume = min(sum(x.quantity_wh for x in b_in), sum(x.quantity_wh for x in s_in))
        b_share, s_share = pro_rata(volume, b_in), pro_rata(volume, s_in)
        fills = _pair(
            list(zip(b_in, b_share, strict=True)),
            list(zip(s_in, s_share, strict=True)),
            price,
            traded,
        )
        fills += _residual(buys, sells, price, traded)
    grid = grid_rests(book, traded, tariff)
    return MarketResult(name, price if fills else None, tuple(fills), grid, fee)


def _residual(
    buys: list[Limited], sells: list[Limited], price: int, traded: list[int]
) -> list[Fill]:
    """Merit order over what is left, each pair at ``price`` moved into its own limits.

    Only pairs that the community price excludes trade here (one side's limit is on the
    wrong side of ``price``), at the nearest price both admit: the buyer's bid when it
    is below ``price``, the seller's gross ask when that is above.
    """
    rest_b = [x._replace(quantity_wh=r) for x in buys if (r := x.quantity_wh - traded[x.pos]) > 0]
    rest_s = [x._replace(quantity_wh=r) for x in sells if (r := x.quantity_wh - traded[x.pos]) > 0]
    fills: list[Fill] = []
    for m in merit_order(rest_b, rest_s):
        pair_price = min(max(price, m.sell.limit), m.buy.limit)
        fills.append(fill(m.buy.order, m.sell.order, m.quantity_wh, pair_price))
        traded[m.buy.pos] += m.quantity_wh
        traded[m.sell.pos] += m.quantity_wh
    return fills


def _pair(
    buys: list[tuple[Limited, int]],
    sells: list[tuple[Limited, int]],
    price: int,
    traded: list[int],
) -> list[Fill]:
    """North-west corner walk over (order, share): at most len(buys) + len(sells) - 1 fills."""
    fills: list[Fill] = []
    b_left = [share for _, share in buys]
    s_left = [share for _, share in sells]
    bi = si = 0
    while bi < len(buys) and si < len(sells):
        if b_left[bi] == 0:
            bi += 1
            continue
        if s_left[si] == 0:
            si += 1
            continue
        buy, sell = buys[bi][0], sells[si][0]
        quantity = min(b_left[bi], s_left[si])
        fills.append(fill(buy.order, sell.order, quantity, price))
        traded[buy.pos] += quantity
        traded[sell.pos] += quantity
        b_left[bi] -= quantity
        s_left[si] -= quantity
    return fills


def clear_mmr(orders: Sequence[Order], tariff: GridTariff, rules: MarketRules) -> MarketResult:
    """Mid-market rate: every local kWh at ``floor((R + F + f) / 2)``."""
    book = tuple(orders)
    limits = limited(book, tariff, rules)
    return clear_at_price(
        "mmr", book, tariff=tariff, rules=rules, price=mmr_price(tariff, rules), limits=limits
    )


def clear_sdr(orders: Sequence[Order], tariff: GridTariff, rules: MarketRules) -> MarketResult:
    """Supply-demand ratio: the internal price from the candidates' SDR."""
    book = tuple(orders)
    buys, sells = limited(book, tariff, rules)
    floor_ = tariff.feed_in_micro_per_kwh + rules.network_fee_micro_per_kwh
    retail = tariff.retail_micro_per_kwh
    buy_wh = sum(x.quantity_wh for x in buys if x.limit >= floor_)
    sell_wh = sum(x.quantity_wh for x in sells if x.limit <= retail)
    price = sdr_price(tariff, rules, sell_wh, buy_wh)
    return clear_at_price(
        "sdr", book, tariff=tariff, rules=rules, price=price, limits=(buys, sells)
    )
