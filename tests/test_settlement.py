"""Tests of ledger.settlement and ledger.money: hand-worked bills and conservation laws.

Energy is integer Wh, prices micro-units per kWh, money micro-units (positive = pays).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker.messages import Side
from wattmesh.ledger.clearing import Fill, GridTariff, Order
from wattmesh.ledger.mechanisms._auctions import clear_uniform
from wattmesh.ledger.money import cost_micro
from wattmesh.ledger.settlement import (
    RegisterError,
    Registers,
    Settlement,
    settle_flows,
    settle_household,
)

# 0.30 per kWh retail, 0.08 per kWh feed-in.
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)
T0 = 1_700_000_000  # epoch s
START = Registers(meter_time=T0, import_wh=5_000, export_wh=7_000)
AGENTS = ("h0", "h1", "h2", "h3", "h4")


def end_after(start: Registers, *, import_wh: int, export_wh: int, seconds: int = 900) -> Registers:
    """Registers ``seconds`` after ``start`` having imported/exported the given Wh."""
    return Registers(
        start.meter_time + seconds, start.import_wh + import_wh, start.export_wh + export_wh
    )


def settle(
    agent: str,
    *,
    import_wh: int,
    export_wh: int,
    fills: Sequence[Fill],
    tariff: GridTariff = TARIFF,
    start: Registers = START,
) -> Settlement:
    return settle_household(
        agent=agent,
        interval=7,
        start=start,
        end=end_after(start, import_wh=import_wh, export_wh=export_wh),
        fills=fills,
        tariff=tariff,
    )


# --- money ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("energy_wh", "price", "expected"),
    [
        (0, 300_000, 0),
        (1000, 300_000, 300_000),  # 1 kWh at 0.30
        (1, 499, 0),  # 0.499 micro
        (1, 500, 1),  # 0.5 rounds up
        (1, 501, 1),
        (1, 1_499, 1),
        (1, 1_500, 2),  # 1.5 rounds up
        (5, 100_100, 501),  # 500.5
        (333, 225_001, 74_925),  # 74_925.333
        (3, 166_833, 500),  # 500.499
        (-1, 500, -1),  # symmetric: -0.5 -> -1
        (-1, 499, 0),
        (-5, 100_100, -501),
        (-1000, 300_000, -300_000),
    ],
)
def test_cost_micro_examples(energy_wh: int, price: int, expected: int) -> None:
    assert cost_micro(energy_wh, price) == expected


energies = st.integers(-(10**7), 10**7)
tariff_prices = st.integers(0, 10**8)


@settings(max_examples=300, deadline=None)
@given(energy_wh=energies, price=tariff_prices)
def test_cost_micro_rounds_half_away_from_zero_symmetrically(energy_wh: int, price: int) -> None:
    """Half up for energy >= 0; negative energy is the exact mirror image."""
    exact = Fraction(abs(energy_wh) * price, 1000)
    magnitude = floor(exact + Fraction(1, 2))
    assert cost_micro(energy_wh, price) == (magnitude if energy_wh >= 0 else -magnitude)
    assert cost_micro(-energy_wh, price) == -cost_micro(energy_wh, price)


@settings(max_examples=200, deadline=None)
@given(
    energy_wh=st.integers(0, 10**7),
    more_wh=st.integers(0, 10**4),
    price=tariff_prices,
    more_price=st.integers(0, 10**5),
)
def test_cost_micro_is_monotone(energy_wh: int, more_wh: int, price: int, more_price: int) -> None:
    base = cost_micro(energy_wh, price)
    assert cost_micro(energy_wh + more_wh, price) >= base
    assert cost_micro(energy_wh, price + more_price) >= base


# --- hand-worked settlements ---------------------------------------------------------

# Household s sold 1 kWh to household b at 0.20 per kWh.
FILL = Fill("b", "s", 1000, 200_000, "B", "S")


@pytest.mark.parametrize(
    ("agent", "import_wh", "export_wh", "expected"),
    [
        # seller delivers exactly: paid 0.20, no grid
        ("s", 0, 1000, (0, 1000, 0, 0, -200_000, 0, -80_000)),
        # seller under-delivers 400 Wh: buys them from the grid at retail
        ("s", 0, 600, (0, 1000, 400, 0, -200_000, 120_000, -48_000)),
        # seller over-delivers 500 Wh: sells them to the grid at feed-in
        ("s", 0, 1500, (0, 1000, 0, 500, -200_000, -40_000, -120_000)),
        # seller also imported 300 Wh: net export 300, sold 1000, so 700 from the grid
        ("s", 300, 600, (0, 1000, 700, 0, -200_000, 210_000, 42_000)),
        # buyer consumes exactly what it bought
        ("b", 1000, 0, (1000, 0, 0, 0, 200_000, 0, 300_000)),
        # buyer consumes 500 Wh more: from the grid at retail
        ("b", 1500, 0, (1000, 0, 500, 0, 200_000, 150_000, 450_000)),
        # buyer consumes 600 Wh less: the surplus goes to the grid at feed-in
        ("b", 400, 0, (1000, 0, 0, 600, 200_000, -48_000, 120_000)),
        # a household that did not trade is settled with the grid alone
        ("c", 250, 0, (0, 0, 250, 0, 0, 75_000, 75_000)),
        ("c", 0, 250, (0, 0, 0, 250, 0, -20_000, -20_000)),
        # within the interval import and export are netted (grid-only does not net)
        ("c", 300, 500, (0, 0, 0, 200, 0, -16_000, 50_000)),
    ],
    ids=[
        "seller-exact",
        "seller-under",
        "seller-over",
        "seller-imports-too",
        "buyer-exact",
        "buyer-over",
        "buyer-under",
        "bystander-imports",
        "bystander-exports",
        "bystander-nets",
    ],
)
def test_hand_worked_settlement(
    agent: str, import_wh: int, export_wh: int, expected: tuple[int, ...]
) -> None:
    bought, sold, grid_buy, grid_sell, p2p, grid, grid_only = expected
    result = settle(agent, import_wh=import_wh, export_wh=export_wh, fills=[FILL])
    assert result == Settlement(
        agent=agent,
        interval=7,
        import_wh=import_wh,
        export_wh=export_wh,
        bought_wh=bought,
        sold_wh=sold,
        grid_buy_wh=grid_buy,
        grid_sell_wh=grid_sell,
        p2p_cost_micro=p2p,
        grid_cost_micro=grid,
        grid_only_cost_micro=grid_only,
    )
    assert result.cost_micro == p2p + grid
    assert result.to_json() == {
        "agent": agent,
        "interval": 7,
        "import_wh": import_wh,
        "export_wh": export_wh,
        "bought_wh": bought,
        "sold_wh": sold,
        "grid_buy_wh": grid_buy,
        "grid_sell_wh": grid_sell,
        "p2p_cost_micro": p2p,
        "grid_cost_micro": grid,
        "grid_only_cost_micro": grid_only,
    }


def test_every_fill_is_rounded_on_its_own_and_the_same_for_both_sides() -> None:
    fills = [Fill("b", "s", 5, 100_100, "B1", "S"), Fill("b", "s", 5, 100_100, "B2", "S")]
    buyer = settle("b", import_wh=12, export_wh=0, fills=fills)
    seller = settle("s", import_wh=0, export_wh=10, fills=fills)
    assert buyer.p2p_cost_micro == 2 * 501  # 500.5 twice, each rounded up
    assert seller.p2p_cost_micro == -2 * 501
    assert buyer.grid_buy_wh == 2
    assert buyer.grid_cost_micro == 600
    assert buyer.grid_only_cost_micro == 3_600


def test_the_network_fee_is_rounded_per_fill_and_paid_by_the_seller() -> None:
    """Each fill's fee is ``cost(q, p) - cost(q, p - f)``: the buyer's rounded figure minus
    the seller's, so the seller nets exactly the clearing's ``cost(q, p - f)`` per fill
    (not ``cost(sold, f)`` once: here 0 + 0 against 2)."""
    fills = [Fill("b", "s", 1, 1_499, "B1", "S"), Fill("b", "s", 1, 1_499, "B2", "S")]
    buyer = settle_flows(
        agent="b",
        interval=7,
        import_wh=2,
        export_wh=0,
        fills=fills,
        tariff=TARIFF,
        network_fee_micro_per_kwh=999,
    )
    seller = settle_flows(
        agent="s",
        interval=7,
        import_wh=0,
        export_wh=2,
        fills=fills,
        tariff=TARIFF,
        network_fee_micro_per_kwh=999,
    )
    assert (buyer.p2p_cost_micro, buyer.network_fee_micro, buyer.cost_micro) == (2, 0, 2)
    assert (seller.p2p_cost_micro, seller.network_fee_micro) == (-2, 0)  # 1 - 1 per fill
    assert seller.cost_micro == -2 * cost_micro(1, 1_499 - 999)
    big = [Fill("b", "s", 1_000, 200_000, "B", "S"), Fill("b", "s", 333, 200_001, "B", "S")]
    sold = settle_flows(
        agent="s",
        interval=7,
        import_wh=0,
        export_wh=1_333,
        fills=big,
        tariff=TARIFF,
        network_fee_micro_per_kwh=10_000,
    )
    assert sold.network_fee_micro == 10_000 + (66_600 - 63_270)
    assert sold.to_json()["network_fee_micro"] == sold.network_fee_micro
    assert "network_fee_micro" not in buyer.to_json()  # 0 is not logged
    with pytest.raises(ValueError, match="negative"):
        settle_flows(
            agent="s",
            interval=7,
            import_wh=0,
            export_wh=0,
            fills=big,
            tariff=TARIFF,
            network_fee_micro_per_kwh=-1,
        )


def test_a_self_fill_nets_out() -> None:
    """A household on both sides of one fill (the auction allows it; the ledger's one
    order per household and interval prevents it) buys and sells the same energy."""
    fills = [Fill("h", "h", 60, 150_000, "hb", "hs")]
    result = settle("h", import_wh=100, export_wh=0, fills=fills)
    assert (result.bought_wh, result.sold_wh) == (60, 60)
    assert result.p2p_cost_micro == 0
    assert (result.grid_buy_wh, result.grid_sell_wh) == (100, 0)
    assert result.cost_micro == result.grid_only_cost_micro == 30_000


@pytest.mark.parametrize(
    "end",
    [
        Registers(T0 + 900, START.import_wh - 1, START.export_wh),
        Registers(T0 + 900, START.import_wh, START.export_wh - 1),
        Registers(T0 + 900, 0, 0),
        Registers(T0, START.import_wh + 10, START.export_wh),  # same meter time
        Registers(T0 - 1, START.import_wh + 10, START.export_wh),  # earlier meter time
    ],
    ids=["import-backwards", "export-backwards", "meter-reset", "same-time", "earlier-time"],
)
def test_bad_registers_are_refused(end: Registers) -> None:
    with pytest.raises(RegisterError):
        settle_household(agent="h", interval=7, start=START, end=end, fills=[], tariff=TARIFF)


def test_register_error_is_a_value_error() -> None:
    assert issubclass(RegisterError, ValueError)


# --- strategies ----------------------------------------------------------------------


@st.composite
def tariffs(draw: st.DrawFn) -> GridTariff:
    feed_in = draw(st.integers(0, 300_000))
    retail = draw(st.one_of(st.just(feed_in), st.integers(feed_in, 600_000)))
    return GridTariff(retail_micro_per_kwh=retail, feed_in_micro_per_kwh=feed_in)


@st.composite
def starts(draw: st.DrawFn) -> Registers:
    return Registers(
        meter_time=draw(st.integers(0, 2 * T0)),
        import_wh=draw(st.integers(0, 10**9)),
        export_wh=draw(st.integers(0, 10**9)),
    )


flows = st.integers(0, 20_000)  # Wh imported or exported in one interval


@st.composite
def fill_lists(draw: st.DrawFn) -> list[Fill]:
    """Arbitrary fills between AGENTS, self-fills and per-fill prices included."""
    return draw(
        st.lists(
            st.builds(
                Fill,
                buyer=st.sampled_from(AGENTS),
                seller=st.sampled_from(AGENTS),
                quantity_wh=st.integers(1, 10_000),
                price_micro_per_kwh=st.integers(0, 600_000),
                buy_ref=st.just("b"),
                sell_ref=st.just("s"),
            ),
            max_size=10,
        )
    )


@st.composite
def cleared_fills(draw: st.DrawFn, tariff: GridTariff) -> list[Fill]:
    """The fills of a random book between AGENTS (at most one order each, as in the ledger)."""
    book = [
        Order(
            agent=agent,
            side=draw(st.sampled_from(Side)),
            quantity_wh=draw(st.integers(0, 10_000)),
            price_micro_per_kwh=draw(st.integers(0, 700_000)),
            order_ref=f"o-{agent}",
        )
        for agent in AGENTS
        if draw(st.booleans())
    ]
    k = draw(st.fractions(min_value=0, max_value=1, max_denominator=100))
    return list(clear_uniform(book, tariff, k=k).fills)


# --- properties ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    agent=st.sampled_from(AGENTS),
    start=starts(),
    import_wh=flows,
    export_wh=flows,
    fills=fill_lists(),
    tariff=tariffs(),
)
def test_energy_balances_and_the_grid_takes_one_side(
    agent: str,
    start: Registers,
    import_wh: int,
    export_wh: int,
    fills: list[Fill],
    tariff: GridTariff,
) -> None:
    s = settle(
        agent, import_wh=import_wh, export_wh=export_wh, fills=fills, tariff=tariff, start=start
    )
    assert (s.import_wh, s.export_wh) == (import_wh, export_wh)
    assert s.import_wh - s.export_wh == (s.bought_wh - s.sold_wh) + (s.grid_buy_wh - s.grid_sell_wh)
    assert s.grid_buy_wh >= 0
    assert s.grid_sell_wh >= 0
    assert s.grid_buy_wh == 0 or s.grid_sell_wh == 0
    assert s.bought_wh == sum(f.quantity_wh for f in fills if f.buyer == agent)
    assert s.sold_wh == sum(f.quantity_wh for f in fills if f.seller == agent)
    assert s.p2p_cost_micro == sum(
        cost_micro(f.quantity_wh, f.price_micro_per_kwh) for f in fills if f.buyer == agent
    ) - sum(cost_micro(f.quantity_wh, f.price_micro_per_kwh) for f in fills if f.seller == agent)
    assert s.grid_cost_micro == cost_micro(s.grid_buy_wh, tariff.retail_micro_per_kwh) - cost_micro(
        s.grid_sell_wh, tariff.feed_in_micro_per_kwh
    )
    assert s.grid_only_cost_micro == cost_micro(
        import_wh, tariff.retail_micro_per_kwh
    ) - cost_micro(export_wh, tariff.feed_in_micro_per_kwh)


@settings(max_examples=200, deadline=None)
@given(
    start=starts(),
    d_import=st.integers(-(10**4), 10**4),
    d_export=st.integers(-(10**4), 10**4),
    d_time=st.integers(-(10**4), 10**4),
    fills=fill_lists(),
)
def test_registers_must_move_forward(
    start: Registers, d_import: int, d_export: int, d_time: int, fills: list[Fill]
) -> None:
    end = Registers(
        start.meter_time + d_time, start.import_wh + d_import, start.export_wh + d_export
    )
    bad = d_import < 0 or d_export < 0 or d_time <= 0
    if bad:
        with pytest.raises(RegisterError):
            settle_household(
                agent="h0", interval=1, start=start, end=end, fills=fills, tariff=TARIFF
            )
    else:
        s = settle_household(
            agent="h0", interval=1, start=start, end=end, fills=fills, tariff=TARIFF
        )
        assert (s.import_wh, s.export_wh) == (d_import, d_export)


@settings(max_examples=200, deadline=None)
@given(
    start=starts(),
    import_wh=flows,
    export_wh=flows,
    tariff=tariffs(),
    others=fill_lists(),
)
def test_without_trades_only_netting_separates_bill_from_grid_only(
    start: Registers, import_wh: int, export_wh: int, tariff: GridTariff, others: list[Fill]
) -> None:
    """Fills of other households do not touch this one's bill. Without trades, the bill
    is the grid's price of the interval's net flow; grid-only prices the gross flows, so
    the two agree exactly when the household only imported or only exported."""
    fills = [f for f in others if "loner" not in (f.buyer, f.seller)]
    s = settle(
        "loner", import_wh=import_wh, export_wh=export_wh, fills=fills, tariff=tariff, start=start
    )
    assert (s.bought_wh, s.sold_wh, s.p2p_cost_micro) == (0, 0, 0)
    net_wh = import_wh - export_wh
    assert (s.grid_buy_wh, s.grid_sell_wh) == (max(net_wh, 0), max(-net_wh, 0))
    if import_wh == 0 or export_wh == 0:
        assert s.cost_micro == s.grid_only_cost_micro
    else:
        assert s.cost_micro <= s.grid_only_cost_micro + 1  # netting never costs (rounding aside)


@st.composite
def communities(
    draw: st.DrawFn, *, fills: st.SearchStrategy[list[Fill]] | None = None
) -> tuple[GridTariff, list[Fill], dict[str, tuple[Registers, int, int]]]:
    tariff = draw(tariffs())
    community_fills = draw(fills if fills is not None else cleared_fills(tariff))
    meters = {a: (draw(starts()), draw(flows), draw(flows)) for a in AGENTS}
    return tariff, community_fills, meters


def settle_all(
    tariff: GridTariff, fills: list[Fill], meters: dict[str, tuple[Registers, int, int]]
) -> list[Settlement]:
    return [
        settle(a, import_wh=imp, export_wh=exp, fills=fills, tariff=tariff, start=start)
        for a, (start, imp, exp) in meters.items()
    ]


@settings(max_examples=200, deadline=None)
@given(community=communities())
def test_community_pays_the_grid_and_nothing_else(
    community: tuple[GridTariff, list[Fill], dict[str, tuple[Registers, int, int]]],
) -> None:
    """After a real clearing, the P2P money cancels exactly; what the community pays in
    total is its grid purchases at retail minus its grid sales at feed-in."""
    tariff, fills, meters = community
    bills = settle_all(tariff, fills, meters)
    assert sum(b.p2p_cost_micro for b in bills) == 0
    assert sum(b.bought_wh for b in bills) == sum(b.sold_wh for b in bills)
    assert sum(b.bought_wh for b in bills) == sum(f.quantity_wh for f in fills)
    assert sum(b.cost_micro for b in bills) == sum(
        cost_micro(b.grid_buy_wh, tariff.retail_micro_per_kwh)
        - cost_micro(b.grid_sell_wh, tariff.feed_in_micro_per_kwh)
        for b in bills
    )
    # Energy: the community's net metered import is what it nets with the grid.
    assert sum(b.import_wh - b.export_wh for b in bills) == sum(
        b.grid_buy_wh - b.grid_sell_wh for b in bills
    )


@settings(max_examples=200, deadline=None)
@given(community=communities(fills=fill_lists()))
def test_money_is_conserved_for_any_common_set_of_fills(
    community: tuple[GridTariff, list[Fill], dict[str, tuple[Registers, int, int]]],
) -> None:
    """Whatever the fills (prices per fill, self-fills), settling every household against
    the same fills moves money between households only."""
    tariff, fills, meters = community
    bills = settle_all(tariff, fills, meters)
    assert sum(b.p2p_cost_micro for b in bills) == 0
    assert sum(b.bought_wh for b in bills) == sum(b.sold_wh for b in bills)
    assert sum(b.cost_micro for b in bills) == sum(b.grid_cost_micro for b in bills)
