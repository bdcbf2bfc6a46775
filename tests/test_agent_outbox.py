"""The agent's outbox over real Mosquitto: backfill in order, outages, group commits."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.outagekit import INTERVAL, TIMEOUT_S, CountingMeter, Receiver, run_outage
from wattmesh.agents._outbox import Outbox
from wattmesh.agents._publisher import DurablePublisher
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.mosquitto import MosquittoProcess
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, TransportConfig


def _base(address: BrokerAddress) -> TransportConfig:
    return TransportConfig(
        address=address,
        client_id=f"agent-{uuid.uuid4().hex[:8]}",
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
    )


async def test_readings_taken_while_the_broker_is_down_are_backfilled_in_order_after_a_restart(
    tmp_path: Path,
) -> None:
    broker = MosquittoProcess(tmp_path / "mosquitto")  # not started: the broker is down
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    config = AgentConfig(agent_id="h001", topics=topics)
    key = SigningKey.generate()
    meter = CountingMeter()
    base = _base(broker.address)

    # First run: 20 readings, no broker; then the agent stops (all on disk).
    outbox = Outbox(tmp_path / "outbox.db")
    transport = agent_transport(config, base)
    async with transport, DurablePublisher(outbox, transport, commit_interval_s=0.05) as pub:
        agent = HouseholdAgent(config, key=key, transport=transport, meter=meter, publisher=pub)
        for _ in range(20):
            await agent.record_reading(INTERVAL)
        flushed = await pub.flush(0.2)
        assert not flushed  # nobody acknowledged anything
        assert pub.sent == 0
    outbox.close()

    # Second run (a restart) with the broker up: the backlog goes first, in order.
    await broker.start()
    try:
        receiver = Receiver(broker.address, topics, f"rx-{uuid.uuid4().hex[:8]}")
        async with receiver.transport:
            await asyncio.wait_for(receiver.transport.wait_connected(), TIMEOUT_S)
            receiving = asyncio.create_task(receiver.run())
            outbox = Outbox(tmp_path / "outbox.db")
            assert outbox.pending == 20
            transport = agent_transport(config, base)
            async with transport, DurablePublisher(outbox, transport) as pub:
                agent = HouseholdAgent(
                    config, key=key, transport=transport, meter=meter, publisher=pub
                )
                for _ in range(5):
                    await agent.record_reading(INTERVAL)
                await receiver.wait_for(25)
                assert await pub.flush(TIMEOUT_S)
            assert outbox.pending == 0
            outbox.close()
        await asyncio.wait_for(receiving, TIMEOUT_S)
    finally:
        await broker.stop()
    assert receiver.firsts == [("h001", seq) for seq in range(1, 26)]
    assert receiver.redeliveries == 0
    assert Outbox(tmp_path / "outbox.db").pending == 0  # the deletions were committed


async def test_a_burst_costs_one_commit_per_interval(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    config = AgentConfig(agent_id="h001", topics=topics)
    receiver = Receiver(mosquitto, topics, f"rx-{uuid.uuid4().hex[:8]}")
    async with receiver.transport:
        await asyncio.wait_for(receiver.transport.wait_connected(), TIMEOUT_S)
        receiving = asyncio.create_task(receiver.run())
        outbox = Outbox(tmp_path / "outbox.db")
        transport = agent_transport(config, _base(mosquitto))
        # An hour between commits: after the first (immediate) one, nothing more is
        # written until flush() forces it, however many messages arrive.
        async with transport, DurablePublisher(outbox, transport, commit_interval_s=3600) as pub:
            agent = HouseholdAgent(
                config,
                key=SigningKey.generate(),
                transport=transport,
                meter=CountingMeter(),
                publisher=pub,
            )
            await agent.record_reading(INTERVAL)
            await receiver.wait_for(1)
            assert outbox.commits == 1
            for _ in range(49):
                await agent.record_reading(INTERVAL)
            assert outbox.commits == 1
            # Staged only: none of the 49 is ready to publish before it is stored. (The
            # first may still be live: the receiver can have it before its PUBACK.)
            assert outbox.ready_after(1, 100) == []
            assert len(receiver.firsts) == 1
            assert await pub.flush(TIMEOUT_S)
            await receiver.wait_for(50)
        outbox.close()
    await asyncio.wait_for(receiving, TIMEOUT_S)
    assert outbox.commits == 3  # the first, the forced one, the acknowledgements' deletions
    assert receiver.firsts == [("h001", seq) for seq in range(1, 51)]


async def test_every_reading_arrives_once_in_order_while_mosquitto_is_killed_three_times(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    """10 readings/s for 15 s, three SIGKILLs of the broker (bench/ runs a minute)."""
    report = await run_outage(tmp_path, readings=150, kills=3)
    record_property("redeliveries", report.redeliveries)
    record_property("backlog_at_restart", report.backlog_at_restart)
    print(  # shown with -s or on failure: what "exactly once" had to absorb
        f"outage run: {report.readings} readings, {report.kills} kills, "
        f"{report.redeliveries} redeliveries, backlog at restarts {report.backlog_at_restart}"
    )
    assert report.firsts == [("h001", seq) for seq in range(1, 151)]
    assert report.mismatched == 0
    assert report.reconnects == 3
    assert report.dropped == 0
    # Readings really waited in the outbox during each outage and were backfilled.
    assert len(report.backlog_at_restart) == 3
    assert min(report.backlog_at_restart) >= 10


async def test_a_failed_outbox_surfaces_on_the_next_submit(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    config = _base(BrokerAddress("127.0.0.1", 1))  # never connects: nothing is sent
    transport = agent_transport(AgentConfig(agent_id="h001", topics=Topics("m1")), config)
    publisher = DurablePublisher(outbox, transport)
    refused = False

    async def scenario() -> None:
        nonlocal refused
        async with publisher:
            outbox._db.close()  # the disk went away under the committer
            await publisher.submit("t", lambda seq: b"x")
            done, _ = await asyncio.wait(
                publisher._tasks, timeout=TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            assert done
            with pytest.raises(sqlite3.ProgrammingError):
                await publisher.submit("t", lambda seq: b"y")
            refused = True

    async with transport:
        with pytest.raises(sqlite3.ProgrammingError):  # leaving re-raises it too
            await scenario()
    assert refused
    assert outbox.last_seq == 1  # the second message was not even numbered
