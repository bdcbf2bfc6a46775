"""The receive-only MQTT client (broker/subscriber.py, broker/_mqtt_packets.py): packets
from a stream cut anywhere, and real Mosquitto: order, retained flag, persistent
session, a broker restart, a broker that sends garbage."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattmesh.broker._mqtt_packets import (
    Control,
    MqttProtocolError,
    PacketReader,
    Publish,
    connect_packet,
    puback_packet,
    publish_packet,
)
from wattmesh.broker._transport_config import Session
from wattmesh.broker.mosquitto import MosquittoProcess, Persistence
from wattmesh.broker.subscriber import Subscriber, SubscriberFailed
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TIMEOUT_S = 20.0


_PUBLISHES = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
        st.binary(max_size=400),
        st.sampled_from([0, 1]),
        st.integers(1, 0xFFFF),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
)


@given(_PUBLISHES, st.lists(st.integers(0, 20_000), max_size=12))
def test_packets_come_out_whole_whatever_pieces_the_stream_arrives_in(
    publishes: list[tuple[str, bytes, int, int, bool]], cuts: list[int]
) -> None:
    stream = b"".join(
        publish_packet(t, p, qos=q, packet_id=i, retain=r) for t, p, q, i, r in publishes
    )
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    reader, out = PacketReader(), []
    for lo, hi in itertools.pairwise(bounds):
        out += reader.feed(stream[lo:hi])
    expected = [Publish(t, p, q, r, False, i if q else None) for t, p, q, i, r in publishes]
    assert out == expected


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than four bytes"),
        (b"\x34\x05\x00\x01t\x00\x01", "QoS 2"),
        (b"\x62\x02\x00\x01", "unexpected packet type 6"),
        (b"\x31\x01\x00", "without a topic"),
        (b"\x32\x03\x00\x01t", "shorter than its topic and packet id"),
        (b"\x30\x04\x00\x02\xff\xfe", "not UTF-8"),
        (b"\xd1\x00", "reserved flags"),
    ],
)
def test_a_packet_a_subscriber_cannot_accept_is_named(stream: bytes, problem: str) -> None:
    with pytest.raises(MqttProtocolError, match=problem):
        PacketReader().feed(stream)


def test_control_packets_and_puback_encoding() -> None:
    assert PacketReader().feed(b"\x20\x02\x00\x00\xd0\x00") == [
        Control(2, b"\x00\x00"),
        Control(13, b""),
    ]
    assert puback_packet(0x1234) == b"\x40\x02\x12\x34"
    packet = connect_packet("c", keepalive_s=30, clean_session=False, username="u", password="p")
    assert packet[0] == 0x10 and packet[9] == 0xC0  # user name and password, no clean flag


def _config(address: BrokerAddress, client_id: str, *, session: Session) -> TransportConfig:
    # A buffer above every burst here: a full one stops reading, and a broker that
    # keeps Mosquitto's default queue (1,000 messages) drops QoS 1 messages beyond it.
    return TransportConfig(
        address,
        client_id,
        session=session,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        inbound_queue_size=10_000,
    )


async def _take(messages: AsyncIterator[Message], count: int) -> list[Message]:
    out: list[Message] = []
    async with asyncio.timeout(TIMEOUT_S):
        async for message in messages:
            out.append(message)
            if len(out) == count:
                return out
    return out


async def test_receives_every_qos1_message_in_order_with_the_retained_flag(
    mosquitto: BrokerAddress,
) -> None:
    base = f"t/{uuid.uuid4().hex}"
    pub_cfg = TransportConfig(mosquitto, f"pub-{uuid.uuid4().hex[:8]}")
    async with Transport(pub_cfg) as publisher:
        await publisher.wait_connected()
        await publisher.publish(f"{base}/state", b"retained", qos=1, retain=True)
        config = _config(mosquitto, f"sub-{uuid.uuid4().hex[:8]}", session=Session.CLEAN)
        async with Subscriber(config, [(f"{base}/#", 1)]) as sub:
            await sub.wait_connected(TIMEOUT_S)
            first = await _take(sub.messages(), 1)
            assert first == [Message(f"{base}/state", b"retained", True)]
            sent = [f"m{i:05d}".encode() * 20 for i in range(3000)]
            await asyncio.gather(*(publisher.publish(f"{base}/x", p, qos=1) for p in sent))
            got = await _take(sub.messages(), len(sent))
        await publisher.publish(f"{base}/state", b"", qos=1, retain=True)
    assert [m.payload for m in got] == sent
    assert {(m.topic, m.retain) for m in got} == {(f"{base}/x", False)}


async def test_a_persistent_session_gets_what_was_published_while_it_was_away(
    mosquitto: BrokerAddress,
) -> None:
    topic = f"t/{uuid.uuid4().hex}"
    config = _config(mosquitto, f"sub-{uuid.uuid4().hex[:8]}", session=Session.PERSISTENT)
    async with Subscriber(config, [(topic, 1)]) as sub:
        await sub.wait_connected(TIMEOUT_S)
    async with Transport(TransportConfig(mosquitto, f"pub-{uuid.uuid4().hex[:8]}")) as pub:
        await pub.wait_connected()
        for i in range(200):
            await pub.publish(topic, b"%d" % i, qos=1)
    async with Subscriber(config, [(topic, 1)]) as sub:
        got = await _take(sub.messages(), 200)
    assert [m.payload for m in got] == [b"%d" % i for i in range(200)]


async def test_reconnects_after_a_broker_restart_and_resubscribes(tmp_path: Path) -> None:
    process = MosquittoProcess(tmp_path / "mosquitto", persistence=Persistence.ON)
    await process.start()
    topic = "t/restart"
    config = _config(process.address, "ingest", session=Session.PERSISTENT)
    try:
        async with Subscriber(config, [(topic, 1)]) as sub:
            await sub.wait_connected(TIMEOUT_S)
            await process.kill()
            await process.start()
            await sub.wait_connected(TIMEOUT_S, connects=2)
            async with Transport(TransportConfig(process.address, "pub")) as pub:
                await pub.wait_connected()
                await pub.publish(topic, b"after", qos=1)
                got = await _take(sub.messages(), 1)
            assert got == [Message(topic, b"after", False)]
    finally:
        await process.stop()


async def test_a_broker_sending_garbage_is_dropped_counted_and_reconnected() -> None:
    """The subject is our handling of a misbehaving broker, so the broker is a fake: the
    first connection gets a CONNACK and then a packet type no broker sends a client;
    the second behaves and delivers one message."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read(1024)  # CONNECT
        writer.write(b"\x20\x02\x00\x00")
        await reader.read(1024)  # SUBSCRIBE, packet id 1
        if connections == 1:
            writer.write(b"\x90\x03\x00\x01\x01" + b"\x62\x02\x00\x01")  # SUBACK, PUBREL
        else:
            writer.write(
                b"\x90\x03\x00\x01\x01"
                + publish_packet("t", b"ok", qos=1, packet_id=7, retain=False)
            )
            assert await reader.readexactly(4) == puback_packet(7)
        await writer.drain()
        await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = _config(BrokerAddress("127.0.0.1", port), "c", session=Session.CLEAN)
    async with server, Subscriber(config, [("t", 1)]) as sub:
        got = await _take(sub.messages(), 1)
        assert got == [Message("t", b"ok", False)]
        # The first connection's SUBACK and PUBREL may arrive in one read, which then
        # fails as a whole: only the second connection counts as established.
        assert (sub.protocol_errors, connections) == (1, 2)
        assert sub.connects in (1, 2)


async def test_a_supervisor_dying_of_an_unexpected_error_ends_the_message_stream(
    mosquitto: BrokerAddress, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a reader waiting for ever on a dead connection: messages() raises, so the
    ledger's ingest ends and ``ledger run`` stops with exit 1 (test_ledger_run_hostile)."""

    async def broken(self: Subscriber) -> bool:
        raise RuntimeError("bug in the supervisor")

    monkeypatch.setattr(Subscriber, "_connect_and_serve", broken)
    config = _config(mosquitto, f"sub-{uuid.uuid4().hex[:8]}", session=Session.CLEAN)
    async with Subscriber(config, [("t/never", 1)]) as sub:
        with pytest.raises(SubscriberFailed, match="bug in the supervisor"):
            await asyncio.wait_for(anext(sub.messages()), TIMEOUT_S)
