"""The agent's clock check and diagnostics, over a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import uuid

from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.meter import MeterReading
from wattmesh.agents.sequence import MemorySequence
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    ForecastBody,
    OrderBody,
    Phase,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TIMEOUT_S = 10.0
NOW = 1_751_241_600  # the system clock in this test (epoch s); an interval start
STEP = 900


class SkewedMeter:
    """A meter whose clock runs ``skew_s`` ahead of the (fixed) system clock."""

    def __init__(self) -> None:
        self.skew_s = 0
        self.reads = 0

    async def read(self) -> MeterReading:
        self.reads += 1
        return MeterReading(NOW + self.skew_s + self.reads, self.reads, 0, 0, 0)


def _operator(topics: Topics, body: Body, interval: int, seq: int) -> bytes:
    return sign_message(
        OPERATOR,
        body,
        market=topics.market_id,
        interval=interval,
        agent="operator",
        seq=seq,
        expires=interval + STEP,
    ).to_wire()


OPERATOR = SigningKey.generate()


async def test_orders_are_refused_while_the_meter_clock_is_off_and_diagnostics_say_why(
    mosquitto: BrokerAddress,
) -> None:
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    config = AgentConfig(
        agent_id="h001",
        topics=topics,
        forecaster_key=OPERATOR.verifying,  # the stand-in forecaster signs with it
        max_clock_drift_s=300,
        diagnostics_interval_s=3600,
    )
    base = TransportConfig(address=mosquitto, client_id=f"agent-{uuid.uuid4().hex[:8]}")
    watch = Transport(
        TransportConfig(address=mosquitto, client_id=f"watch-{uuid.uuid4().hex[:8]}"),
        subscriptions=[(topics.all_orders, 1), (topics.diagnostics("h001"), 1)],
    )
    meter = SkewedMeter()
    async with watch, agent_transport(config, base) as transport:
        await asyncio.wait_for(watch.wait_connected(), TIMEOUT_S)
        inbox = watch.messages()
        agent = HouseholdAgent(
            config,
            key=SigningKey.generate(),
            transport=transport,
            meter=meter,
            sequence=MemorySequence(),
            wall_clock=lambda: NOW,
        )

        async def interval(start: int, seq: int) -> None:
            open_ = AnnouncementBody(Phase.OPEN, STEP, 300_000, 80_000)
            forecast = ForecastBody(start, STEP, (500,), (0,), "zero", None)
            await agent.handle(
                Message(topics.announce, _operator(topics, open_, start, seq), False)
            )
            await agent.handle(
                Message(topics.forecast("h001"), _operator(topics, forecast, start, seq + 1), False)
            )

        async def diagnostics() -> dict[str, object]:
            while True:
                message = await asyncio.wait_for(anext(inbox), TIMEOUT_S)
                if message.topic == topics.diagnostics("h001"):
                    report: dict[str, object] = json.loads(message.payload)
                    return report

        meter.skew_s = 3600  # the meter is an hour ahead: readings yes, orders no
        await interval(NOW, 1)
        assert agent.clock is not None
        assert not agent.clock.ok
        assert agent.orders_refused == 1
        report = await diagnostics()
        assert report["clock_ok"] is False
        assert report["clock_drift_s"] == 3601
        assert report["orders_refused"] == 1
        assert report["outbox_dropped"] == 0

        meter.skew_s = 0
        await interval(NOW + STEP, 3)
        assert agent.clock.ok
        # The first order on the bus is the second interval's: none was signed for the
        # first. The verdict changed, so diagnostics go out at once (within the hour).
        order: Message | None = None
        report = {}
        while order is None or not report:
            message = await asyncio.wait_for(anext(inbox), TIMEOUT_S)
            if message.topic == topics.order("h001") and order is None:
                order = message
            elif message.topic == topics.diagnostics("h001"):
                report = json.loads(message.payload)
        signed = decode_message(order.payload)
        assert isinstance(signed.body, OrderBody)
        assert signed.header.interval == NOW + STEP
        assert report["clock_ok"] is True
        assert report["clock_drift_s"] == 2  # the meter's reading counter adds 1 s per read
        assert agent.published == 3  # two readings, one order
