"""The signed status (agents/presence.py) and the topic classification of the
forecasting service: pure, no broker."""

from __future__ import annotations

import asyncio

from wattmesh.agents.presence import StatusSigner
from wattmesh.broker._transport_config import BrokerAddress
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Presence, ReadingBody, StatusBody, decode_message, sign_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Message, Transport, TransportConfig
from wattmesh.forecasting.service import ForecasterConfig, ForecastService

TOPICS = Topics("m1")


def test_each_connection_gets_an_online_and_a_will_with_rising_seqs_if_the_clock_steps_back() -> (
    None
):
    key = SigningKey.generate()
    now = [1_000]
    signer = StatusSigner(key, TOPICS, "h1", clock_us=lambda: now[0])
    first = signer.connect_messages()
    now[0] = 10  # the wall clock stepped back
    second = signer.connect_messages()
    seqs = []
    for messages in (first, second):
        assert messages.will is not None and messages.will.retain
        [(topic, online, qos, retain)] = messages.publish
        assert (
            (topic, qos, retain)
            == (TOPICS.status("h1"), 1, True)
            == (
                messages.will.topic,
                messages.will.qos,
                True,
            )
        )
        for wire, state in ((online, Presence.ONLINE), (messages.will.payload, Presence.OFFLINE)):
            message = decode_message(wire)
            message.verify(key.verifying)
            assert message.body_as(StatusBody) == StatusBody(state)
            assert (message.header.agent, message.header.market) == ("h1", "m1")
            seqs.append(message.header.seq)
    assert seqs == [1_000, 1_001, 1_002, 1_003]  # online N, will N + 1, per connection


async def test_the_forecaster_ignores_a_reading_on_a_topic_no_household_can_have() -> None:
    """A reading signed as agent "x y" on ``household/x y/reading``: forecast("x y")
    would raise; it is counted as bad_topic instead (no registry configured)."""
    key = SigningKey.generate()
    wire = sign_message(
        key,
        ReadingBody(900, 1, 0, 0, 0),
        market="m1",
        interval=900,
        agent="x y",
        seq=1,
        expires=1800,
    ).to_wire()
    transport = Transport(TransportConfig(BrokerAddress("127.0.0.1", 1), "unused"))
    service = ForecastService(
        ForecasterConfig(TOPICS, model="seasonal_naive"), key=key, transport=transport
    )
    try:
        await asyncio.wait_for(
            service.handle(Message("wattmesh/m1/household/x y/reading", wire, False)), 5
        )
    finally:
        service.close()
    assert service.ignored == {"bad_topic": 1}
