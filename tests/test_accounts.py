"""ledger.accounts: double-entry postings balance, and the accounts always sum to zero."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker.messages import canonical_bytes
from wattmesh.ledger._booking import book
from wattmesh.ledger.accounts import (
    FEES_ACCOUNT,
    GRID_ACCOUNT,
    MARKET_ACCOUNT,
    Cause,
    Line,
    Posting,
    UnbalancedPosting,
    balances,
    correction_postings,
    household_account,
    settlement_postings,
)
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.entries import posting_entry
from wattmesh.ledger.metering import Revision
from wattmesh.ledger.money import network_fee_micro
from wattmesh.ledger.settlement import Basis, Settlement, settle_flows, with_energy
from wattmesh.ledger.statement import StatementError, build_statement

AGENTS = ("h0", "h1", "h2", "h3")
TARIFF = GridTariff(300_000, 80_000)


def test_a_posting_must_balance() -> None:
    with pytest.raises(UnbalancedPosting, match="sum to 1"):
        Posting(1, "h0", Cause.GRID_PURCHASE, (Line("household/h0", 5), Line("grid", -4)))
    with pytest.raises(UnbalancedPosting, match="two lines"):
        Posting(1, "h0", Cause.GRID_PURCHASE, (Line("grid", 0),))


def test_hand_worked_postings() -> None:
    """h0 bought 1 kWh at 0.20 and used 1.5 kWh: 0.5 kWh from the grid at 0.30."""
    s = settle_flows(
        agent="h0",
        interval=7,
        import_wh=1_500,
        export_wh=0,
        fills=[Fill("h0", "h1", 1_000, 200_000, "B", "S")],
        tariff=TARIFF,
    )
    p2p, grid = settlement_postings(s)  # a buyer pays no fee beyond the fill's price
    assert p2p == Posting(
        7, "h0", Cause.P2P_TRADE, (Line("household/h0", 200_000), Line(MARKET_ACCOUNT, -200_000))
    )
    assert grid == Posting(
        7, "h0", Cause.GRID_PURCHASE, (Line("household/h0", 150_000), Line(GRID_ACCOUNT, -150_000))
    )
    seller = settle_flows(
        agent="h1",
        interval=7,
        import_wh=0,
        export_wh=1_200,
        fills=[Fill("h0", "h1", 1_000, 200_000, "B", "S")],
        tariff=TARIFF,
        network_fee_micro_per_kwh=10_000,
    )
    p2p, grid, fee = settlement_postings(seller, basis=Basis.ESTIMATED)
    assert p2p.amount_for("household/h1") == -200_000  # the seller receives the gross price
    assert (grid.cause, grid.amount_for("household/h1")) == (Cause.ESTIMATE, -16_000)
    # ... and pays the fee on its 1 kWh: it nets 1 kWh at 0.19.
    assert fee == Posting(
        7, "h1", Cause.NETWORK_FEE, (Line("household/h1", 10_000), Line(FEES_ACCOUNT, -10_000))
    )
    assert seller.cost_micro == -190_000 - 16_000
    assert (
        settlement_postings(
            settle_flows(agent="h2", interval=7, import_wh=0, export_wh=0, fills=[], tariff=TARIFF)
        )
        == []
    )  # nothing moved, nothing posted
    later = with_energy(seller, import_wh=0, export_wh=900, tariff=TARIFF)
    assert later.network_fee_micro == 10_000  # the fee is on the trade, not the meter
    (correction,) = correction_postings(seller, later)
    # 100 Wh short now: bought from the grid at retail instead of 200 Wh sold at feed-in.
    assert correction.cause is Cause.CORRECTION
    assert correction.amount_for("household/h1") == 30_000 + 16_000


def test_posting_json_round_trip_and_tampering() -> None:
    posting = Posting(7, "h0", Cause.CORRECTION, (Line("household/h0", -3), Line(GRID_ACCOUNT, 3)))
    obj = posting.to_json()
    assert Posting.from_json(obj) == posting
    obj["lines"][0]["amount_micro"] = -4
    with pytest.raises(UnbalancedPosting):
        Posting.from_json(obj)
    obj["lines"][0]["amount_micro"] = "-3"
    with pytest.raises(ValueError, match="integer"):
        Posting.from_json(obj)
    with pytest.raises(ValueError, match="malformed"):
        Posting.from_json({"interval": 7, "agent": "h0", "cause": "correction"})


fills = st.lists(
    st.builds(
        Fill,
        buyer=st.sampled_from(AGENTS),
        seller=st.sampled_from(AGENTS),
        quantity_wh=st.integers(1, 5_000),
        price_micro_per_kwh=st.integers(0, 600_000),
        buy_ref=st.just("B"),
        sell_ref=st.just("S"),
    ),
    max_size=6,
)
tariffs = st.integers(0, 300_000).flatmap(
    lambda feed_in: st.builds(GridTariff, st.integers(feed_in, 600_000), st.just(feed_in))
)
flows = st.integers(0, 20_000)


fees = st.one_of(st.just(0), st.integers(0, 50_000), st.integers(0, 700_000))


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[list[tuple[Settlement, Basis, list[Settlement]]], int]:
    """Intervals of settlements, each with a basis and later corrections, under a network
    fee per interval; and the fees the interval's fills owe (one rounding per fill)."""
    out = []
    owed = 0
    for interval in range(draw(st.integers(1, 4))):
        tariff = draw(tariffs)
        common = draw(fills)
        fee = draw(fees)
        owed += sum(network_fee_micro(f.quantity_wh, f.price_micro_per_kwh, fee) for f in common)
        for agent in AGENTS:
            s = settle_flows(
                agent=agent,
                interval=interval,
                import_wh=draw(flows),
                export_wh=draw(flows),
                fills=common,
                tariff=tariff,
                network_fee_micro_per_kwh=fee,
            )
            revisions = [
                with_energy(s, import_wh=draw(flows), export_wh=draw(flows), tariff=tariff)
                for _ in range(draw(st.integers(0, 2)))
            ]
            out.append((s, draw(st.sampled_from(Basis)), revisions))
    return out, owed


@settings(max_examples=100, deadline=None)
@given(drawn=ledgers())
def test_accounts_always_sum_to_zero(
    drawn: tuple[list[tuple[Settlement, Basis, list[Settlement]]], int],
) -> None:
    book, owed = drawn
    postings: list[Posting] = []
    for s, basis, revisions in book:
        postings += settlement_postings(s, basis=basis)
        before = s
        for after in revisions:
            postings += correction_postings(before, after)
            before = after
        # After every step, not only at the end.
        assert sum(balances(postings).values()) == 0
    for posting in postings:
        assert sum(line.amount_micro for line in posting.lines) == 0
    totals = balances(postings)
    assert sum(totals.values()) == 0
    final = {(s.agent, s.interval): (revs[-1] if revs else s) for s, _, revs in book}
    for agent in AGENTS:
        billed = sum(f.cost_micro for (a, _), f in final.items() if a == agent)
        assert totals[household_account(agent)] == billed  # the fee included
    assert totals[GRID_ACCOUNT] == -sum(f.grid_cost_micro for f in final.values())
    # The operator collects each fill's fee exactly once, from its seller.
    assert totals[FEES_ACCOUNT] == -sum(f.network_fee_micro for f in final.values()) == -owed
    # Every household of every interval was settled against the same fills: the
    # operator's market account, the counterparty of all P2P trades, nets to zero.
    assert totals[MARKET_ACCOUNT] == 0


names = st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True), st.text(max_size=12))
amounts = st.integers(-(2**53) + 1, 2**53 - 1)


@settings(max_examples=200, deadline=None)
@given(
    agent=names,
    account=names,
    amount=amounts,
    interval=st.integers(0, 2**40),
    cause=st.sampled_from(Cause),
    extra=st.dictionaries(names, st.one_of(st.none(), amounts, names), max_size=4),
)
def test_posting_bytes_are_rfc8785(
    agent: str, account: str, amount: int, interval: int, cause: Cause, extra: dict[str, Any]
) -> None:
    """Operator entries serialise (through the fast path) to exactly the RFC 8785 bytes."""
    posting = Posting(interval, agent, cause, (Line(account, amount), Line("grid", -amount)))
    obj = {"kind": "posting", **posting.to_json(), "extra": extra}
    assert canonical_bytes(obj) == rfc8785.dumps(obj)
    entry = posting_entry(posting)
    assert entry.data == rfc8785.dumps({"kind": "posting", **posting.to_json()})
    assert Posting.from_json(json.loads(entry.data)) == posting


def _revisions(fee: int) -> list[Revision]:
    """h0 buys 1 kWh from h1 at 0.20; both metered exactly as traded."""
    fill = Fill("h0", "h1", 1_000, 200_000, "B", "S")
    return [
        Revision(
            settle_flows(
                agent=a,
                interval=7,
                import_wh=i,
                export_wh=e,
                fills=[fill],
                tariff=TARIFF,
                network_fee_micro_per_kwh=fee,
            ),
            None,
            Basis.METERED,
            8,
            TARIFF,
        )
        for a, i, e in (("h0", 1_000, 0), ("h1", 0, 1_000))
    ]


def test_booking_charges_the_network_fee_to_the_seller() -> None:
    """The fill's price is what the buyer pays; the seller nets it minus the fee."""
    postings, entries = book(_revisions(12_345), [])
    (fee,) = [p for p in postings if p.cause is Cause.NETWORK_FEE]
    assert (fee.agent, fee.amount_for("household/h1"), fee.amount_for(FEES_ACCOUNT)) == (
        "h1",
        12_345,
        -12_345,
    )
    totals = balances(postings)
    assert sum(totals.values()) == 0 and totals[MARKET_ACCOUNT] == 0
    assert totals[household_account("h0")] == 200_000  # the price, nothing on top
    assert totals[household_account("h1")] == -(200_000 - 12_345)  # cost(1 kWh, p - f)
    parsed = [json.loads(e.data) for e in entries]
    (buyer,) = build_statement(parsed, household="h0").rows
    assert (buyer.fee_micro, buyer.cost_micro) == (0, 200_000)
    (seller,) = build_statement(parsed, household="h1").rows
    assert (seller.p2p_cost_micro, seller.fee_micro, seller.cost_micro) == (
        -200_000,
        12_345,
        -200_000 + 12_345,
    )
    # The settlement entry carries the fee, so the statement recomputes it.
    assert [obj.get("network_fee_micro") for obj in parsed if obj["kind"] == "settlement"] == [
        None,
        12_345,
    ]
    no_fee, no_fee_entries = book(_revisions(0), [])
    assert all(p.cause is not Cause.NETWORK_FEE for p in no_fee)
    assert all(b"network_fee" not in e.data for e in no_fee_entries)  # bytes as before fees


def test_a_statement_whose_fee_differs_from_its_postings_is_refused() -> None:
    _, entries = book(_revisions(12_345), [])
    parsed = [json.loads(e.data) for e in entries]
    for obj in parsed:
        if obj["kind"] == "settlement" and obj["agent"] == "h1":
            obj["network_fee_micro"] = 12_000
            obj["p2p_cost_micro"] += 345  # the same total cost, another fee
    with pytest.raises(StatementError, match="network fee 12000 differs"):
        build_statement(parsed, household="h1")
