"""Properties every market mechanism keeps (ledger/mechanisms), for random books and rules.

Limits are the market's: a buy's ``min(bid, R)``, a sell's ``max(ask, F)`` net of the
network fee (the seller nets the fill price minus the fee). Money: micro-units, one
rounding per line item (ledger/mechanisms/line_items.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_clearing import books, ks, tariffs
from wattmesh.broker.messages import Side
from wattmesh.ledger.clearing import GridTariff, Order
from wattmesh.ledger.mechanisms._auctions import clear_uniform
from wattmesh.ledger.mechanisms._community import mmr_price
from wattmesh.ledger.mechanisms.base import MarketResult, MarketRules
from wattmesh.ledger.mechanisms.catalog import MECHANISMS, USES_K, Mechanism
from wattmesh.ledger.mechanisms.line_items import Account, net_by_account, postings
from wattmesh.ledger.money import cost_micro

BUY, SELL = Side.BUY, Side.SELL
NAMES = sorted(MECHANISMS)
fees = st.one_of(st.just(0), st.sampled_from((1, 999, 10_000, 50_000)), st.integers(0, 400_000))
FEW = settings(max_examples=30, deadline=None)


def mechanism(name: str, k: Fraction, fee: int) -> Mechanism:
    return Mechanism(
        name, MarketRules(k=k if name in USES_K else Fraction(1, 2), network_fee_micro_per_kwh=fee)
    )


def buy_limit(o: Order, tariff: GridTariff) -> int:
    return min(o.price_micro_per_kwh, tariff.retail_micro_per_kwh)


def sell_limit(o: Order, tariff: GridTariff) -> int:
    """What the seller must net per kWh (the grid always pays feed-in)."""
    return max(o.price_micro_per_kwh, tariff.feed_in_micro_per_kwh)


def traded(result: MarketResult) -> Counter[str]:
    out: Counter[str] = Counter()
    for f in result.fills:
        out[f.buy_ref] += f.quantity_wh
        out[f.sell_ref] += f.quantity_wh
    return out


def by_ref(book: Sequence[Order]) -> dict[str, Order]:
    return {o.order_ref: o for o in book}


def efficient_volume(book: Sequence[Order], tariff: GridTariff, fee: int) -> int:
    """max over p of min(demand at p, supply at p), with sells' gross asks (limit + fee)."""
    live = [o for o in book if o.quantity_wh > 0]
    gross = {id(o): sell_limit(o, tariff) + fee for o in live if o.side is SELL}
    candidates = {buy_limit(o, tariff) for o in live if o.side is BUY} | set(gross.values())

    def demand(p: int) -> int:
        return sum(o.quantity_wh for o in live if o.side is BUY and buy_limit(o, tariff) >= p)

    def supply(p: int) -> int:
        return sum(o.quantity_wh for o in live if o.side is SELL and gross[id(o)] <= p)

    return max((min(demand(p), supply(p)) for p in candidates), default=0)


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(book=books(), tariff=tariffs(), k=ks, fee=fees)
def test_no_buyer_pays_above_and_no_seller_nets_below_its_limit(
    name: str, book: list[Order], tariff: GridTariff, k: Fraction, fee: int
) -> None:
    result = mechanism(name, k, fee).clear(book, tariff)
    orders = by_ref(book)
    assert result.mechanism == name
    assert (result.price_micro_per_kwh is None) == (not result.fills)
    for f in result.fills:
        buy, sell = orders[f.buy_ref], orders[f.sell_ref]
        assert (buy.side, sell.side) == (BUY, SELL)
        assert (f.buyer, f.seller) == (buy.agent, sell.agent)
        assert f.quantity_wh > 0
        assert f.price_micro_per_kwh <= buy_limit(buy, tariff)
        assert f.price_micro_per_kwh - fee >= sell_limit(sell, tariff)
        if name == "uniform":
            assert f.price_micro_per_kwh == result.price_micro_per_kwh
        elif name in ("sdr", "mmr"):
            # The community price, or the nearest price both limits admit.
            p = result.price_micro_per_kwh
            assert p is not None
            ask = sell_limit(sell, tariff) + fee
            assert f.price_micro_per_kwh == min(max(p, ask), buy_limit(buy, tariff))


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(book=books(), tariff=tariffs(), k=ks, fee=fees)
def test_every_wh_is_traded_once_or_goes_to_the_grid(
    name: str, book: list[Order], tariff: GridTariff, k: Fraction, fee: int
) -> None:
    result = mechanism(name, k, fee).clear(book, tariff)
    local = traded(result)
    grid = {g.order_ref: g for g in result.grid}
    assert len(grid) == len(result.grid)
    for o in book:
        rest = grid[o.order_ref].quantity_wh if o.order_ref in grid else 0
        assert local[o.order_ref] + rest == max(o.quantity_wh, 0)
        if o.order_ref in grid:
            g = grid[o.order_ref]
            assert (g.agent, g.side) == (o.agent, o.side)
            assert rest > 0
            tariff_price = (
                tariff.retail_micro_per_kwh if o.side is BUY else tariff.feed_in_micro_per_kwh
            )
            assert g.price_micro_per_kwh == tariff_price
    bought = sum(local[o.order_ref] for o in book if o.side is BUY)
    sold = sum(local[o.order_ref] for o in book if o.side is SELL)
    assert bought == sold == result.volume_wh
    pairs = [(f.buy_ref, f.sell_ref) for f in result.fills]
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(book=books(), tariff=tariffs(), k=ks, fee=fees)
def test_money_sums_to_zero_and_no_household_does_worse_than_the_grid(
    name: str, book: list[Order], tariff: GridTariff, k: Fraction, fee: int
) -> None:
    """Rounded line items sum to zero exactly; per line item and in exact totals, every
    household does at least as well as with the grid alone (buy all at R, sell all at F)."""
    result = mechanism(name, k, fee).clear(book, tariff)
    items = postings(result)
    assert sum(p.amount_micro for p in items) == 0
    net = net_by_account(items)
    assert net[(Account.OPERATOR, "")] <= 0  # the operator only receives
    assert net[(Account.OPERATOR, "")] == -sum(
        cost_micro(f.quantity_wh, f.price_micro_per_kwh)
        - cost_micro(f.quantity_wh, f.price_micro_per_kwh - fee)
        for f in result.fills
    )
    orders = by_ref(book)
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    exact: Counter[str] = Counter()  # Fraction micro-units; > 0 pays
    for f in result.fills:
        paid = cost_micro(f.quantity_wh, f.price_micro_per_kwh)
        got = cost_micro(f.quantity_wh, f.price_micro_per_kwh - fee)
        assert paid <= cost_micro(f.quantity_wh, buy_limit(orders[f.buy_ref], tariff))
        assert paid <= cost_micro(f.quantity_wh, retail)
        assert got >= cost_micro(f.quantity_wh, sell_limit(orders[f.sell_ref], tariff))
        assert got >= cost_micro(f.quantity_wh, feed_in)
        exact[f.buyer] += Fraction(f.quantity_wh * f.price_micro_per_kwh, 1000)
        exact[f.seller] -= Fraction(f.quantity_wh * (f.price_micro_per_kwh - fee), 1000)
    for g in result.grid:
        sign = 1 if g.side is BUY else -1
        exact[g.agent] += sign * Fraction(g.quantity_wh * g.price_micro_per_kwh, 1000)
    grid_only: Counter[str] = Counter()
    for o in book:
        if o.quantity_wh > 0:
            price = retail if o.side is BUY else -feed_in
            grid_only[o.agent] += Fraction(o.quantity_wh * price, 1000)
    for agent in {o.agent for o in book}:
        assert exact[agent] <= grid_only[agent]


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(book=books(unique_refs=False), tariff=tariffs(), k=ks, fee=fees, data=st.data())
def test_result_does_not_depend_on_the_order_of_the_book(
    name: str, book: list[Order], tariff: GridTariff, k: Fraction, fee: int, data: st.DataObject
) -> None:
    m = mechanism(name, k, fee)
    a, b = m.clear(book, tariff), m.clear(data.draw(st.permutations(book)), tariff)
    assert (a.price_micro_per_kwh, a.fills) == (b.price_micro_per_kwh, b.fills)
    assert Counter(a.grid) == Counter(b.grid)


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(book=books(), tariff=tariffs(), k=ks, fee=fees)
def test_every_mechanism_trades_the_efficient_volume(
    name: str, book: list[Order], tariff: GridTariff, k: Fraction, fee: int
) -> None:
    """Every buy priced at or above a sell it could match (net of the fee) is matched.

    The auctions trade exactly the competitive volume (max over p of min(demand,
    supply)). The community schemes trade at least that: their first step pairs every
    order admitting p regardless of merit, which can leave pairs (high bid, high ask)
    that the second step still matches.
    """
    result = mechanism(name, k, fee).clear(book, tariff)
    competitive = efficient_volume(book, tariff, fee)
    if name in ("uniform", "pay-as-bid"):
        assert result.volume_wh == competitive
    else:
        assert result.volume_wh >= competitive
    rests = {g.order_ref: g for g in result.grid}
    orders = by_ref(book)
    bids = [buy_limit(orders[r], tariff) for r, g in rests.items() if g.side is BUY]
    asks = [sell_limit(orders[r], tariff) + fee for r, g in rests.items() if g.side is SELL]
    if bids and asks:
        assert max(bids) < min(asks)


@pytest.mark.parametrize("name", ["sdr", "mmr"])
@FEW
@given(book=books(), tariff=tariffs(), fee=fees)
def test_community_schemes_trade_all_they_can_at_their_price_first(
    name: str, book: list[Order], tariff: GridTariff, fee: int
) -> None:
    """At the community price p: the short side of the orders admitting p trades all of
    its quantity at p; only the rest trades at other prices."""
    result = mechanism(name, Fraction(1, 2), fee).clear(book, tariff)
    p = result.price_micro_per_kwh
    if name == "mmr" and result.fills:
        assert p == mmr_price(tariff, MarketRules(network_fee_micro_per_kwh=fee))
    if p is None:
        return
    live = [o for o in book if o.quantity_wh > 0]
    demand = sum(o.quantity_wh for o in live if o.side is BUY and buy_limit(o, tariff) >= p)
    supply = sum(o.quantity_wh for o in live if o.side is SELL and sell_limit(o, tariff) + fee <= p)
    at_p = sum(f.quantity_wh for f in result.fills if f.price_micro_per_kwh == p)
    assert at_p >= min(demand, supply)


@FEW
@given(book=books(), tariff=tariffs(), fee=fees, data=st.data())
def test_with_price_taking_households_all_mechanisms_trade_the_efficient_volume(
    book: list[Order], tariff: GridTariff, fee: int, data: st.DataObject
) -> None:
    """Bids at or above retail, asks at or below feed-in (the papers' setting): every
    mechanism trades min(total buy, total sell), the efficient volume, the community
    schemes all of it at their single price."""
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    fee = min(fee, retail - feed_in)
    takers = [
        Order(
            o.agent,
            o.side,
            o.quantity_wh,
            data.draw(st.integers(retail, retail + 10**6))
            if o.side is BUY
            else data.draw(st.integers(0, feed_in)),
            o.order_ref,
        )
        for o in book
    ]
    results = {name: mechanism(name, Fraction(1, 2), fee).clear(takers, tariff) for name in NAMES}
    volumes = {name: r.volume_wh for name, r in results.items()}
    for name in ("sdr", "mmr"):
        prices = {f.price_micro_per_kwh for f in results[name].fills}
        assert prices <= {results[name].price_micro_per_kwh}
    demand = sum(o.quantity_wh for o in takers if o.side is BUY and o.quantity_wh > 0)
    supply = sum(o.quantity_wh for o in takers if o.side is SELL and o.quantity_wh > 0)
    assert set(volumes.values()) == {min(demand, supply)}
    assert min(demand, supply) == efficient_volume(takers, tariff, fee)


@FEW
@given(book=books(unique_refs=False), tariff=tariffs(), k=ks)
def test_uniform_without_a_fee_is_the_existing_auction(
    book: list[Order], tariff: GridTariff, k: Fraction
) -> None:
    """Ledger roots of existing markets depend on this: same price, same fills, same order."""
    mechanism = Mechanism("uniform", MarketRules(k=k))
    assert mechanism.clear(book, tariff).clearing == clear_uniform(book, tariff, k=k)
    assert mechanism.clear_local(book, tariff) == clear_uniform(book, tariff, k=k)


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(book=books(), tariff=tariffs(), k=ks, fee=fees)
def test_the_local_part_is_what_clear_returns(
    name: str, book: list[Order], tariff: GridTariff, k: Fraction, fee: int
) -> None:
    m = mechanism(name, k, fee)
    assert m.clear_local(book, tariff) == m.clear(book, tariff).clearing


@FEW
@given(book=books(), tariff=tariffs(), k=ks, fee=fees)
def test_pay_as_bid_matches_like_uniform_and_prices_each_pair_by_k(
    book: list[Order], tariff: GridTariff, k: Fraction, fee: int
) -> None:
    uniform = mechanism("uniform", k, fee).clear(book, tariff)
    pab = mechanism("pay-as-bid", k, fee).clear(book, tariff)
    strip = [(f.buy_ref, f.sell_ref, f.quantity_wh) for f in uniform.fills]
    assert [(f.buy_ref, f.sell_ref, f.quantity_wh) for f in pab.fills] == strip
    assert pab.grid == uniform.grid
    orders = by_ref(book)
    for f in pab.fills:
        bid = buy_limit(orders[f.buy_ref], tariff)
        ask = sell_limit(orders[f.sell_ref], tariff) + fee
        assert f.price_micro_per_kwh == ask + int(k * (bid - ask))
