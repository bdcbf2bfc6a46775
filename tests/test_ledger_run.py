"""``wattmesh ledger run`` end to end: real Mosquitto, SQLite and PostgreSQL, real keys.

Intervals of 2 s on the wall clock (4 s with real agents); the test's households
answer each announcement with signed messages, or real household agents do; the test
waits for the operator's log lines and what passes on the wire, never sleeps.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.ledgerrunkit import (
    BOOK,
    INTERVAL_S,
    SUMMARY,
    Households,
    LedgerProcess,
    Market,
    StandInForecaster,
    answering_households,
    household_agents,
    kept,
    poll_until,
    write_market,
)
from tests.wirekit import MqttTap
from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.messages import Presence, decode_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.cli import main
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.store import LedgerStore

pytestmark = pytest.mark.slow


@pytest.fixture
def market(
    tmp_path_factory: pytest.TempPathFactory, db_url: str, mosquitto: BrokerAddress
) -> Market:
    return write_market(tmp_path_factory.mktemp("market"), db_url=db_url, broker=mosquitto)


@pytest_asyncio.fixture
async def households(market: Market, mosquitto: BrokerAddress) -> AsyncIterator[Households]:
    async with answering_households(market, mosquitto, 10) as houses:
        yield houses


def _entries(db_url: str) -> list[tuple[int, str]]:
    store = LedgerStore(db_url)
    try:
        return [(e.interval, e.kind) for e in store.iter_entries()]
    finally:
        store.close()


def _verify(db_url: str, market: Market, capsys: pytest.CaptureFixture[str]) -> None:
    key = market.folder / "operator" / "public_key.pem"
    code = main(["ledger", "verify", "--db", db_url, "--operator-key", str(key)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    assert out.startswith("ok: ")


def _check_full_interval(summary: re.Match[str], previous: int | None) -> int:
    interval = int(summary["interval"])
    assert interval % INTERVAL_S == 0 and time.time() >= interval  # opened on the wall clock
    if previous is not None:  # consecutive, or the gap is reported as skipped
        assert int(summary["skipped"] or 0) == (interval - previous) // INTERVAL_S - 1
    return interval


async def test_intervals_close_on_the_wall_clock_and_sigterm_closes_the_open_gate(
    market: Market, households: Households, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    households.forger = "h002"  # each interval also brings one order with a bad signature
    ledger = await LedgerProcess.start(market.config)
    try:
        await ledger.until("leader of market")
        previous = None
        for _ in range(3):
            s = await ledger.summary()
            previous = _check_full_interval(s, previous)
            assert (s["orders"], s["readings"], s["households"]) == ("3", "3", "3")
            assert (s["trades"], s["volume"]) == ("1", "150") and s["price"] != "-"
            assert (s["rejected"], s["reasons"]) == ("1", "bad_signature 1")
        assert previous is not None
        # h003 falls silent, so the next gate waits for it; SIGTERM closes it at once.
        households.silent.add("h003")
        while (interval := await asyncio.wait_for(households.opened.get(), 10)) <= previous:
            pass
        assert {agent for agent, *_ in households.answered[interval]} == {"h001", "h002"}
        log = await ledger.stop(20)
    finally:
        await ledger.kill()
    assert f"stopping: closing the gate of interval {interval} now" in log
    assert "gate closed early on request" in log and "gate closed without" not in log
    assert f"interval {interval} (" in log and "stopped cleanly" in log
    assert "Traceback" not in log
    entries = _entries(db_url)
    cleared = [i for i, kind in entries if kind == EntryKind.CLEARING]
    assert cleared == sorted(set(cleared)) and cleared[-1] == interval
    orders = Counter(i for i, kind in entries if kind == EntryKind.ORDER)
    assert orders[interval] <= 2 and all(orders[i] == 3 for i in cleared[:-1])
    assert sum(kind == EntryKind.TRADE for _, kind in entries) >= 3
    _verify(db_url, market, capsys)


async def test_a_standby_process_takes_over_when_the_leader_is_killed(
    market: Market,
    households: Households,
    mosquitto: BrokerAddress,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    leader = await LedgerProcess.start(market.config)
    standby: LedgerProcess | None = None
    third: LedgerProcess | None = None
    try:
        await leader.until("leader of market")
        standby = await LedgerProcess.start(market.config)
        await standby.until("standing by: another process leads this market")
        previous = None
        for _ in range(2):
            previous = _check_full_interval(await leader.summary(), previous)
        assert previous is not None
        await leader.kill()  # SIGKILL: no clean disconnect, the lease dies with it
        # While no ledger is connected: h003 goes offline (not retained). The broker
        # queues it in the ledger's persistent session; the new leader gets it, so its
        # gates close without waiting for h003 at all.
        households.silent.add("h003")
        async with Transport(
            TransportConfig(address=mosquitto, client_id=f"{market.topics.market_id}-h003")
        ) as h003:
            await asyncio.wait_for(h003.wait_connected(), 10)
            offline = StatusSigner(market.keys["h003"], market.topics, "h003")
            await h003.publish(market.topics.status("h003"), offline.sign(Presence.OFFLINE), qos=1)
        await standby.until("leader of market")
        for _ in range(2):
            summary = await standby.summary()
            interval = int(summary["interval"])
            assert interval > previous and interval % INTERVAL_S == 0
            assert (summary["orders"], summary["readings"]) == ("2", "2")
            assert (summary["trades"], summary["volume"]) == ("1", "150")
            previous = interval
        # A third process stands by behind the new leader; SIGTERM there exits 0 at once.
        third = await LedgerProcess.start(market.config)
        await third.until("standing by: another process leads this market")
        assert "stopped while standing by" in await third.stop(20)
        log = await standby.stop(20)
    finally:
        for process in (leader, standby, third):
            if process is not None:
                await process.kill()
    assert "gate closed without" not in log and "Traceback" not in log
    entries = _entries(db_url)
    cleared = [i for i, kind in entries if kind == EntryKind.CLEARING]
    assert cleared == sorted(set(cleared)) and len(cleared) >= 4  # none twice, none lost
    # The new leader may clear more intervals while the third process comes and goes
    # (and SIGTERM closes an open one at once): the log ends with the last it reported.
    reported = [
        int(match["interval"])
        for line in standby.lines
        if (match := SUMMARY.fullmatch(line.partition("wattmesh.ledger.operator: ")[2]))
    ]
    assert previous in reported and cleared[-1] == reported[-1]
    _verify(db_url, market, capsys)


def _taken(tap: MqttTap, topics: Topics, interval: int) -> set[tuple[str, str]]:
    """(kind, agent) of the readings and orders of ``interval`` that a ledger connection
    through ``tap`` has acknowledged to the broker (which then forgets them)."""
    taken = set()
    for publish in tap.consumed():
        agent = topics.agent_of(publish.topic)
        if agent is None or publish.topic not in (topics.reading(agent), topics.order(agent)):
            continue
        message = decode_message(publish.payload)
        if message.header.interval == interval:
            taken.add((message.header.kind, agent))
    return taken


async def test_the_interval_a_killed_leader_had_collected_is_reopened_and_the_agents_resend_it(
    tmp_path: Path,
    mosquitto: BrokerAddress,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Real agents; the leader has acknowledged every reading and two of the orders of
    an interval when it is SIGKILLed, so the broker has forgotten them; the leader had
    kept them in its intake. The standby opens the interval again, admitting them from
    the intake; the agents send the very same bytes again (h003, whose forecast was
    held, only its reading: its order follows when its forecast comes), each copy a
    redelivery."""
    interval_s = 4  # room for the standby to take over within the grace
    async with MqttTap(mosquitto) as tap:  # both connections of each ledger pass here
        market = write_market(
            tmp_path / "market",
            db_url=db_url,
            broker=tap.address,
            interval_s=interval_s,
            gate_timeout_s=4.0,
            grace_s=3.0,
            lease_poll_s=0.1,
        )
        topics = market.topics
        forecaster = StandInForecaster(
            market,
            Transport(
                TransportConfig(address=mosquitto, client_id=f"{topics.market_id}-forecaster"),
                subscriptions=[(topics.all_readings, 1)],
            ),
            interval_s,
            held="h003",
        )
        leader = await LedgerProcess.start(market.config)
        standby: LedgerProcess | None = None
        try:
            await leader.until("leader of market")
            standby = await LedgerProcess.start(market.config)
            await standby.until("standing by: another process leads this market")
            async with household_agents(market, mosquitto, tmp_path, forecaster) as agents:
                # The second interval the agents trade: all three readings and the
                # orders of h001 and h002 taken by the leader; h003's order waits.
                everything_but = {("reading", a) for a, *_ in BOOK} | {
                    ("order", "h001"),
                    ("order", "h002"),
                }
                await tap.wait_until(
                    lambda: (
                        forecaster.holding is not None
                        and _taken(tap, topics, forecaster.holding) == everything_but
                    ),
                    30,
                )
                reopened = forecaster.holding
                assert reopened is not None
                # ... and kept them in its intake (once their batch was admitted).
                await poll_until(lambda: kept(db_url, reopened) == len(everything_but), 30)
                receipts = {
                    a: agent.audit.receipts_checked for a, agent in agents.items() if agent.audit
                }
                await leader.kill()  # SIGKILL: what it took is in its intake, not in the log
                await standby.until("leader of market")
                summary = await standby.summary()
                assert int(summary["interval"]) == reopened  # opened again, not skipped
                assert (summary["orders"], summary["readings"]) == ("3", "3")
                assert (summary["volume"], summary["rejected"]) == ("150", "0")
                # The five messages came from the intake; every agent's copy is a redelivery.
                assert summary["redelivered"] == "5"
                assert {a: agent.resent for a, agent in agents.items()} == {
                    "h001": 2,
                    "h002": 2,
                    "h003": 1,
                }

                # Each household's audit finds its messages in the reopened interval's
                # receipt (the receipts go out before the summary line).
                async def audited() -> None:
                    for agent_id, agent in agents.items():
                        audit = agent.audit
                        assert audit is not None
                        while audit.receipts_checked <= receipts[agent_id]:
                            agent.audited.clear()
                            await agent.audited.wait()

                await asyncio.wait_for(audited(), 10)
                alarms = {a: dict(agent.audit.alarms) for a, agent in agents.items() if agent.audit}
                assert alarms == {"h001": {}, "h002": {}, "h003": {}}
            log = await standby.stop(20)
        finally:
            for process in (leader, standby):
                if process is not None:
                    await process.kill()
    assert "Traceback" not in log and "gate closed without" not in log
    entries = _entries(db_url)
    logged = Counter(kind for interval, kind in entries if interval == reopened)
    assert (logged[EntryKind.READING], logged[EntryKind.ORDER]) == (3, 3)
    assert logged[EntryKind.CLEARING] == 1
    _verify(db_url, market, capsys)
