"""Tests of ledger.clearing: hand-worked books and properties of the uniform-price auction.

Limits are compared after clamping to the grid tariffs (a buyer never needs to pay more
than retail, a seller never needs to take less than feed-in), exactly as the auction does.
Prices are micro-units per kWh, quantities Wh.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker.messages import Side
from wattmesh.ledger.clearing import ClearingResult, Fill, GridTariff, Order
from wattmesh.ledger.mechanisms._auctions import clear_uniform
from wattmesh.ledger.money import cost_micro

BUY, SELL = Side.BUY, Side.SELL
AGENTS = ("h0", "h1", "h2", "h3", "h4", "h5")
# Round figures make ties (equal limits, limits at a tariff) likely.
ROUND_PRICES = (0, 50_000, 80_000, 100_000, 150_000, 200_000, 300_000, 700_000)

# --- strategies ----------------------------------------------------------------------


@st.composite
def tariffs(draw: st.DrawFn) -> GridTariff:
    feed_in = draw(st.one_of(st.sampled_from(ROUND_PRICES[:6]), st.integers(0, 300_000)))
    retail = draw(
        st.one_of(
            st.just(feed_in),
            st.sampled_from([p for p in ROUND_PRICES if p >= feed_in]),
            st.integers(feed_in, 600_000),
        )
    )
    return GridTariff(retail_micro_per_kwh=retail, feed_in_micro_per_kwh=feed_in)


prices = st.one_of(st.sampled_from(ROUND_PRICES), st.integers(0, 800_000))
quantities = st.one_of(st.just(0), st.integers(1, 5_000))


@st.composite
def books(draw: st.DrawFn, *, unique_refs: bool = True, max_size: int = 12) -> list[Order]:
    """Order books; with ``unique_refs`` every order has its own ``order_ref``."""
    size = draw(st.integers(0, max_size))
    book: list[Order] = []
    for i in range(size):
        ref = f"o{i}" if unique_refs else draw(st.sampled_from(("", "r1", "r2")))
        book.append(
            Order(
                agent=draw(st.sampled_from(AGENTS)),
                side=draw(st.sampled_from(Side)),
                quantity_wh=draw(quantities),
                price_micro_per_kwh=draw(prices),
                order_ref=ref,
            )
        )
    return book


ks = st.fractions(min_value=0, max_value=1, max_denominator=1000)

# --- helpers -------------------------------------------------------------------------


def clamped(order: Order, tariff: GridTariff) -> int:
    """The order's limit as the auction sees it (bounded by what the grid offers)."""
    if order.side is BUY:
        return min(order.price_micro_per_kwh, tariff.retail_micro_per_kwh)
    return max(order.price_micro_per_kwh, tariff.feed_in_micro_per_kwh)


def by_ref(book: Sequence[Order]) -> dict[str, Order]:
    refs = {o.order_ref: o for o in book}
    assert len(refs) == len(book), "helper needs unique order refs"
    return refs


def traded_per_order(result: ClearingResult) -> Counter[str]:
    traded: Counter[str] = Counter()
    for f in result.fills:
        traded[f.buy_ref] += f.quantity_wh
        traded[f.sell_ref] += f.quantity_wh
    return traded


def remainders(
    book: Sequence[Order], result: ClearingResult, side: Side
) -> list[tuple[Order, int]]:
    """Orders of ``side`` with quantity left after clearing, and how much is left."""
    traded = traded_per_order(result)
    left = [(o, o.quantity_wh - traded[o.order_ref]) for o in book if o.side is side]
    return [(o, q) for o, q in left if q > 0]


# --- hand-worked examples ------------------------------------------------------------

# 0.30 per kWh retail, 0.08 per kWh feed-in.
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)

# Clamped buys, by falling limit: b (400_000 -> 300_000, 500 Wh), a (250_000, 1000 Wh),
# c (50_000, 800 Wh: below anything a seller will take). Sells by rising limit:
# s (100_000, 700 Wh), t (200_000, 600 Wh), u (280_000, 1000 Wh).
#   b-s 500 (b done, s has 200 left); a-s 200 (s done, a has 800 left);
#   a-t 600 (t done, a has 200 left); a (250_000) < u (280_000): stop.
# Last matched pair: bid 250_000 (a), ask 200_000 (t).
HAND_BOOK = (
    Order("a", BUY, 1000, 250_000, "A"),
    Order("b", BUY, 500, 400_000, "B"),
    Order("c", BUY, 800, 50_000, "C"),
    Order("s", SELL, 700, 100_000, "S"),
    Order("t", SELL, 600, 200_000, "T"),
    Order("u", SELL, 1000, 280_000, "U"),
)


@pytest.mark.parametrize(
    ("k", "price"),
    [
        (Fraction(0), 200_000),  # the ask of the last matched pair
        (Fraction(1), 250_000),  # its bid
        (Fraction(1, 2), 225_000),
        (Fraction(1, 3), 216_666),  # 200_000 + 50_000/3, rounded down
        (Fraction(2, 3), 233_333),
    ],
)
def test_hand_worked_book(k: Fraction, price: int) -> None:
    result = clear_uniform(HAND_BOOK, TARIFF, k=k)
    assert result == ClearingResult(
        price,
        (
            Fill("b", "s", 500, price, "B", "S"),
            Fill("a", "s", 200, price, "A", "S"),
            Fill("a", "t", 600, price, "A", "T"),
        ),
    )
    assert result.volume_wh == 1300


def test_hand_worked_money() -> None:
    result = clear_uniform(HAND_BOOK, TARIFF)
    assert result.price_micro_per_kwh == 225_000
    paid = [cost_micro(f.quantity_wh, f.price_micro_per_kwh) for f in result.fills]
    # 500 Wh, 200 Wh, 600 Wh at 0.225 per kWh.
    assert paid == [112_500, 45_000, 135_000]


def test_limits_beyond_the_tariffs_trade_at_the_tariffs() -> None:
    """A buyer bidding above retail and a seller asking below feed-in meet in between."""
    tariff = GridTariff(retail_micro_per_kwh=300_001, feed_in_micro_per_kwh=80_000)
    book = [Order("b", BUY, 100, 10**9, "B"), Order("s", SELL, 100, 0, "S")]
    # Clamped to 300_001 and 80_000: 80_000 + floor(220_001 / 2).
    assert clear_uniform(book, tariff).price_micro_per_kwh == 190_000
    assert clear_uniform(book, tariff, k=Fraction(0)).price_micro_per_kwh == 80_000
    assert clear_uniform(book, tariff, k=Fraction(1)).price_micro_per_kwh == 300_001


def test_retail_equal_to_feed_in_fixes_the_price() -> None:
    tariff = GridTariff(retail_micro_per_kwh=120_000, feed_in_micro_per_kwh=120_000)
    book = [Order("b", BUY, 40, 500_000, "B"), Order("s", SELL, 70, 1, "S")]
    assert clear_uniform(book, tariff, k=Fraction(1, 3)) == ClearingResult(
        120_000, (Fill("b", "s", 40, 120_000, "B", "S"),)
    )


def test_a_buyer_below_feed_in_or_a_seller_above_retail_never_trades() -> None:
    book = [
        Order("b", BUY, 100, 79_999, "B"),  # below feed-in: no seller will take that
        Order("s", SELL, 100, 80_000, "S"),
        Order("x", BUY, 100, 300_000, "X"),
        Order("y", SELL, 100, 300_001, "Y"),  # above retail: no buyer will pay that
    ]
    result = clear_uniform(book, TARIFF)
    assert result == ClearingResult(80_000 + 110_000, (Fill("x", "s", 100, 190_000, "X", "S"),))


@pytest.mark.parametrize(
    "book",
    [
        [],
        [Order("b", BUY, 100, 300_000, "B")],
        [Order("s", SELL, 100, 80_000, "S")],
        [Order("b", BUY, 100, 150_000, "B"), Order("s", SELL, 100, 150_001, "S")],
        [Order("b", BUY, 0, 300_000, "B"), Order("s", SELL, 0, 80_000, "S")],
    ],
    ids=["empty", "only-buys", "only-sells", "no-overlap", "zero-quantities"],
)
def test_nothing_trades(book: list[Order]) -> None:
    result = clear_uniform(book, TARIFF)
    assert result == ClearingResult(None, ())
    assert result.volume_wh == 0


def test_equal_limits_trade_and_ties_go_by_agent_then_ref() -> None:
    book = [
        Order("zed", BUY, 60, 150_000, "1"),
        Order("amy", BUY, 60, 150_000, "9"),
        Order("amy", BUY, 60, 150_000, "2"),
        Order("s", SELL, 100, 150_000, "S"),
    ]
    result = clear_uniform(book, TARIFF)
    assert result == ClearingResult(
        150_000,
        (Fill("amy", "s", 60, 150_000, "2", "S"), Fill("amy", "s", 40, 150_000, "9", "S")),
    )


def test_tied_orders_with_the_same_agent_and_ref_clear_alike_in_any_order() -> None:
    """Refs default to "": orders that tie on limit, agent and ref are ranked by quantity."""
    big, small = Order("h", BUY, 50, 200_000), Order("h", BUY, 30, 200_000)
    sells = [Order("s", SELL, 50, 100_000, "S1"), Order("t", SELL, 30, 150_000, "S2")]
    expected = ClearingResult(
        175_000,
        (
            Fill("h", "s", 30, 175_000, "", "S1"),
            Fill("h", "s", 20, 175_000, "", "S1"),
            Fill("h", "t", 30, 175_000, "", "S2"),
        ),
    )
    assert clear_uniform([big, small, *sells], TARIFF) == expected
    assert clear_uniform([small, big, *sells], TARIFF) == expected


def test_a_one_shot_iterator_clears_like_a_list() -> None:
    assert clear_uniform(iter(HAND_BOOK), TARIFF) == clear_uniform(list(HAND_BOOK), TARIFF)
    assert clear_uniform((o for o in HAND_BOOK), TARIFF).volume_wh == 1300


def test_a_household_on_both_sides_trades_with_itself() -> None:
    """Documented behaviour, not a feature: the auction does not prevent self-trades.

    The ledger accepts one order per household and interval, so the book it clears never
    holds both sides for one household. Given such a book, the auction matches the two
    orders like any others; in settlement the self-fill counts as bought and sold alike
    and its money cancels (see tests/test_settlement.py).
    """
    book = [Order("h", BUY, 100, 200_000, "hb"), Order("h", SELL, 60, 100_000, "hs")]
    assert clear_uniform(book, TARIFF) == ClearingResult(
        150_000, (Fill("h", "h", 60, 150_000, "hb", "hs"),)
    )


@pytest.mark.parametrize("k", [Fraction(-1, 1000), Fraction(1001, 1000), Fraction(-1), Fraction(2)])
def test_k_outside_unit_interval_is_rejected(k: Fraction) -> None:
    with pytest.raises(ValueError, match="k must lie"):
        clear_uniform(HAND_BOOK, TARIFF, k=k)


def test_k_is_checked_even_for_an_empty_book() -> None:
    with pytest.raises(ValueError, match="k must lie"):
        clear_uniform([], TARIFF, k=Fraction(3, 2))


@pytest.mark.parametrize(("retail", "feed_in"), [(100, 101), (100, -1), (-2, -1), (-1, -1), (0, 1)])
def test_invalid_tariffs_are_rejected(retail: int, feed_in: int) -> None:
    with pytest.raises(ValueError, match="tariffs"):
        GridTariff(retail_micro_per_kwh=retail, feed_in_micro_per_kwh=feed_in)


# --- properties ----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(book=books(), tariff=tariffs(), k=ks)
def test_fills_respect_every_limit_and_the_tariffs(
    book: list[Order], tariff: GridTariff, k: Fraction
) -> None:
    result = clear_uniform(book, tariff, k=k)
    orders = by_ref(book)
    price = result.price_micro_per_kwh
    assert (price is None) == (not result.fills)
    for f in result.fills:
        buy, sell = orders[f.buy_ref], orders[f.sell_ref]
        assert buy.side is BUY
        assert sell.side is SELL
        assert (f.buyer, f.seller) == (buy.agent, sell.agent)
        assert f.quantity_wh > 0
        assert f.price_micro_per_kwh == price  # one uniform price
        assert f.price_micro_per_kwh <= clamped(buy, tariff)  # no buyer pays above its limit
        assert f.price_micro_per_kwh >= clamped(sell, tariff)  # no seller gets below its limit
        assert tariff.feed_in_micro_per_kwh <= f.price_micro_per_kwh
        assert f.price_micro_per_kwh <= tariff.retail_micro_per_kwh


@settings(max_examples=150, deadline=None)
@given(book=books(), tariff=tariffs(), k=ks)
def test_quantities_are_bounded_and_balanced(
    book: list[Order], tariff: GridTariff, k: Fraction
) -> None:
    result = clear_uniform(book, tariff, k=k)
    traded = traded_per_order(result)
    for order in book:
        assert 0 <= traded[order.order_ref] <= max(order.quantity_wh, 0)
    bought = sum(traded[o.order_ref] for o in book if o.side is BUY)
    sold = sum(traded[o.order_ref] for o in book if o.side is SELL)
    assert bought == sold == result.volume_wh
    # At most one fill per (buy order, sell order) pair.
    pairs = [(f.buy_ref, f.sell_ref) for f in result.fills]
    assert len(pairs) == len(set(pairs))


@settings(max_examples=150, deadline=None)
@given(book=books(unique_refs=False), tariff=tariffs(), k=ks, data=st.data())
def test_result_does_not_depend_on_the_order_of_the_book(
    book: list[Order], tariff: GridTariff, k: Fraction, data: st.DataObject
) -> None:
    """Even when agents and refs collide (refs default to "")."""
    shuffled = data.draw(st.permutations(book))
    assert clear_uniform(shuffled, tariff, k=k) == clear_uniform(book, tariff, k=k)


@settings(max_examples=150, deadline=None)
@given(book=books(), tariff=tariffs(), k=ks)
def test_nothing_is_left_that_could_still_trade(
    book: list[Order], tariff: GridTariff, k: Fraction
) -> None:
    result = clear_uniform(book, tariff, k=k)
    buys_left = [clamped(o, tariff) for o, _ in remainders(book, result, BUY)]
    sells_left = [clamped(o, tariff) for o, _ in remainders(book, result, SELL)]
    if buys_left and sells_left:
        assert max(buys_left) < min(sells_left)


@settings(max_examples=150, deadline=None)
@given(book=books(), tariff=tariffs())
def test_volume_is_the_most_that_can_trade(book: list[Order], tariff: GridTariff) -> None:
    """Volume equals max over prices p of min(demand at p, supply at p).

    Any buy with a limit >= p and any sell with a limit <= p can trade at p, so no
    clearing can trade more, and this is reached at the crossing of the two curves.
    """
    live = [o for o in book if o.quantity_wh > 0]
    candidates = {clamped(o, tariff) for o in live}

    def demand(p: int) -> int:
        return sum(o.quantity_wh for o in live if o.side is BUY and clamped(o, tariff) >= p)

    def supply(p: int) -> int:
        return sum(o.quantity_wh for o in live if o.side is SELL and clamped(o, tariff) <= p)

    best = max((min(demand(p), supply(p)) for p in candidates), default=0)
    assert clear_uniform(book, tariff).volume_wh == best


@settings(max_examples=100, deadline=None)
@given(book=books(), extra=books(max_size=6), tariff=tariffs(), k=ks)
def test_orders_without_quantity_never_trade(
    book: list[Order], extra: list[Order], tariff: GridTariff, k: Fraction
) -> None:
    """Zero and negative quantities are ignored: they neither trade nor shift anything."""
    dead = [
        Order(o.agent, o.side, -o.quantity_wh, o.price_micro_per_kwh, f"dead{i}")
        for i, o in enumerate(extra)
    ]
    result = clear_uniform([*book, *dead], tariff, k=k)
    refs = {f.buy_ref for f in result.fills} | {f.sell_ref for f in result.fills}
    assert not refs & {o.order_ref for o in dead}
    assert not refs & {o.order_ref for o in book if o.quantity_wh == 0}
    assert result == clear_uniform(book, tariff, k=k)


@settings(max_examples=100, deadline=None)
@given(book=books(), tariff=tariffs(), k=ks)
def test_only_the_clamped_limits_matter(book: list[Order], tariff: GridTariff, k: Fraction) -> None:
    clamped_book = [
        Order(o.agent, o.side, o.quantity_wh, clamped(o, tariff), o.order_ref) for o in book
    ]
    assert clear_uniform(clamped_book, tariff, k=k) == clear_uniform(book, tariff, k=k)


@settings(max_examples=150, deadline=None)
@given(book=books(), tariff=tariffs(), k=ks)
def test_k_pricing_between_the_marginal_bid_and_ask(
    book: list[Order], tariff: GridTariff, k: Fraction
) -> None:
    """price = ask + floor(k * (bid - ask)) for the lowest matched bid, highest matched ask.

    k = 0 gives the ask, k = 1 the bid, and the price does not fall as k grows.
    """
    result = clear_uniform(book, tariff, k=k)
    if not result.fills:
        return
    orders = by_ref(book)
    bid = min(clamped(orders[f.buy_ref], tariff) for f in result.fills)
    ask = max(clamped(orders[f.sell_ref], tariff) for f in result.fills)
    assert ask <= bid
    assert result.price_micro_per_kwh == ask + floor(k * (bid - ask))
    at_0 = clear_uniform(book, tariff, k=Fraction(0))
    at_1 = clear_uniform(book, tariff, k=Fraction(1))
    assert at_0.price_micro_per_kwh == ask
    assert at_1.price_micro_per_kwh == bid
    # k moves the price only, never who trades how much.
    assert [f.quantity_wh for f in at_0.fills] == [f.quantity_wh for f in result.fills]
    assert [f.quantity_wh for f in at_1.fills] == [f.quantity_wh for f in result.fills]


# --- money of the P2P part -----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(book=books(), tariff=tariffs(), k=ks)
def test_p2p_money_sums_to_zero_and_beats_the_grid_at_each_limit(
    book: list[Order], tariff: GridTariff, k: Fraction
) -> None:
    """Each fill is one rounded line item, paid by the buyer and received by the seller.

    No household does worse in the P2P part than trading the same energy with the grid at
    its own (clamped) limit, which itself is no worse than the grid's tariff.
    """
    result = clear_uniform(book, tariff, k=k)
    orders = by_ref(book)
    net_micro: Counter[str] = Counter()
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    for f in result.fills:
        amount = cost_micro(f.quantity_wh, f.price_micro_per_kwh)
        net_micro[f.buyer] += amount
        net_micro[f.seller] -= amount
        buy_limit = clamped(orders[f.buy_ref], tariff)
        sell_limit = clamped(orders[f.sell_ref], tariff)
        assert amount <= cost_micro(f.quantity_wh, buy_limit) <= cost_micro(f.quantity_wh, retail)
        assert amount >= cost_micro(f.quantity_wh, sell_limit) >= cost_micro(f.quantity_wh, feed_in)
    assert sum(net_micro.values()) == 0
