"""The network fee end to end on real SQLite and PostgreSQL: clearing, settlement
postings, the fee account, estimates and corrections, restart, and the statement.

Convention (docs/protocol.md, "Network fee"): a fill's price ``p`` is what the buyer
pays; the seller nets ``p - f``. The seller's settlement posts the gross P2P money and
then ``cost(q, p) - cost(q, p - f)`` per fill to ``operator/fees``, exactly the money
lines of the clearing (``ledger.mechanisms.line_items``).
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House, crossing_interval, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.ledger.accounts import (
    FEES_ACCOUNT,
    GRID_ACCOUNT,
    MARKET_ACCOUNT,
    Posting,
    household_account,
)
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.ledger import IntervalOutcome, Ledger
from wattmesh.ledger.mechanisms.base import MarketResult, MarketRules
from wattmesh.ledger.mechanisms.catalog import MECHANISMS, Mechanism
from wattmesh.ledger.mechanisms.line_items import Account, net_by_account, postings
from wattmesh.ledger.money import cost_micro, network_fee_micro
from wattmesh.ledger.statement import build_statement
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

MMR_FEE = Mechanism("mmr", MarketRules(network_fee_micro_per_kwh=20_000))


def _logged(ledger: Ledger) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in ledger.store.iter_entries()]


def _balances(ledger: Ledger) -> Counter[str]:
    totals: Counter[str] = Counter()
    for obj in _logged(ledger):
        if obj["kind"] == EntryKind.POSTING:
            for line in Posting.from_json(obj).lines:
                totals[line.account] += line.amount_micro
    return totals


def _clearing_lines(ledger: Ledger, outcome: IntervalOutcome) -> dict[str, int]:
    """The clearing's own money lines for the local fills (the mechanism's module)."""
    fee = ledger.mechanism.rules.network_fee_micro_per_kwh
    result = MarketResult(ledger.mechanism.name, None, outcome.clearing.fills, (), fee)
    net = net_by_account(postings(result))
    out = {agent: v for (account, agent), v in net.items() if account is Account.HOUSEHOLD}
    out["operator"] = net[(Account.OPERATOR, "")]
    return out


def test_mmr_with_a_fee_settles_the_fee_with_the_seller(db_url: str) -> None:
    """a sells 500 Wh at 0.10, b buys 300 at 0.25, c buys 400 at 0.20; fee 0.02 per kWh.

    MMR: p = (R + F + f) / 2 = 0.20; b and c share a's 500 Wh pro rata (214, 286)."""
    operator = SigningKey.generate()
    ledger, houses = crossing_interval(db_url, operator, MMR_FEE)
    cleared = ledger.close_interval()
    assert [(f.buyer, f.quantity_wh, f.price_micro_per_kwh) for f in cleared.clearing.fills] == [
        ("b", 214, 200_000),
        ("c", 286, 200_000),
    ]
    clearing = next(o for o in _logged(ledger) if o["kind"] == EntryKind.CLEARING)
    assert clearing["network_fee_micro_per_kwh"] == 20_000

    # The ledger restarts between clearing and settlement: the fee comes from the
    # mechanism recorded with the store, the fills from the log.
    root = ledger.root
    ledger.store.close()
    ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator, mechanism=MMR_FEE)
    assert ledger.root == root
    houses["a"].meter(export_wh=500)
    houses["b"].meter(import_wh=300)  # 214 Wh from a, 86 from the grid
    houses["c"].meter(import_wh=400)
    ledger.open_interval(T0 + STEP, TARIFF, trading=False)
    for house in houses.values():
        ledger.ingest(house.reading(T0 + STEP))
    settled = ledger.close_interval()
    bills = {s.agent: s for s in settled.settlements}
    # a: gross 42,800 + 57,200 = 100,000; fee 4,280 + 5,720 = 10,000 = 500 Wh at 0.02.
    assert (bills["a"].p2p_cost_micro, bills["a"].network_fee_micro) == (-100_000, 10_000)
    assert bills["a"].cost_micro == -cost_micro(500, 180_000)  # nets p - f
    assert (bills["b"].network_fee_micro, bills["b"].cost_micro) == (0, 42_800 + 25_800)
    assert (bills["c"].network_fee_micro, bills["c"].cost_micro) == (0, 57_200 + 34_200)
    fee_postings = [p for p in settled.postings if p.cause.value == "network_fee"]
    assert [(p.agent, p.amount_for(FEES_ACCOUNT)) for p in fee_postings] == [("a", -10_000)]

    totals = _balances(ledger)
    assert sum(totals.values()) == 0
    assert totals[MARKET_ACCOUNT] == 0 and totals[FEES_ACCOUNT] == -10_000
    assert totals[GRID_ACCOUNT] == -(25_800 + 34_200)
    # Clearing, settlement and postings agree exactly (metered = traded + grid rests).
    lines = _clearing_lines(ledger, cleared)
    for agent, bill in bills.items():
        assert bill.p2p_cost_micro + bill.network_fee_micro == lines[agent]
        assert totals[household_account(agent)] == bill.cost_micro
    assert lines["operator"] == totals[FEES_ACCOUNT]
    # The statement shows the fee and reconciles with the postings.
    logged = _logged(ledger)
    statement = build_statement(logged, household="a")
    (row,) = statement.rows
    assert (row.fee_micro, row.cost_micro, row.posted_micro) == (10_000, -90_000, -90_000)
    assert statement.totals()["fee_micro"] == 10_000
    settlement = next(o for o in logged if o["kind"] == "settlement" and o["agent"] == "a")
    assert settlement["network_fee_micro"] == 10_000
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    ledger.store.close()


def test_a_correction_keeps_the_fee_of_an_estimated_settlement(db_url: str) -> None:
    """The fee is on the traded energy: an estimate and its correction carry the same fee,
    and the correction posts only the grid difference."""
    operator = SigningKey.generate()
    mechanism = Mechanism("uniform", MarketRules(network_fee_micro_per_kwh=10_000))
    a, b = House("a"), House("b")
    ledger = new_ledger(db_url, operator, (a, b), mechanism=mechanism)
    ledger.open_interval(T0, TARIFF)
    for house in (a, b):
        ledger.ingest(house.reading(T0))
    ledger.ingest(a.order(T0, Side.SELL, 1_000, 100_000))
    ledger.ingest(b.order(T0, Side.BUY, 1_000, 250_000))
    cleared = ledger.close_interval()
    # Gross ask 110k, bid 250k: the k = 1/2 price is 180k; a nets 170k.
    assert cleared.clearing.price_micro_per_kwh == 180_000
    a.meter(export_wh=700)  # a under-delivers by 300 Wh: bought back at retail
    b.meter(import_wh=1_000)
    held = a.reading(T0 + STEP)
    ledger.open_interval(T0 + STEP, TARIFF, trading=False)
    ledger.ingest(b.reading(T0 + STEP))
    estimated = {s.agent: s for s in ledger.close_interval().settlements}
    assert (estimated["a"].sold_wh, estimated["a"].network_fee_micro) == (1_000, 10_000)
    assert estimated["a"].export_wh == 1_000  # the traded position stands in
    ledger.open_interval(T0 + 2 * STEP, TARIFF, trading=False)
    ledger.ingest(held, topic_agent="a")
    corrected = ledger.close_interval()
    (revision,) = corrected.revisions
    assert revision.before == estimated["a"]
    assert (revision.after.export_wh, revision.after.network_fee_micro) == (700, 10_000)
    assert [p.cause.value for p in corrected.postings] == ["correction"]
    totals = _balances(ledger)
    assert totals[household_account("a")] == -180_000 + 10_000 + 90_000
    assert totals[household_account("b")] == 180_000
    assert (totals[FEES_ACCOUNT], totals[MARKET_ACCOUNT], sum(totals.values())) == (-10_000, 0, 0)
    (row,) = build_statement(_logged(ledger), household="a").rows
    assert (row.basis, row.corrections, row.fee_micro, row.cost_micro) == (
        "metered",
        1,
        10_000,
        -80_000,
    )
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    ledger.store.close()


# --- property test: random books, fees and meters, each example on its own database ---


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_db(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases (one per hypothesis example)."""
    if request.param == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield lambda: f"sqlite:///{Path(tmp) / uuid.uuid4().hex}.db"
        return
    import psycopg

    server: str = request.getfixturevalue("pg_server_url")
    admin = server.replace("postgresql+psycopg://", "postgresql://")
    made: list[str] = []

    def make() -> str:
        name = f"wattmesh_fee_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        parts = urlsplit(server)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))

    try:
        yield make
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


AGENTS = ("h0", "h1", "h2", "h3")
orders = st.tuples(st.sampled_from(Side), st.integers(0, 3_000), st.integers(0, 400_000))


@st.composite
def markets(draw: st.DrawFn) -> dict[str, Any]:
    feed_in = draw(st.integers(0, 150_000))
    return {
        "mechanism": Mechanism(
            draw(st.sampled_from(sorted(MECHANISMS))),
            MarketRules(
                network_fee_micro_per_kwh=draw(
                    st.one_of(st.just(1), st.integers(0, 60_000), st.integers(0, 300_000))
                )
            ),
        ),
        "tariff": GridTariff(draw(st.integers(feed_in, 350_000)), feed_in),
        "orders": {a: draw(orders) for a in AGENTS},
        "deviation": {a: draw(st.integers(-400, 400)) for a in AGENTS},
        "held": draw(st.sets(st.sampled_from(AGENTS))),  # closing reading backfilled later
    }


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(market=markets())
def test_fees_balance_respect_limits_and_reconcile(
    new_db: Callable[[], str], market: dict[str, Any]
) -> None:
    """With any mechanism and fee: the accounts sum to zero, the operator collects the
    clearing's fee lines, no buyer pays above its limit and no seller nets below its
    limit (fee included), and every statement reconciles with the postings."""
    mechanism, tariff = market["mechanism"], market["tariff"]
    fee = mechanism.rules.network_fee_micro_per_kwh
    houses = {a: House(a) for a in AGENTS}
    ledger = new_ledger(new_db(), SigningKey.generate(), houses.values(), mechanism=mechanism)
    ledger.open_interval(T0, tariff)
    for agent, house in houses.items():
        side, quantity, price = market["orders"][agent]
        ledger.ingest(house.reading(T0))
        ledger.ingest(house.order(T0, side, quantity, price))
    cleared = ledger.close_interval()
    fills = cleared.clearing.fills
    held = {}
    for agent, house in houses.items():
        traded = sum(f.quantity_wh for f in fills if f.buyer == agent) - sum(
            f.quantity_wh for f in fills if f.seller == agent
        )
        net = traded + market["deviation"][agent]
        house.meter(import_wh=max(net, 0), export_wh=max(-net, 0))
        held[agent] = house.reading(T0 + STEP)
    ledger.open_interval(T0 + STEP, tariff, trading=False)
    for agent in sorted(set(AGENTS) - market["held"]):
        ledger.ingest(held[agent])
    ledger.close_interval()
    ledger.open_interval(T0 + 2 * STEP, tariff, trading=False)
    for agent in sorted(market["held"]):
        ledger.ingest(held[agent], topic_agent=agent)  # backfills: corrections
    ledger.close_interval()

    logged = _logged(ledger)
    totals = _balances(ledger)
    assert sum(totals.values()) == 0
    assert totals[MARKET_ACCOUNT] == 0  # every household was settled
    owed = sum(network_fee_micro(f.quantity_wh, f.price_micro_per_kwh, fee) for f in fills)
    assert totals[FEES_ACCOUNT] == -owed == _clearing_lines(ledger, cleared)["operator"]
    assert owed >= 0 and (owed == 0 or fee > 0)
    lines = _clearing_lines(ledger, cleared)
    retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
    for agent in AGENTS:
        side, _, price = market["orders"][agent]
        statement = build_statement(logged, household=agent)  # raises if it does not reconcile
        (row,) = [r for r in statement.rows if r.interval == T0]
        p2p = row.p2p_cost_micro + row.fee_micro
        assert p2p == lines.get(agent, 0)  # exactly the clearing's money lines
        mine = [f for f in fills if agent in (f.buyer, f.seller)]
        if side is Side.BUY:
            assert row.fee_micro == 0
            limit = min(price, retail)
            assert p2p <= sum(cost_micro(f.quantity_wh, limit) for f in mine)
        else:
            limit = max(price, feed_in)
            assert -p2p >= sum(cost_micro(f.quantity_wh, limit) for f in mine)
            assert all(f.price_micro_per_kwh - fee >= limit for f in mine)
        totals_row = statement.totals()
        assert totals_row["cost_micro"] == totals_row["posted_micro"]
        assert totals_row["posted_micro"] == totals[household_account(agent)]
        assert row.basis == "metered"  # backfills made every estimate exact
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    ledger.store.close()
