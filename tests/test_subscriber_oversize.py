"""Oversize messages and the size limits of each layer (broker/_mqtt_packets.py,
broker/subscriber.py, broker/mosquitto.py, broker/messages.py), against real Mosquitto:

- a PUBLISH above the subscriber's packet limit (a broker without the documented
  ``message_size_limit``) is skipped, acknowledged and counted, and the connection
  stays up: queued on a persistent session or retained, it is not a poison;
- Mosquitto as :mod:`broker.mosquitto` configures it refuses a payload above
  ``MAX_MESSAGE_BYTES`` itself, and lets one of exactly that size through to the
  subscriber and the ledger's decode, on the longest topic MQTT allows.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from wattmesh.broker._mqtt_packets import (
    MAX_PACKET_BYTES,
    MAX_TOPIC_BYTES,
    Oversize,
    PacketReader,
    Publish,
    publish_packet,
)
from wattmesh.broker._transport_config import Session
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    MAX_MESSAGE_BYTES,
    OrderBody,
    Side,
    decode_message,
    sign_message,
)
from wattmesh.broker.mosquitto import MosquittoProcess
from wattmesh.broker.subscriber import Subscriber
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TIMEOUT_S = 30.0
LIMIT = 64  # a small packet limit for the stream tests

_PUBLISHES = st.lists(
    st.tuples(
        st.sampled_from(["t", "a/b", "x" * 30]), st.integers(0, 200), st.sampled_from([0, 1])
    ),
    min_size=1,
    max_size=20,
)


@given(_PUBLISHES, st.lists(st.integers(0, 5_000), max_size=12))
def test_an_oversize_publish_is_reported_by_its_start_and_skipped_wherever_the_stream_is_cut(
    publishes: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    packets = [
        publish_packet(topic, bytes([size % 251]) * size, qos=qos, packet_id=n + 1, retain=False)
        for n, (topic, size, qos) in enumerate(publishes)
    ]
    stream = b"".join(packets)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    reader, out = PacketReader(limit=LIMIT), []
    for lo, hi in itertools.pairwise(bounds):
        out += reader.feed(stream[lo:hi])
        assert len(reader._buf) <= max(LIMIT, 2 + 30 + 2) + 5  # never the whole packet
    expected: list[Publish | Oversize] = []
    for n, (topic, size, qos) in enumerate(publishes):
        packet_id = n + 1 if qos else None
        body_length = 2 + len(topic) + (2 if qos else 0) + size
        if body_length > LIMIT:
            expected.append(Oversize(topic, qos, packet_id, body_length))
        else:
            expected.append(
                Publish(topic, bytes([size % 251]) * size, qos, False, False, packet_id)
            )
    assert out == expected


def test_the_packet_limit_leaves_room_for_the_longest_topic_and_a_packet_id() -> None:
    assert MAX_PACKET_BYTES == MAX_MESSAGE_BYTES + 2 + MAX_TOPIC_BYTES + 2
    packet = publish_packet(
        "t" * MAX_TOPIC_BYTES, b"p" * MAX_MESSAGE_BYTES, qos=1, packet_id=9, retain=True
    )
    [publish] = PacketReader().feed(packet)
    assert isinstance(publish, Publish) and len(publish.payload) == MAX_MESSAGE_BYTES


def _config(address: BrokerAddress, client_id: str, *, session: Session) -> TransportConfig:
    return TransportConfig(
        address, client_id, session=session, backoff_initial_s=0.05, backoff_max_s=0.2
    )


async def _next(messages: AsyncIterator[Message]) -> Message:
    return await asyncio.wait_for(anext(messages), TIMEOUT_S)


@pytest_asyncio.fixture
async def unlimited(tmp_path: Path) -> AsyncIterator[BrokerAddress]:
    """A private Mosquitto configured otherwise: no payload limit at all."""
    process = MosquittoProcess(tmp_path / "mosquitto", message_size_limit_bytes=0)
    await process.start()
    try:
        yield process.address
    finally:
        await process.stop()


async def test_an_oversize_message_queued_on_the_persistent_session_is_acked_and_skipped(
    unlimited: BrokerAddress,
) -> None:
    topic = f"t/{uuid.uuid4().hex}"
    config = _config(unlimited, "ingest", session=Session.PERSISTENT)
    async with Subscriber(config, [(topic, 1)]) as sub:
        await sub.wait_connected(TIMEOUT_S)
    async with Transport(TransportConfig(unlimited, "pub")) as pub:
        await pub.wait_connected()
        await pub.publish(topic, b"x" * MAX_PACKET_BYTES, qos=1)  # queued for "ingest"
        await pub.publish(topic, b"after", qos=1)
        async with Subscriber(config, [(topic, 1)]) as sub:
            assert await _next(sub.messages()) == Message(topic, b"after", False)
            await pub.publish(topic, b"still connected", qos=1)
            assert await _next(sub.messages()) == Message(topic, b"still connected", False)
            assert (sub.oversize, sub.connects, sub.protocol_errors) == (1, 1, 0)
    # Acknowledged: the session no longer holds it.
    async with Subscriber(config, [(topic, 1)]) as sub:
        await sub.wait_connected(TIMEOUT_S)
        async with Transport(TransportConfig(unlimited, "pub")) as pub:
            await pub.wait_connected()
            await pub.publish(topic, b"last", qos=1)
            assert await _next(sub.messages()) == Message(topic, b"last", False)
        assert sub.oversize == 0


async def test_a_retained_oversize_message_is_skipped_at_every_subscribe(
    unlimited: BrokerAddress,
) -> None:
    base = f"t/{uuid.uuid4().hex}"
    async with Transport(TransportConfig(unlimited, "pub")) as pub:
        await pub.wait_connected()
        await pub.publish(f"{base}/big", b"y" * (MAX_PACKET_BYTES + 10), qos=1, retain=True)
        for round_ in range(2):
            config = _config(unlimited, f"sub-{round_}", session=Session.CLEAN)
            async with Subscriber(config, [(f"{base}/#", 1)]) as sub:
                await sub.wait_connected(TIMEOUT_S)
                await pub.publish(f"{base}/small", b"ok", qos=1)
                assert await _next(sub.messages()) == Message(f"{base}/small", b"ok", False)
                assert (sub.oversize, sub.connects, sub.protocol_errors) == (1, 1, 0)


async def test_the_configured_broker_refuses_a_payload_over_the_limit_and_passes_one_at_it(
    mosquitto: BrokerAddress,
) -> None:
    """The session's Mosquitto is configured by broker.mosquitto (message_size_limit)."""
    key = SigningKey.generate()
    topic = f"t/{uuid.uuid4().hex}/" + "l" * (MAX_TOPIC_BYTES - 40)  # nearly the longest
    wire = sign_message(
        key, OrderBody(Side.BUY, 1, 1), market="m1", interval=900, agent="h1", seq=1, expires=1800
    ).to_wire()
    exact = wire + b" " * (MAX_MESSAGE_BYTES - len(wire))  # JSON whitespace: still valid
    config = _config(mosquitto, f"sub-{uuid.uuid4().hex[:8]}", session=Session.CLEAN)
    async with (
        Subscriber(config, [(topic, 1)]) as sub,
        Transport(TransportConfig(mosquitto, f"pub-{uuid.uuid4().hex[:8]}")) as pub,
    ):
        await sub.wait_connected(TIMEOUT_S)
        await pub.wait_connected()
        await pub.publish(topic, exact + b" ", qos=1)  # one byte over: the broker drops it
        await pub.publish(topic, exact, qos=1)
        got = await _next(sub.messages())
        assert (len(got.payload), sub.oversize, sub.connects) == (MAX_MESSAGE_BYTES, 0, 1)
    message = decode_message(got.payload)
    message.verify(key.verifying)
    assert message.body_as(OrderBody) == OrderBody(Side.BUY, 1, 1)
