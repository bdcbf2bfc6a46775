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
import signal
from pathlib import Path

import pytest

from tests.ledgerrunkit import (
    LedgerProcess,
    answering_households,
    assert_no_rejection,
    kept,
    poll_until,
    write_market,
)
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

pytestmark = pytest.mark.slow

TIMEOUT_S = 30.0


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
    async with answering_households(market, mosquitto) as households, h003_link as h003:
        await asyncio.wait_for(h003.wait_connected(), TIMEOUT_S)
        households.silent.add("h003")  # the test sends h003's messages itself
        leader = await LedgerProcess.start(market.config, module=("tests.flushkill", "h003"))
        standby: LedgerProcess | None = None
        try:
            await leader.until("leader of market")
            standby = await LedgerProcess.start(market.config)
            await standby.until("standing by: another process leads this market")
            await asyncio.wait_for(households.opened.get(), TIMEOUT_S)  # maybe opened late
            interval = await asyncio.wait_for(households.opened.get(), TIMEOUT_S)  # at its start
            await poll_until(lambda: kept(db_url, interval) == 4, TIMEOUT_S)  # h001's, h002's
            (reading_topic, reading), (order_topic, order) = households._sign("h003", interval)
            await h003.publish(reading_topic, reading, qos=1)  # seq 1
            await leader.until("flushkill: killed before keeping h003's reading")
            assert await asyncio.wait_for(leader.process.wait(), TIMEOUT_S) == -signal.SIGKILL
            assert kept(db_url, interval) == 4  # acknowledged, never kept
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
            await assert_no_rejection(h003, topics.error("h003"), TIMEOUT_S)
            log = await standby.stop(TIMEOUT_S)
        finally:
            for process in (leader, standby):
                if process is not None:
                    await process.kill()
    assert "Traceback" not in log
    store = LedgerStore(db_url)
    try:
        report = verify_ledger(store, market.operator.verifying)
        assert report.ok, report.problem
        logged = store.message_entry("h003", 1)
        assert logged is not None and (logged.kind, logged.interval) == ("reading", interval)
        assert store.message_entry("h003", 2) is not None
    finally:
        store.close()
