"""Floods on a household's topics (issue 11, finding 6), against a real Mosquitto.

A ``wattmesh ledger run`` process, three households answering each announcement, and
one client that publishes junk on a registered household's order topic and audit
requests on its audit topic as fast as it can: every household is logged in every
interval, what the operator sends back to that household stays within its rate
limit, the ledger logs one line per (household, reason) and interval, and the summary
lines count everything. And, on an injected clock, a rejection between a close and
the next open is counted in the next interval's summary line.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.ledgerrunkit import (
    Households,
    LedgerProcess,
    Market,
    answering_households,
    write_market,
)
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger._responder import RESPONSE_BURST, RESPONSES_PER_S
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.ledger.operator import IntervalSummary, MarketOperator
from wattmesh.ledger.schedule import Schedule
from wattmesh.ledger.service import LedgerService, OperatorConfig
from wattmesh.ledger.store import LedgerStore

pytestmark = pytest.mark.slow

FLOODED = "h002"  # a registered household: its topics get the junk
WINDOW = 200  # flood publishes in flight at a time


@pytest.fixture
def market(tmp_path_factory: pytest.TempPathFactory, mosquitto: BrokerAddress) -> Market:
    folder = tmp_path_factory.mktemp("market")
    return write_market(folder, db_url=f"sqlite:///{folder / 'ledger.db'}", broker=mosquitto)


@pytest_asyncio.fixture
async def households(market: Market, mosquitto: BrokerAddress) -> AsyncIterator[Households]:
    async with answering_households(market, mosquitto, 10) as houses:
        yield houses


class Flooder:
    """Junk orders and 17-byte audit requests on one household's topics, QoS 1, as fast
    as one client can, until stopped."""

    def __init__(self, transport: Transport, topics: Topics) -> None:
        self.transport = transport
        self.topics = topics
        self.junk = 0
        self.audits = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        order, audit = self.topics.order(FLOODED), self.topics.audit_request(FLOODED)
        while not self.stop.is_set():
            sends = []
            for n in range(WINDOW):
                if n % 4 == 3:  # a quarter audit requests, valid ones
                    sends.append(self.transport.publish(audit, b'{"from_size": 1}', qos=1))
                    self.audits += 1
                else:
                    sends.append(self.transport.publish(order, b"junk %d" % n, qos=1))
                    self.junk += 1
            await asyncio.gather(*sends)


async def test_a_flood_on_a_households_topics_delays_nobody_and_gets_few_answers(
    market: Market, households: Households, mosquitto: BrokerAddress
) -> None:
    topics = market.topics
    client = f"{topics.market_id}-flooder"
    flood = Transport(TransportConfig(address=mosquitto, client_id=client))
    replies = Transport(
        TransportConfig(address=mosquitto, client_id=f"{client}-replies"),
        subscriptions=[(topics.error(FLOODED), 1), (topics.checkpoint_reply(FLOODED), 1)],
    )
    received: Counter[str] = Counter()
    arrived = asyncio.Event()

    async def count_replies() -> None:
        async for message in replies.messages():
            received[message.topic] += 1
            arrived.set()

    ledger = await LedgerProcess.start(market.config)
    try:
        async with flood, replies:
            await asyncio.wait_for(
                asyncio.gather(flood.wait_connected(), replies.wait_connected()), 10
            )
            counting = asyncio.create_task(count_replies())
            await ledger.summary()  # one quiet interval first
            flooder = Flooder(flood, topics)
            started = time.monotonic()
            flooding = asyncio.create_task(flooder.run())
            summaries = [await ledger.summary() for _ in range(3)]
            flooder.stop.set()
            await asyncio.wait_for(flooding, 30)
            # Two more: what the ledger still had of the flood is judged and counted.
            summaries += [await ledger.summary() for _ in range(2)]
            responses = sum(int(s["responses"]) for s in summaries)
            async with asyncio.timeout(10):  # every response counted has been delivered
                while received.total() < responses:
                    arrived.clear()
                    await arrived.wait()
            elapsed_s = time.monotonic() - started
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)
    finally:
        await ledger.kill()

    assert flooder.junk >= 1000 and flooder.audits >= 300, (flooder.junk, flooder.audits)
    for s in summaries:  # nobody missed an interval, also while the flood went on
        assert (s["orders"], s["readings"], s["households"]) == ("3", "3", "3"), s.group(0)
    # What the flooded household got back: within its bucket, all of it counted.
    assert received.total() == responses
    assert responses <= RESPONSE_BURST + RESPONSES_PER_S * elapsed_s, (responses, elapsed_s)
    assert received[topics.checkpoint_reply(FLOODED)] <= len(summaries) + 1  # one a checkpoint
    rejected = sum(int(s["rejected"]) for s in summaries)
    assert rejected == flooder.junk
    assert all(s["reasons"] in (None, f"malformed_json {s['rejected']}") for s in summaries)
    limited = sum(int(s["limited"]) for s in summaries)
    dropped = sum(int(s["dropped"]) for s in summaries)
    ignored = sum(int(s["audit_ignored"]) for s in summaries)
    assert ignored == 0  # valid requests: answered once a checkpoint, the rest limited
    assert responses + limited + dropped == flooder.junk + flooder.audits
    # One line per (household, reason) and interval, not one per message.
    lines = [line for line in ledger.lines if f"rejected message from {FLOODED}" in line]
    assert 1 <= len(lines) <= len(summaries) + 1, len(lines)
    assert not any("ignored audit request" in line for line in ledger.lines)


T = 1_796_140_800  # a multiple of 900


class HeldClock:
    """Time moves when the operator waits, to the instant it waits for; the wait for
    ``held`` returns only once the test lets it."""

    def __init__(self, now_s: float, held: int) -> None:
        self.now = now_s
        self.held = held
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    def now_s(self) -> float:
        return self.now

    async def sleep_until(self, epoch_s: float) -> None:
        if epoch_s == self.held:
            self.waiting.set()
            await self.release.wait()
        self.now = max(self.now, epoch_s)


class AnyLease:
    def check(self) -> None:
        pass


async def test_a_rejection_between_intervals_is_in_the_next_summary(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    market = f"between-{uuid.uuid4().hex[:8]}"
    topics = Topics(market)
    key = SigningKey.generate()
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger(store, market_id=market, operator_key=key)
    transport = Transport(
        TransportConfig(address=mosquitto, client_id=f"{market}-ledger"),
        subscriptions=[(topics.all_orders, 1)],
    )
    stranger = Transport(TransportConfig(address=mosquitto, client_id=f"{market}-stranger"))
    clock = HeldClock(T, held=T + 900)
    stop = asyncio.Event()
    summaries: list[IntervalSummary] = []

    def on_interval(summary: IntervalSummary) -> None:
        summaries.append(summary)
        if len(summaries) == 2:
            stop.set()

    try:
        async with transport, stranger:
            await asyncio.wait_for(
                asyncio.gather(transport.wait_connected(), stranger.wait_connected()), 10
            )
            service = LedgerService(ledger, OperatorConfig(topics), key=key, transport=transport)
            operator = MarketOperator(
                service,
                Schedule(interval_s=900, gate_timeout_s=120, grace_s=30),
                TariffSchedule.flat(GridTariff(300_000, 80_000)),
                clock=clock,
                lease=AnyLease(),
                on_interval=on_interval,
            )
            ingest = asyncio.create_task(service.run_ingest())
            running = asyncio.create_task(operator.run(stop))
            await asyncio.wait_for(clock.waiting.wait(), 20)  # T closed, T + 900 not open
            assert [s.interval for s in summaries] == [T]
            await stranger.publish(topics.order("stranger"), b"junk", qos=1)
            await service.wait_until(lambda: ledger.rejections.total() == 1, 10)
            clock.release.set()
            await asyncio.wait_for(running, 20)
            ingest.cancel()
            await asyncio.gather(ingest, return_exceptions=True)
    finally:
        store.close()
    assert [s.interval for s in summaries] == [T, T + 900]
    assert summaries[0].rejections == {}
    assert summaries[1].rejections == {"malformed_json": 1}
