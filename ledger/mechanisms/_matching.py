"""Merit-order matching: the efficient volume, shared by ``uniform`` and ``pay-as-bid``.

Buys by falling limit, sells by rising gross ask (ties by agent, order ref, quantity),
matched while the bid is at least the gross ask. This trades the most volume any
clearing can: afterwards every buy left is priced below every sell left.
"""

from __future__ import annotations

from typing import NamedTuple

from wattmesh.ledger.mechanisms.base import Limited


class Match(NamedTuple):  # a tuple: one is built per matched pair, on the hot path
    buy: Limited
    sell: Limited
    quantity_wh: int


def merit_order(buys: list[Limited], sells: list[Limited]) -> list[Match]:
    """Match ``buys`` and ``sells`` (limits as in :func:`ledger.mechanisms.base.limited`).

    Each trades at most its ``quantity_wh``; ties are ranked by the order's own fields.
    """
    b_sorted = sorted(
        buys, key=lambda x: (-x.limit, x.order.agent, x.order.order_ref, x.order.quantity_wh)
    )
    s_sorted = sorted(
        sells, key=lambda x: (x.limit, x.order.agent, x.order.order_ref, x.order.quantity_wh)
    )
    matches: list[Match] = []
    bi = si = 0
    buy_left = b_sorted[0].quantity_wh if b_sorted else 0
    sell_left = s_sorted[0].quantity_wh if s_sorted else 0
    while bi < len(b_sorted) and si < len(s_sorted) and b_sorted[bi].limit >= s_sorted[si].limit:
        quantity = min(buy_left, sell_left)
        matches.append(Match(b_sorted[bi], s_sorted[si], quantity))
        buy_left -= quantity
        sell_left -= quantity
        if buy_left == 0:
            bi += 1
            buy_left = b_sorted[bi].quantity_wh if bi < len(b_sorted) else 0
        if sell_left == 0:
            si += 1
            sell_left = s_sorted[si].quantity_wh if si < len(s_sorted) else 0
    return matches


def traded_per_index(size: int, matches: list[Match]) -> list[int]:
    """Traded Wh per book position."""
    traded = [0] * size
    for m in matches:
        traded[m.buy.pos] += m.quantity_wh
        traded[m.sell.pos] += m.quantity_wh
    return traded
