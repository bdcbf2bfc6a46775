"""A meter that fails for one interval does not stop the agent."""

from __future__ import annotations

import asyncio

from tests.test_homeassistant import ScriptedMeter
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.meter import MeterReading
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.sequence import MemorySequence
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Phase,
    ReadingBody,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TOPICS = Topics("mfail")


async def test_meter_error_skips_the_reading_and_the_agent_carries_on(
    mosquitto: BrokerAddress,
) -> None:
    operator = SigningKey.generate()
    config = AgentConfig(
        agent_id="h1",
        topics=TOPICS,
        forecaster_key=SigningKey.generate().verifying,  # orders wait for a forecast
        forecast_timeout_s=3600,
    )
    meter = ScriptedMeter([MeterError("P1 silent"), MeterReading(5, 700, 20, 0, 90)])
    viewer = Transport(
        TransportConfig(address=mosquitto, client_id="mfail-viewer"),
        subscriptions=[(TOPICS.reading("h1"), 1)],
    )
    base = TransportConfig(address=mosquitto, client_id="mfail-h1")
    async with viewer, agent_transport(config, base) as transport:
        await asyncio.wait_for(viewer.wait_connected(), 10)
        agent = HouseholdAgent(
            config,
            key=SigningKey.generate(),
            transport=transport,
            meter=meter,
            sequence=MemorySequence(),
        )
        for seq, interval in enumerate((1_764_600_000, 1_764_600_900), start=1):
            body = AnnouncementBody(Phase.OPEN, 900, 300_000, 80_000)
            wire = sign_message(
                operator,
                body,
                market="mfail",
                interval=interval,
                agent="operator",
                seq=seq,
                expires=interval + 900,
            ).to_wire()
            assert not await agent.handle(Message(TOPICS.announce, wire, retain=False))
        assert agent.meter_failures == 1 and agent.published == 1

        async def first() -> Message:
            async for message in viewer.messages():
                return message
            raise AssertionError("viewer closed")

        reading = decode_message((await asyncio.wait_for(first(), 10)).payload)
        assert reading.header.interval == 1_764_600_900
        assert isinstance(reading.body, ReadingBody) and reading.body.import_wh == 700
