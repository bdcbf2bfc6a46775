"""What the agent acts on, over a real Mosquitto (issue 11, finding 4): forecasts only
when the forecasting service's key signed them (none configured: none of its),
rejections only when the operator signed them; orders never beyond the connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.meter import MeterReading
from wattmesh.agents.sequence import MemorySequence
from wattmesh.broker.errors import RejectReason
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    ForecastBody,
    OrderBody,
    Phase,
    ReadingBody,
    RejectionBody,
    Side,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TIMEOUT_S = 10.0
STEP = 20
T = 1_751_241_600
AGENT = "h001"
OPERATOR = SigningKey.generate()
FORECASTER = SigningKey.generate()
GIGA_WH = 9_000_000  # the forged forecast: 9,000,000 Wh in one 20 s interval


class StepMeter:
    async def read(self) -> MeterReading:
        return MeterReading(T, 0, 0, 0, 0)


def signed(
    key: SigningKey, body: Body, market: str, *, agent: str, seq: int, interval: int = T
) -> bytes:
    return sign_message(
        key, body, market=market, interval=interval, agent=agent, seq=seq, expires=T + STEP
    ).to_wire()


@dataclass
class Scene:
    topics: Topics
    agent: HouseholdAgent
    operator: Transport
    inbox: AsyncIterator[Message]  # the agent's readings and orders

    @property
    def market(self) -> str:
        return self.topics.market_id

    async def send(self, topic: str, wire: bytes) -> None:
        await self.operator.publish(topic, wire, qos=1)

    async def open_interval(self) -> ReadingBody:
        body = AnnouncementBody(Phase.OPEN, STEP, 300_000, 80_000)
        await self.send(
            self.topics.announce, signed(OPERATOR, body, self.market, agent="operator", seq=1)
        )
        reading = await self.next_body()
        assert isinstance(reading, ReadingBody)
        return reading

    async def forecast(self, key: SigningKey, demand_wh: int, *, seq: int) -> None:
        body = ForecastBody(T, STEP, (demand_wh,), (0,), "zero", None)
        wire = signed(key, body, self.market, agent="forecaster", seq=seq)
        await self.send(self.topics.forecast(AGENT), wire)

    async def handled(self) -> list[Body]:
        """Return once the agent has handled everything sent so far: it is told of the
        next interval (the broker keeps one publisher's order) and publishes its reading.
        What it published before that reading is returned."""
        body = AnnouncementBody(Phase.OPEN, STEP, 300_000, 80_000)
        wire = signed(OPERATOR, body, self.market, agent="operator", seq=9, interval=T + STEP)
        await self.send(self.topics.announce, wire)
        before: list[Body] = []
        while True:
            message = await asyncio.wait_for(anext(self.inbox), TIMEOUT_S)
            decoded = decode_message(message.payload)
            if isinstance(decoded.body, ReadingBody) and decoded.header.interval == T + STEP:
                return before
            before.append(decoded.body)

    async def next_body(self) -> Body:
        message = await asyncio.wait_for(anext(self.inbox), TIMEOUT_S)
        return decode_message(message.payload).body


@contextlib.asynccontextmanager
async def scene(
    broker: BrokerAddress, *, forecaster_key: VerifyingKey | None
) -> AsyncIterator[Scene]:
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    config = AgentConfig(
        agent_id=AGENT,
        topics=topics,
        operator_key=OPERATOR.verifying,
        forecaster_key=forecaster_key,
        forecast_timeout_s=3600,  # no fallback order during the test
        max_clock_drift_s=None,
    )

    def client(name: str) -> TransportConfig:
        return TransportConfig(address=broker, client_id=f"{name}-{topics.market_id}")

    watch = Transport(
        client("watch"), subscriptions=[(topics.reading(AGENT), 1), (topics.order(AGENT), 1)]
    )
    operator = Transport(client("operator"))
    async with watch, operator, agent_transport(config, client(AGENT)) as transport:
        await asyncio.wait_for(
            asyncio.gather(
                watch.wait_connected(), operator.wait_connected(), transport.wait_connected()
            ),
            TIMEOUT_S,
        )
        agent = HouseholdAgent(
            config,
            key=SigningKey.generate(),
            transport=transport,
            meter=StepMeter(),
            sequence=MemorySequence(),
        )
        running = asyncio.create_task(agent.run())
        try:
            yield Scene(topics, agent, operator, watch.messages())
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def test_a_forged_forecast_is_not_ordered_on_and_the_signed_one_is(
    mosquitto: BrokerAddress,
) -> None:
    async with scene(mosquitto, forecaster_key=FORECASTER.verifying) as s:
        await s.open_interval()
        await s.forecast(SigningKey.generate(), GIGA_WH, seq=1)  # another key
        # The forecaster's kid, but a signature over other bytes.
        forged = bytearray(
            signed(
                FORECASTER,
                ForecastBody(T, STEP, (GIGA_WH,), (0,), "zero", None),
                s.market,
                agent="forecaster",
                seq=2,
            )
        )
        at = forged.index(b'"sig":"') + 12
        forged[at] = ord("A") if forged[at] != ord("A") else ord("B")
        await s.send(s.topics.forecast(AGENT), bytes(forged))
        await s.forecast(FORECASTER, 90, seq=3)  # the service's, after the forged ones
        order = await s.next_body()
        assert order == OrderBody(Side.BUY, 90, 278_000)  # the signed forecast's, only
        report = s.agent.diagnostics()
        assert report["forecast"] == "signed"
        assert report["ignored"] == {"forecast_unsigned": 2}


async def test_an_unsigned_forecast_is_reported_in_the_diagnostics(
    mosquitto: BrokerAddress,
) -> None:
    async with scene(mosquitto, forecaster_key=FORECASTER.verifying) as s:
        await s.open_interval()
        await s.forecast(SigningKey.generate(), GIGA_WH, seq=1)
        assert await s.handled() == []  # no order on the forecast
        report = s.agent.diagnostics()
        assert report["forecast"] == "unsigned forecast ignored"
        assert report["ignored"] == {"forecast_unsigned": 1}


async def test_without_a_forecaster_key_no_forecast_is_used(mosquitto: BrokerAddress) -> None:
    async with scene(mosquitto, forecaster_key=None) as s:
        await s.open_interval()
        order = await s.next_body()  # at once: no forecast is waited for
        assert order == OrderBody(Side.BUY, 0, 278_000)
        # its own forecast: no interval's energy yet
        assert s.agent.diagnostics()["forecast_used"] == "none"
        await s.forecast(FORECASTER, GIGA_WH, seq=1)  # even a well-signed one is not used
        assert await s.handled() == []  # no order on the forecast
        report = s.agent.diagnostics()
        assert report["forecast"] == "none configured"
        assert report["ignored"] == {"forecast_unconfigured": 1}


async def test_a_forged_rejection_is_not_counted(mosquitto: BrokerAddress) -> None:
    """With the operator's key set, a rejection must carry its signature (and come on
    the agent's own error topic) to count, and to tell the audit a message was refused."""
    async with scene(mosquitto, forecaster_key=FORECASTER.verifying) as s:
        assert s.agent.audit is not None
        await s.open_interval()
        forged = RejectionBody("1" * 64, 1, RejectReason.DUPLICATE, "forged")
        await s.send(
            s.topics.error(AGENT),
            signed(SigningKey.generate(), forged, s.market, agent="operator", seq=1),
        )
        genuine = RejectionBody("0" * 64, 1, RejectReason.LATE, "interval closed")
        elsewhere = signed(OPERATOR, genuine, s.market, agent="operator", seq=2)
        await s.send(s.topics.forecast(AGENT), elsewhere)  # not its error topic
        await s.send(s.topics.error(AGENT), elsewhere)
        assert await s.handled() == []
        assert dict(s.agent.rejections) == {"late": 1}
        assert s.agent.diagnostics()["ignored"] == {"rejection_unsigned": 1, "unexpected": 1}


async def test_a_flood_of_junk_is_counted_not_logged_line_by_line(
    mosquitto: BrokerAddress, caplog: pytest.LogCaptureFixture
) -> None:
    async with scene(mosquitto, forecaster_key=FORECASTER.verifying) as s:
        await s.open_interval()
        with caplog.at_level(logging.WARNING, logger="wattmesh.agents.agent"):
            for n in range(300):
                topic = s.topics.forecast(AGENT) if n % 2 else s.topics.error(AGENT)
                await s.send(topic, b"junk %d" % n)
            assert await s.handled() == []
        assert s.agent.diagnostics()["ignored"] == {"malformed": 300}
        lines = [r.getMessage() for r in caplog.records if r.name == "wattmesh.agents.agent"]
        assert len(lines) == 1 and lines[0].startswith(f"{AGENT}: ignored malformed on ")
