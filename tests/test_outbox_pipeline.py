"""Pipelined backfill from the agent's outbox, watched on the wire (real Mosquitto).

An :class:`tests.wirekit.MqttTap` sits between the publisher and the broker: it sees
every PUBLISH in wire order and counts publishes whose PUBACK has not come back yet
(the publisher has at least that many unacknowledged messages out).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.outagekit import INTERVAL, TIMEOUT_S, CountingMeter, Receiver
from tests.wirekit import MqttTap
from wattmesh.agents._outbox import Outbox
from wattmesh.agents._publisher import DEFAULT_MAX_IN_FLIGHT, DurablePublisher
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import decode_message
from wattmesh.broker.mosquitto import MosquittoProcess, Persistence
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig

TOPIC = "test/outbox/pipeline"


def _config(address: BrokerAddress, max_inflight: int) -> TransportConfig:
    return TransportConfig(
        address=address,
        client_id=f"agent-{uuid.uuid4().hex[:8]}",
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        max_inflight=max_inflight,
    )


def _backlog(path: Path, count: int) -> Outbox:
    outbox = Outbox(path)
    for _ in range(count):
        outbox.add(TOPIC, lambda seq: str(seq).encode())
    outbox.commit()
    return outbox


def _numbers(count: int, start: int = 1) -> list[bytes]:
    return [str(seq).encode() for seq in range(start, start + count)]


async def test_a_backlog_drains_with_a_full_window_in_flight_in_sequence_order(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    outbox = _backlog(tmp_path / "outbox.db", 3000)
    async with MqttTap(mosquitto) as tap, Transport(_config(tap.address, 64)) as transport:
        async with DurablePublisher(outbox, transport, max_in_flight=64) as publisher:
            half_window = tap.outstanding_reached(32)
            await asyncio.wait_for(half_window.wait(), TIMEOUT_S)
            # Live messages submitted during the backfill go out behind the backlog.
            for _ in range(50):
                await publisher.submit(TOPIC, lambda seq: str(seq).encode())
            assert await publisher.flush(TIMEOUT_S)
        assert publisher.sent == 3050
    assert outbox.pending == 0
    outbox.close()
    assert len(tap.connections) == 1
    assert tap.payloads(TOPIC) == _numbers(3050)  # each once, in order
    assert tap.connections[0].acked == tap.connections[0].sent
    assert 32 <= tap.max_outstanding <= 64  # never more than the window


async def test_a_window_of_one_waits_for_every_puback(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    outbox = _backlog(tmp_path / "outbox.db", 300)
    async with (
        MqttTap(mosquitto) as tap,
        Transport(_config(tap.address, 64)) as transport,
        DurablePublisher(outbox, transport, max_in_flight=1) as publisher,
    ):
        assert await publisher.flush(TIMEOUT_S)
    outbox.close()
    assert tap.payloads(TOPIC) == _numbers(300)
    assert tap.max_outstanding == 1


async def test_the_mqtt_clients_own_limit_caps_the_window(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    """paho keeps at most TransportConfig.max_inflight on the wire (the lifecycle
    raises it to the window); the rest wait inside the client, still in order."""
    outbox = _backlog(tmp_path / "outbox.db", 1000)
    async with (
        MqttTap(mosquitto) as tap,
        Transport(_config(tap.address, 8)) as transport,
        DurablePublisher(outbox, transport, max_in_flight=64) as publisher,
    ):
        assert await publisher.flush(TIMEOUT_S)
    outbox.close()
    assert tap.payloads(TOPIC) == _numbers(1000)
    assert tap.max_outstanding <= 8


async def test_a_broker_kill_in_the_middle_of_a_window_loses_and_reorders_nothing(
    tmp_path: Path,
) -> None:
    """800 signed readings wait in the outbox. While they drain, the tap stops passing
    PUBACKs back: the broker has the whole window, the agent knows of none of it.
    Once the receiver (persistent session, the ledger's ingest) has every reading
    the broker got, Mosquitto is SIGKILLed with the full window unacknowledged. After
    the restart the receiver gets every seq, first copies in order, redeliveries
    byte-identical; on the wire the agent starts again at the first unacknowledged
    reading and counts up without a gap.

    (The swallowed PUBACKs make the kill hit a full window every time, and waiting
    for the receiver keeps out what a SIGKILL of Mosquitto loses by itself: messages
    it acknowledged but neither delivered nor saved. 800 stays below Mosquitto's
    default queue of 1,000 per client, which a subscriber in this same process can
    fall behind.)"""
    count = 800
    broker = MosquittoProcess(tmp_path / "mosquitto", persistence=Persistence.ON)
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    readings = topics.reading("h001")
    config = AgentConfig(agent_id="h001", topics=topics)
    key = SigningKey.generate()
    meter = CountingMeter()

    # The agent took the readings while the broker was down (all committed).
    outbox = Outbox(tmp_path / "outbox.db")
    offline = agent_transport(config, _config(broker.address, DEFAULT_MAX_IN_FLIGHT))
    async with offline, DurablePublisher(outbox, offline) as pub:
        agent = HouseholdAgent(config, key=key, transport=offline, meter=meter, publisher=pub)
        for _ in range(count):
            await agent.record_reading(INTERVAL)
    assert outbox.pending == count

    await broker.start()
    try:
        receiver = Receiver(broker.address, topics, f"rx-{uuid.uuid4().hex[:8]}")
        async with receiver.transport, MqttTap(broker.address) as tap:
            await asyncio.wait_for(receiver.transport.wait_connected(), TIMEOUT_S)
            receiving = asyncio.create_task(receiver.run())
            transport = agent_transport(config, _config(tap.address, DEFAULT_MAX_IN_FLIGHT))
            async with transport, DurablePublisher(outbox, transport) as publisher:
                await asyncio.wait_for(tap.outstanding_reached(32).wait(), TIMEOUT_S)
                tap.swallow_acks()
                # A full window now, not at some earlier moment: PUBACKs that passed
                # before the swallowing let the agent send more, and only once 64 are
                # out with none coming back is the first connection's list final.
                full = tap.outstanding_now(DEFAULT_MAX_IN_FLIGHT)
                await asyncio.wait_for(full.wait(), TIMEOUT_S)
                first = tap.connections[0]
                await receiver.wait_for(len(first.payloads(readings)))
                unacked_at_kill = tap.outstanding
                tap.refuse()  # the agent comes back after the receiver
                await broker.kill()
                await asyncio.wait_for(transport.wait_disconnected(), TIMEOUT_S)
                await broker.start()
                await asyncio.wait_for(receiver.transport.wait_connected(), TIMEOUT_S)
                await tap.listen()
                await receiver.wait_for(count)
                assert await publisher.flush(TIMEOUT_S)
            assert outbox.pending == 0
            outbox.close()
        await asyncio.wait_for(receiving, TIMEOUT_S)
    finally:
        await broker.stop()

    assert receiver.firsts == [("h001", seq) for seq in range(1, count + 1)]
    assert receiver.mismatched == 0
    assert receiver.redeliveries >= DEFAULT_MAX_IN_FLIGHT  # the window came again
    assert unacked_at_kill == DEFAULT_MAX_IN_FLIGHT  # the kill cut a full window

    first, *later = tap.connections
    sent_first = [decode_message(p).header.seq for p in first.payloads(readings)]
    acked_first = [decode_message(p.payload).header.seq for p in first.acked if p.topic == readings]
    assert sent_first == list(range(1, len(sent_first) + 1))
    assert acked_first == sent_first[: len(acked_first)]
    assert len(sent_first) == len(acked_first) + DEFAULT_MAX_IN_FLIGHT
    # After the kill (all later connections, in wire order): from the first
    # unacknowledged reading on, no gap, never backwards, each once.
    resent = [decode_message(p).header.seq for conn in later for p in conn.payloads(readings)]
    assert resent == list(range(len(acked_first) + 1, count + 1))


async def test_a_link_publish_cut_off_by_the_connection_is_not_retried_on_the_next(
    tmp_path: Path,
) -> None:
    broker = MosquittoProcess(tmp_path / "mosquitto")
    await broker.start()
    try:
        async with MqttTap(broker.address) as tap, Transport(_config(tap.address, 20)) as transport:
            link = await asyncio.wait_for(transport.link(), TIMEOUT_S)
            assert await link.publish(TOPIC, b"acknowledged")
            tap.swallow_acks()
            cut_off = asyncio.create_task(link.publish(TOPIC, b"cut off"))
            await asyncio.wait_for(tap.outstanding_reached(1).wait(), TIMEOUT_S)
            await broker.restart()
            assert await asyncio.wait_for(cut_off, TIMEOUT_S) is False
            assert link.lost
            assert await link.publish(TOPIC, b"on a lost link") is False
            again = await asyncio.wait_for(transport.link(), TIMEOUT_S)
            assert not again.lost
            assert await again.publish(TOPIC, b"next connection")
    finally:
        await broker.stop()
    assert [conn.payloads(TOPIC) for conn in tap.connections] == [
        [b"acknowledged", b"cut off"],
        [b"next connection"],
    ]
