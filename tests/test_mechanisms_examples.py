"""Hand-worked books for each mechanism, the SDR and MMR formulas, money, ToU tariffs.

Prices micro-units per kWh, quantities Wh, money micro-units.
"""

from __future__ import annotations

from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_clearing import HAND_BOOK, TARIFF
from wattmesh.broker.messages import Side
from wattmesh.ledger.clearing import Fill, GridTariff, Order
from wattmesh.ledger.mechanisms._community import pro_rata, sdr_price
from wattmesh.ledger.mechanisms.base import GridFill, MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.line_items import Account, Posting, net_by_account, postings
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule, TouPeriod

BUY, SELL = Side.BUY, Side.SELL
R, F = TARIFF.retail_micro_per_kwh, TARIFF.feed_in_micro_per_kwh  # 300_000, 80_000

# HAND_BOOK (tests/test_clearing.py), limits clamped to [F, R]:
#   buys  b 500 @ 300_000, a 1000 @ 250_000, c 800 @ 50_000
#   sells s 700 @ 100_000, t 600 @ 200_000, u 1000 @ 280_000
# Merit order: b-s 500, a-s 200, a-t 600 (1300 Wh); a has 200 left, c 800, u 1000.
MERIT_REST = (
    GridFill("a", "A", BUY, 200, R),
    GridFill("c", "C", BUY, 800, R),
    GridFill("u", "U", SELL, 1000, F),
)


def test_uniform_hand_book() -> None:
    result = Mechanism("uniform").clear(HAND_BOOK, TARIFF)
    assert result.price_micro_per_kwh == 225_000  # 200_000 + (250_000 - 200_000) / 2
    assert result.fills == (
        Fill("b", "s", 500, 225_000, "B", "S"),
        Fill("a", "s", 200, 225_000, "A", "S"),
        Fill("a", "t", 600, 225_000, "A", "T"),
    )
    assert result.grid == MERIT_REST


def test_pay_as_bid_hand_book_prices_each_pair_at_its_midpoint() -> None:
    result = Mechanism("pay-as-bid").clear(HAND_BOOK, TARIFF)
    assert result.fills == (
        Fill("b", "s", 500, 200_000, "B", "S"),  # (100_000 + 300_000) / 2
        Fill("a", "s", 200, 175_000, "A", "S"),  # (100_000 + 250_000) / 2
        Fill("a", "t", 600, 225_000, "A", "T"),  # (200_000 + 250_000) / 2
    )
    # Volume-weighted mean: 270_000_000 / 1300 = 207_692.3, rounded down.
    assert result.price_micro_per_kwh == 207_692
    assert result.grid == MERIT_REST
    buyers_bid = Mechanism("pay-as-bid", MarketRules(k=Fraction(1))).clear(HAND_BOOK, TARIFF)
    assert [f.price_micro_per_kwh for f in buyers_bid.fills] == [300_000, 250_000, 250_000]


def test_mmr_hand_book() -> None:
    """p = (300_000 + 80_000) / 2 = 190_000: buys a, b (1500 Wh) against sell s (700 Wh).

    Buyers share pro rata: b 700 * 500 / 1500 = 233.3, a 466.7; the last Wh goes to the
    larger remainder (a). Then, in merit order, what 190_000 excluded: t asks 200_000,
    so b (267 Wh left) and a (333 of its 533) buy from t at 200_000, the price nearest
    190_000 that t admits. a's last 200 Wh (250_000) cannot meet u (280_000): grid.
    """
    result = Mechanism("mmr").clear(HAND_BOOK, TARIFF)
    assert result.price_micro_per_kwh == 190_000
    assert result.fills == (
        Fill("a", "s", 467, 190_000, "A", "S"),
        Fill("b", "s", 233, 190_000, "B", "S"),
        Fill("b", "t", 267, 200_000, "B", "T"),
        Fill("a", "t", 333, 200_000, "A", "T"),
    )
    assert result.volume_wh == 1300  # the efficient volume, as for the auctions
    assert result.grid == MERIT_REST


def test_sdr_hand_book_oversupplied() -> None:
    """Candidates: buys a, b (1500 Wh), sells s, t, u (2300 Wh): SDR > 1, p = feed-in.

    No seller asks as little as 80_000, so everything trades in the second step, each
    pair at the seller's ask (the price nearest 80_000 it admits)."""
    result = Mechanism("sdr").clear(HAND_BOOK, TARIFF)
    assert result.price_micro_per_kwh == 80_000
    assert result.fills == (
        Fill("b", "s", 500, 100_000, "B", "S"),
        Fill("a", "s", 200, 100_000, "A", "S"),
        Fill("a", "t", 600, 200_000, "A", "T"),
    )
    assert result.grid == MERIT_REST


# Price-taking households (bids >= retail, asks <= feed-in), as in the papers.
TAKERS = (
    Order("x", BUY, 600, 300_000, "X"),
    Order("y", BUY, 400, 1_000_000, "Y"),
    Order("s", SELL, 300, 0, "S"),
    Order("t", SELL, 200, 80_000, "T"),
)


def test_sdr_price_takers() -> None:
    """SDR = 500 / 1000; p = R F / ((R - F) SDR + F) = 24e9 / 190_000 = 126_315.8."""
    result = Mechanism("sdr").clear(TAKERS, TARIFF)
    assert result.price_micro_per_kwh == 126_315
    assert result.fills == (
        Fill("x", "s", 300, 126_315, "X", "S"),
        Fill("y", "t", 200, 126_315, "Y", "T"),
    )
    assert result.grid == (GridFill("x", "X", BUY, 300, R), GridFill("y", "Y", BUY, 200, R))
    # Liu et al.'s buyer price SDR * p + (1 - SDR) * R is each buyer's average.
    x_avg = Fraction(300 * 126_315 + 300 * R, 600)
    assert x_avg == Fraction(1, 2) * 126_315 + Fraction(1, 2) * R


def test_mmr_with_a_network_fee_splits_the_fee_and_pays_the_operator() -> None:
    """F' = 80_000 + 20_000; p = (300_000 + 100_000) / 2; sellers net 180_000."""
    rules = MarketRules(network_fee_micro_per_kwh=20_000)
    result = Mechanism("mmr", rules).clear(TAKERS, TARIFF)
    assert result.price_micro_per_kwh == 200_000
    assert result.fills[0] == Fill("x", "s", 300, 200_000, "X", "S")
    items = postings(result)
    assert items[:3] == (
        Posting(Account.HOUSEHOLD, "x", 60_000, "X"),  # 300 Wh at 0.20
        Posting(Account.HOUSEHOLD, "s", -54_000, "S"),  # 300 Wh at 0.18
        Posting(Account.OPERATOR, "", -6_000, ""),  # 300 Wh at 0.02
    )
    net = net_by_account(items)
    assert net[(Account.OPERATOR, "")] == -10_000  # 500 Wh at 0.02
    assert net[(Account.GRID, "")] == -(90_000 + 60_000)  # x, y buy 300, 200 Wh at 0.30
    assert sum(net.values()) == 0


def test_sdr_with_a_network_fee() -> None:
    """F' = 100_000: p = 300_000 * 100_000 * 1000 / (200_000 * 500 + 100_000 * 1000)."""
    rules = MarketRules(network_fee_micro_per_kwh=20_000)
    assert Mechanism("sdr", rules).clear(TAKERS, TARIFF).price_micro_per_kwh == 150_000


def test_rounding_goes_to_the_seller_price_not_the_fee() -> None:
    """1 Wh at 1_400 with fee 600: the buyer pays 1 (1.4), the seller nets 1 (0.8), the
    operator 0 (0.6 exact): the seller never nets less than its price rounded."""
    tariff = GridTariff(retail_micro_per_kwh=1_400, feed_in_micro_per_kwh=0)
    rules = MarketRules(k=Fraction(1), network_fee_micro_per_kwh=600)
    book = [Order("b", BUY, 1, 1_400, "B"), Order("s", SELL, 1, 800, "S")]
    result = Mechanism("uniform", rules).clear(book, tariff)
    assert result.fills == (Fill("b", "s", 1, 1_400, "B", "S"),)
    assert postings(result) == (
        Posting(Account.HOUSEHOLD, "b", 1, "B"),
        Posting(Account.HOUSEHOLD, "s", -1, "S"),
    )


def test_a_fee_wider_than_the_spread_stops_local_trade() -> None:
    rules = MarketRules(network_fee_micro_per_kwh=R - F + 1)
    for name in ("uniform", "pay-as-bid", "sdr", "mmr"):
        result = Mechanism(name, rules).clear(TAKERS, TARIFF)
        assert result.fills == ()
        assert sum(g.quantity_wh for g in result.grid) == 1500


@settings(max_examples=80, deadline=None)
@given(
    retail=st.integers(0, 600_000),
    spread=st.integers(0, 600_000),
    sell=st.integers(1, 10_000),
    buy=st.integers(1, 10_000),
    more=st.integers(0, 5_000),
)
def test_sdr_price_formula(retail: int, spread: int, sell: int, buy: int, more: int) -> None:
    """floor(R F / ((R - F) SDR + F)) in [F, R] for SDR < 1, F for SDR >= 1; the price
    does not rise when supply grows."""
    feed_in = max(retail - spread, 0)
    tariff, rules = GridTariff(retail, feed_in), MarketRules()
    price = sdr_price(tariff, rules, sell, buy)
    assert price is not None
    assert feed_in <= price <= retail
    if sell >= buy or retail == feed_in:
        assert price == feed_in
    else:
        sdr = Fraction(sell, buy)
        assert price == floor(Fraction(retail * feed_in) / ((retail - feed_in) * sdr + feed_in))
    later = sdr_price(tariff, rules, sell + more, buy)
    assert later is not None
    assert later <= price
    assert sdr_price(tariff, rules, 0, buy) is None
    assert sdr_price(tariff, rules, sell, 0) is None


@settings(max_examples=80, deadline=None)
@given(quantities=st.lists(st.integers(1, 5_000), min_size=1, max_size=8), data=st.data())
def test_pro_rata_shares_are_within_one_wh_of_exact(
    quantities: list[int], data: st.DataObject
) -> None:
    from wattmesh.ledger.mechanisms.base import Limited

    side = [Limited(i, Order(f"h{i}", BUY, q, 0, f"r{i}"), 0, q) for i, q in enumerate(quantities)]
    volume = data.draw(st.integers(0, sum(quantities)))
    shares = pro_rata(volume, side)
    assert sum(shares) == volume
    exact = [Fraction(volume * q, sum(quantities)) for q in quantities]
    for share, q, e in zip(shares, quantities, exact, strict=True):
        assert 0 <= share <= q
        assert abs(share - e) < 1
    # Largest remainder: a share rounded up never has a smaller remainder than one
    # rounded down.
    up = [e - floor(e) for s, e in zip(shares, exact, strict=True) if s > e]
    down = [e - floor(e) for s, e in zip(shares, exact, strict=True) if s == floor(e)]
    if up and down:
        assert min(up) >= max(down)


def test_mechanism_validation() -> None:
    with pytest.raises(ValueError, match="unknown mechanism 'vickrey'"):
        Mechanism("vickrey")
    with pytest.raises(ValueError, match="k applies to uniform and pay-as-bid"):
        Mechanism("mmr", MarketRules(k=Fraction(1)))
    with pytest.raises(ValueError, match="k must lie"):
        MarketRules(k=Fraction(3, 2))
    with pytest.raises(ValueError, match="fee"):
        MarketRules(network_fee_micro_per_kwh=-1)
    assert Mechanism().is_default
    assert not Mechanism("uniform", MarketRules(k=Fraction(1, 3))).is_default
    assert Mechanism("pay-as-bid", MarketRules(k=Fraction(2, 4))).to_json() == {
        "mechanism": "pay-as-bid",
        "k": "1/2",
        "network_fee_micro_per_kwh": 0,
    }
    assert Mechanism("sdr").to_json() == {"mechanism": "sdr", "network_fee_micro_per_kwh": 0}


# --- time-of-use tariffs -------------------------------------------------------------

DAY = 1_751_241_600  # 2025-06-30 00:00 UTC
NIGHT, PEAK, DAYTIME = (
    GridTariff(200_000, 60_000),
    GridTariff(400_000, 80_000),
    GridTariff(300_000, 80_000),
)
SCHEDULE = TariffSchedule(
    (TouPeriod(0, NIGHT), TouPeriod(7, DAYTIME), TouPeriod(17, PEAK), TouPeriod(21, NIGHT))
)


@pytest.mark.parametrize(
    ("seconds", "tariff"),
    [
        (0, NIGHT),
        (7 * 3600 - 1, NIGHT),
        (7 * 3600, DAYTIME),
        (16 * 3600 + 2700, DAYTIME),
        (17 * 3600, PEAK),
        (20 * 3600 + 3599, PEAK),
        (21 * 3600, NIGHT),
        (86_399, NIGHT),
        (86_400 + 8 * 3600, DAYTIME),
    ],
)
def test_tou_schedule_in_utc_hours(seconds: int, tariff: GridTariff) -> None:
    assert SCHEDULE.at(DAY + seconds) == tariff


def test_tou_schedule_from_json_and_errors() -> None:
    rows = [
        {"start_hour_utc": 0, "retail_micro_per_kwh": 200_000, "feed_in_micro_per_kwh": 60_000},
        {"start_hour_utc": 17, "retail_micro_per_kwh": 400_000, "feed_in_micro_per_kwh": 80_000},
    ]
    schedule = TariffSchedule.from_json(rows)
    assert schedule.at(DAY + 18 * 3600) == PEAK
    assert TariffSchedule.flat(PEAK).at(DAY) == PEAK
    with pytest.raises(ValueError, match="hour 0"):
        TariffSchedule.from_json(rows[1:])
    with pytest.raises(ValueError, match="distinct, increasing"):
        TariffSchedule.from_json([rows[0], rows[1], rows[1]])
    with pytest.raises(ValueError, match="period 1: every field must be an integer"):
        TariffSchedule.from_json([rows[0], {**rows[1], "retail_micro_per_kwh": 0.4}])
    with pytest.raises(ValueError, match="period 0: fields"):
        TariffSchedule.from_json([{**rows[0], "tz": "UTC"}])
    with pytest.raises(ValueError, match="tariffs"):
        TariffSchedule.from_json([{**rows[0], "feed_in_micro_per_kwh": 300_000}])
    with pytest.raises(ValueError, match="hour"):
        TariffSchedule((TouPeriod(0, NIGHT), TouPeriod(24, PEAK)))


def test_community_pairing_can_trade_more_than_the_auctions() -> None:
    """Merit order pairs the best bid with the best ask and stops: 100 Wh.

    MMR at 190_000 first shares s (ask 100_000) between x and y (both admit 190_000),
    50 Wh each; x's other 50 Wh then still meets t (ask 250_000) at 250_000, the price
    nearest 190_000 that t admits: 150 Wh, more volume (less surplus) than the auction.
    """
    book = [
        Order("x", BUY, 100, 300_000, "X"),
        Order("y", BUY, 100, 200_000, "Y"),
        Order("s", SELL, 100, 100_000, "S"),
        Order("t", SELL, 100, 250_000, "T"),
    ]
    assert Mechanism("uniform").clear(book, TARIFF).fills == (
        Fill("x", "s", 100, 200_000, "X", "S"),  # then y 200_000 < t 250_000
    )
    assert Mechanism("mmr").clear(book, TARIFF).fills == (
        Fill("x", "s", 50, 190_000, "X", "S"),
        Fill("y", "s", 50, 190_000, "Y", "S"),
        Fill("x", "t", 50, 250_000, "X", "T"),
    )
