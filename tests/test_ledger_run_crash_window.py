"""``wattmesh ledger run`` dying between acknowledging a household's reading and keeping
it (docs/protocol.md, "Replay"): the reading is gone from the broker and the store,
the household's order (the next seq) waits in the ledger's persistent session, and the
standby that takes over admits the order first. The reading, sent again on the
reopened interval as an agent does, is admitted, not refused as a replay. Real
Mosquitto, SQLite, keys and processes (the leader SIGKILLs itself at that point:
:mod:`tests.flushkill`); the test waits for log lines, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from broker.transport import BrokerAddress, Transport, TransportConfig
from ledger.store import LedgerStore
from ledger.verify import verify_ledger
from tests.ledgerrunkit import ROOT, Households, LedgerProcess, Market, write_market

pytestmark = pytest.mark.slow

TIMEOUT_S = 30.0


def _kept(db_url: str, interval: int) -> int:
    """Messages the ledger keeps in its intake for ``interval``."""
    store = LedgerStore(db_url)
    try:
        return len(store.intake(interval))
    finally:
        store.close()


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``condition`` until it holds; TimeoutError after ``timeout_s``. For a state
    in another process's database, which no event here can follow."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (no event to wait on across processes)
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _households(market: Market, broker: BrokerAddress) -> AsyncIterator[Households]:
    transport = Transport(
        TransportConfig(address=broker, client_id=f"{market.topics.market_id}-households"),
        subscriptions=[(market.topics.announce, 1)],
    )
    async with transport:
        await asyncio.wait_for(transport.wait_connected(), TIMEOUT_S)
        houses = Households(market, transport)
        answering = asyncio.create_task(houses.run())
        try:
            yield houses
        finally:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)


async def _killed_before_keeping(agent: str, config: Path) -> LedgerProcess:
    """``ledger run`` that SIGKILLs itself before keeping ``agent``'s first reading."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.flushkill",
        agent,
        "ledger",
        "run",
        "--config",
        str(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    return LedgerProcess(process)


async def test_a_reading_the_dead_leader_acknowledged_and_never_kept_is_admitted_behind_its_order(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    market = write_market(
        tmp_path / "market",
        db_url=db_url,
        broker=mosquitto,
        interval_s=6,
        gate_timeout_s=6.0,
        grace_s=5.0,
        lease_poll_s=0.1,
    )
    topics = market.topics
    h003_link = Transport(
        TransportConfig(mosquitto, f"{topics.market_id}-h003"),
        subscriptions=[(topics.error("h003"), 1)],
    )
    async with _households(market, mosquitto) as households, h003_link as h003:
        await asyncio.wait_for(h003.wait_connected(), TIMEOUT_S)
        households.silent.add("h003")  # the test sends h003's messages itself
        leader = await _killed_before_keeping("h003", market.config)
        standby: LedgerProcess | None = None
        try:
            await leader.until("leader of market")
            standby = await LedgerProcess.start(market.config)
            await standby.until("standing by: another process leads this market")
            await asyncio.wait_for(households.opened.get(), TIMEOUT_S)  # maybe opened late
            interval = await asyncio.wait_for(households.opened.get(), TIMEOUT_S)  # at its start
            await _until(lambda: _kept(db_url, interval) == 4, TIMEOUT_S)  # h001's, h002's
            (reading_topic, reading), (order_topic, order) = households._sign("h003", interval)
            await h003.publish(reading_topic, reading, qos=1)  # seq 1
            await leader.until("flushkill: killed before keeping h003's reading")
            assert await asyncio.wait_for(leader.process.wait(), TIMEOUT_S) == -signal.SIGKILL
            assert _kept(db_url, interval) == 4  # acknowledged, never kept
            # The order (seq 2) while no ledger is connected: queued in its session.
            await h003.publish(order_topic, order, qos=1)
            await standby.until("leader of market")
            reopened = await asyncio.wait_for(households.opened.get(), TIMEOUT_S)
            assert reopened == interval, standby.lines  # opened again, within the grace
            # h003 sends both again, byte for byte, on the repeated open ("A repeated
            # open"): behind the queued order, so the reading comes with the lower seq.
            for topic, wire in ((reading_topic, reading), (order_topic, order)):
                await h003.publish(topic, wire, qos=1)
            summary = await standby.summary()
            assert int(summary["interval"]) == interval, standby.lines
            assert (summary["orders"], summary["readings"]) == ("3", "3"), standby.lines
            assert summary["rejected"] == "0", standby.lines
            assert summary["redelivered"] != "0"  # at least h003's order copy
            # A rejection would have been published before the summary line: a marker
            # sent now comes after it.
            await h003.publish(topics.error("h003"), b"marker", qos=1)
            first = await asyncio.wait_for(anext(h003.messages()), TIMEOUT_S)
            assert first.payload == b"marker"
            standby.process.send_signal(signal.SIGTERM)
            log = await standby.rest()
            assert await asyncio.wait_for(standby.process.wait(), TIMEOUT_S) == 0
        finally:
            for process in (leader, standby):
                if process is not None:
                    await process.kill()
    assert "Traceback" not in log
    store = LedgerStore(db_url)
    try:
        report = verify_ledger(store)
        assert report.ok, report.problem
        logged = store.message_entry("h003", 1)
        assert logged is not None and (logged.kind, logged.interval) == ("reading", interval)
        assert store.message_entry("h003", 2) is not None
    finally:
        store.close()
