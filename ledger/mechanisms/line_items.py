"""Money line items of one cleared interval, before metering.

One rounding per line item (``ledger.money.cost_micro``, half up), and every line item
balances on its own, so money sums to zero exactly over households, operator and grid:

- a local fill of ``q`` Wh at price ``p`` with network fee ``f``: the buyer pays
  ``cost(q, p)``; the seller receives ``cost(q, p - f)``; the operator receives the
  difference ``cost(q, p) - cost(q, p - f)`` (``ledger.money.network_fee_micro``: >= 0,
  within half a micro-unit of ``q * f / 1000``). Rounding the seller's own price, not
  the fee, keeps ``cost(q, p - f) >= cost(q, ask)`` exactly for every seller whose net
  price is at or above its ask. Settlement books exactly these figures
  (:mod:`ledger.settlement`: the seller's ``network_fee_micro``, to ``operator/fees``).
- a grid rest of ``q`` Wh: a buyer pays the grid ``cost(q, R)``; the grid pays a seller
  ``cost(q, F)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

from wattmesh.broker.messages import Side
from wattmesh.ledger.mechanisms.base import MarketResult
from wattmesh.ledger.money import cost_micro, network_fee_micro

__all__ = ["Account", "net_by_account", "postings"]


class Account(StrEnum):
    HOUSEHOLD = "household"
    GRID = "grid"
    OPERATOR = "operator"


class Posting(NamedTuple):
    """``amount_micro`` > 0: the account pays; < 0: it receives. ``agent`` only for households."""

    account: Account
    agent: str
    amount_micro: int
    order_ref: str


def postings(result: MarketResult) -> tuple[Posting, ...]:
    """The line items of ``result``, each a balanced group of postings."""
    fee = result.network_fee_micro_per_kwh
    out: list[Posting] = []
    for f in result.fills:
        paid = cost_micro(f.quantity_wh, f.price_micro_per_kwh)
        charged = network_fee_micro(f.quantity_wh, f.price_micro_per_kwh, fee)
        out.append(Posting(Account.HOUSEHOLD, f.buyer, paid, f.buy_ref))
        out.append(Posting(Account.HOUSEHOLD, f.seller, charged - paid, f.sell_ref))
        if charged:
            out.append(Posting(Account.OPERATOR, "", -charged, ""))
    for g in result.grid:
        amount = cost_micro(g.quantity_wh, g.price_micro_per_kwh)
        sign = 1 if g.side is Side.BUY else -1
        out.append(Posting(Account.HOUSEHOLD, g.agent, sign * amount, g.order_ref))
        out.append(Posting(Account.GRID, "", -sign * amount, g.order_ref))
    return tuple(out)


def net_by_account(items: Iterable[Posting]) -> Counter[tuple[Account, str]]:
    """Net amount per (account, agent); > 0 means the account pays overall."""
    net: Counter[tuple[Account, str]] = Counter()
    for p in items:
        net[(p.account, p.agent)] += p.amount_micro
    return net
