"""``MarketOperator`` on an injected clock: which intervals it opens, skips, and when it
stops (real Mosquitto, SQLite and PostgreSQL; no households, so gates close at once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.lease import LeaseLost
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.ledger.operator import IntervalSummary, MarketOperator
from wattmesh.ledger.schedule import Schedule
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.store import LedgerStore

T = 1_796_140_800  # a multiple of 900
SCHEDULE = Schedule(interval_s=900, gate_timeout_s=120, grace_s=30)
TARIFFS = TariffSchedule.flat(GridTariff(300_000, 80_000))
KEY = SigningKey.generate()


class FakeClock:
    """Time moves only when the operator waits: to the instant it waits for."""

    def __init__(self, now_s: float) -> None:
        self.now = now_s
        self.waits: list[float] = []

    def now_s(self) -> float:
        return self.now

    async def sleep_until(self, epoch_s: float) -> None:
        self.waits.append(epoch_s)
        self.now = max(self.now, epoch_s)


class CountingLease:
    def __init__(self, lose_at: int | None = None) -> None:
        self.checks = 0
        self.lose_at = lose_at

    def check(self) -> None:
        self.checks += 1
        if self.checks == self.lose_at:
            raise LeaseLost("lost the database session")


@asynccontextmanager
async def _service(db_url: str, broker: BrokerAddress, market: str) -> AsyncIterator[LedgerService]:
    topics = Topics(market)
    store = LedgerStore(db_url)
    ledger = Ledger(store, market_id=market, operator_key=KEY)
    transport = Transport(
        TransportConfig(address=broker, client_id=f"{market}-op-{uuid.uuid4().hex[:6]}"),
        subscriptions=ledger_subscriptions(topics),
    )
    try:
        async with transport:
            await asyncio.wait_for(transport.wait_connected(), 10)
            yield LedgerService(ledger, OperatorConfig(topics), key=KEY, transport=transport)
    finally:
        store.close()


def _stop_after(n: int, stop: asyncio.Event) -> Callable[[IntervalSummary], None]:
    seen: list[IntervalSummary] = []

    def on_interval(summary: IntervalSummary) -> None:
        seen.append(summary)
        if len(seen) == n:
            stop.set()

    return on_interval


async def _run(
    service: LedgerService, clock: FakeClock, *, intervals: int, lease: CountingLease
) -> MarketOperator:
    stop = asyncio.Event()
    operator = MarketOperator(
        service,
        SCHEDULE,
        TARIFFS,
        clock=clock,
        lease=lease,
        on_interval=_stop_after(intervals, stop),
    )
    await asyncio.wait_for(operator.run(stop), 20)
    return operator


async def test_intervals_follow_the_clock_and_a_restart_skips_what_passed(
    db_url: str, mosquitto: BrokerAddress
) -> None:
    market = f"op-{uuid.uuid4().hex[:8]}"
    clock = FakeClock(T + 10)  # 10 s into an interval: within the grace, opened late
    lease = CountingLease()
    async with _service(db_url, mosquitto, market) as service:
        operator = await _run(service, clock, intervals=3, lease=lease)
    assert [s.interval for s in operator.summaries] == [T, T + 900, T + 1800]
    assert clock.waits == [T, T + 900, T + 1800]
    assert all(s.skipped == 0 and s.orders == 0 for s in operator.summaries)
    assert lease.checks == 6  # before each interval opens and before it is written

    # Restarted on the same database 60 s into a later interval (beyond the grace):
    # it resumes from the log after T + 1800 and waits for the next start.
    clock = FakeClock(T + 4 * 900 + 60)
    async with _service(db_url, mosquitto, market) as service:
        assert service.ledger.last_closed_interval == T + 1800
        operator = await _run(service, clock, intervals=1, lease=CountingLease())
    (summary,) = operator.summaries
    assert summary.interval == T + 5 * 900 and summary.skipped == 2  # T + 2700, T + 3600


@pytest.mark.parametrize(
    ("lose_at", "written"),
    [(3, [T]), (4, [T])],  # 3: before the second interval opens; 4: before it is written
)
async def test_a_lost_lease_stops_the_operator_before_it_writes_again(
    db_url: str, mosquitto: BrokerAddress, lose_at: int, written: list[int]
) -> None:
    clock = FakeClock(T)
    async with _service(db_url, mosquitto, f"op-{uuid.uuid4().hex[:8]}") as service:
        stop = asyncio.Event()
        lease = CountingLease(lose_at)
        operator = MarketOperator(service, SCHEDULE, TARIFFS, clock=clock, lease=lease)
        with pytest.raises(LeaseLost):
            await asyncio.wait_for(operator.run(stop), 20)
        assert [s.interval for s in operator.summaries] == written
        assert service.ledger.last_closed_interval == written[-1]
        size = service.ledger.size
    store = LedgerStore(db_url)
    try:
        assert store.size() == size  # nothing of the second interval reached the log
        assert max(e.interval for e in store.iter_entries()) == T
    finally:
        store.close()


async def test_stopping_while_waiting_for_the_next_interval_opens_nothing(
    db_url: str, mosquitto: BrokerAddress
) -> None:
    waiting = asyncio.Event()

    class StoppedClock(FakeClock):
        async def sleep_until(self, epoch_s: float) -> None:
            self.waits.append(epoch_s)
            waiting.set()
            await asyncio.Event().wait()  # the interval never comes: only stop ends this

    clock = StoppedClock(T + 100)
    async with _service(db_url, mosquitto, f"op-{uuid.uuid4().hex[:8]}") as service:
        stop = asyncio.Event()
        operator = MarketOperator(service, SCHEDULE, TARIFFS, clock=clock, lease=CountingLease())
        running = asyncio.create_task(operator.run(stop))
        await asyncio.wait_for(waiting.wait(), 10)
        stop.set()
        await asyncio.wait_for(running, 10)
    assert clock.waits == [T + 900] and operator.summaries == []
    assert service.ledger.last_closed_interval is None


async def test_an_interval_open_when_the_process_died_is_opened_again_within_the_grace(
    db_url: str, mosquitto: BrokerAddress
) -> None:
    market = f"op-{uuid.uuid4().hex[:8]}"
    store = LedgerStore(db_url)
    ledger = Ledger(store, market_id=market, operator_key=KEY)
    ledger.open_interval(T - 900, TARIFFS.at(T - 900))
    ledger.close_interval()
    ledger.open_interval(T, TARIFFS.at(T))  # then the process dies: nothing of T is logged
    store.close()
    clock = FakeClock(T + 20)  # restarted 20 s into T: within the 30 s grace
    async with _service(db_url, mosquitto, market) as service:
        assert service.ledger.last_closed_interval == T - 900
        operator = await _run(service, clock, intervals=1, lease=CountingLease())
    (summary,) = operator.summaries
    assert (summary.interval, summary.skipped) == (T, 0)
    assert clock.waits == [T]  # already started: no wait
