"""The agent orders on its own forecast without a forecasting service (issue 14), over a
real Mosquitto, with its real SQLite outbox: persistence from its second reading, its
history kept across a restart, the service's absence in time, the diagnostics and
one log line per change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wattmesh.agents._outbox import Outbox
from wattmesh.agents._publisher import DurablePublisher
from wattmesh.agents._selfcast import Registers
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.meter import MeterReading
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    OrderBody,
    Phase,
    Side,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TIMEOUT_S = 10.0
STEP = 3_600  # a day is 24 intervals
T = 1_764_547_200  # 2025-12-01 00:00 UTC
AGENT = "h001"
OPERATOR = SigningKey.generate()
BUY_PRICE, SELL_PRICE = 278_000, 102_000  # the default policy in 300,000/80,000


@dataclass
class SolarMeter:
    """Cumulative registers of a house exporting ``export_wh`` more each read."""

    export_wh: int
    registers: list[int] = field(default_factory=lambda: [0, 0])  # import, export

    async def read(self) -> MeterReading:
        reading = MeterReading(T, self.registers[0], self.registers[1], 0, 0)
        self.registers[1] += self.export_wh
        return reading


@dataclass
class Scene:
    topics: Topics
    agent: HouseholdAgent
    operator: Transport
    inbox: AsyncIterator[Message]  # the agent's orders
    broker: BrokerAddress

    async def trade(self, interval: int) -> OrderBody:
        """Open ``interval``; the agent's order for it."""
        body = AnnouncementBody(Phase.OPEN, STEP, 300_000, 80_000)
        wire = sign_message(
            OPERATOR,
            body,
            market=self.topics.market_id,
            interval=interval,
            agent="operator",
            seq=interval,
            expires=interval + STEP,
        ).to_wire()
        await self.operator.publish(self.topics.announce, wire, qos=1)
        while True:
            message = await asyncio.wait_for(anext(self.inbox), TIMEOUT_S)
            if message.topic != self.topics.order(AGENT):
                continue
            decoded = decode_message(message.payload)
            assert decoded.header.interval == interval
            assert isinstance(decoded.body, OrderBody)
            return decoded.body

    async def reported(self, forecast_used: str) -> dict[str, object]:
        """The first retained diagnostics report a new subscriber gets that names
        ``forecast_used`` (the retained one, or the next ones as they come)."""
        topic = self.topics.diagnostics(AGENT)
        config = TransportConfig(address=self.broker, client_id=uuid.uuid4().hex)
        async with Transport(config, subscriptions=[(topic, 1)]) as viewer:
            async with asyncio.timeout(TIMEOUT_S):
                async for message in viewer.messages():
                    report = json.loads(message.payload)
                    assert isinstance(report, dict)
                    if report["forecast_used"] == forecast_used:
                        return report
        raise AssertionError("the viewer's connection ended")


@contextlib.asynccontextmanager
async def scene(
    broker: BrokerAddress,
    outbox_path: Path,
    meter: SolarMeter,
    *,
    topics: Topics,
    forecaster_key: VerifyingKey | None = None,
    forecast_timeout_s: float = 3600,
) -> AsyncIterator[Scene]:
    config = AgentConfig(
        agent_id=AGENT,
        topics=topics,
        operator_key=OPERATOR.verifying,
        forecaster_key=forecaster_key,
        forecast_timeout_s=forecast_timeout_s,
        max_clock_drift_s=None,
        diagnostics_interval_s=3600,  # reports go out on changes only
    )

    def client(name: str) -> TransportConfig:
        return TransportConfig(address=broker, client_id=f"{name}-{topics.market_id}")

    watch = Transport(client("watch"), subscriptions=[(topics.order(AGENT), 1)])
    operator = Transport(client("operator"))
    outbox = Outbox(outbox_path)
    async with (
        watch,
        operator,
        agent_transport(config, client(AGENT)) as transport,
        DurablePublisher(outbox, transport, commit_interval_s=0) as publisher,
    ):
        await asyncio.wait_for(
            asyncio.gather(
                watch.wait_connected(), operator.wait_connected(), transport.wait_connected()
            ),
            TIMEOUT_S,
        )
        agent = HouseholdAgent(
            config, key=SigningKey.generate(), transport=transport, meter=meter, publisher=publisher
        )
        running = asyncio.create_task(agent.run())
        try:
            yield Scene(topics, agent, operator, watch.messages(), broker)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await agent.go_offline(None)
    outbox.close()


def _forecast_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "orders use forecast" in r.getMessage()]


async def test_without_a_service_the_agent_trades_on_its_own_readings_across_a_restart(
    mosquitto: BrokerAddress, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wattmesh.agents")
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    meter = SolarMeter(export_wh=150)
    path = tmp_path / "outbox.sqlite"
    async with scene(mosquitto, path, meter, topics=topics) as s:
        # The first reading gives no interval's energy yet: no trade.
        assert await s.trade(T) == OrderBody(Side.BUY, 0, BUY_PRICE)
        assert s.agent.diagnostics()["forecast_used"] == "none"
        # From the second on: the last interval's export, sold.
        assert await s.trade(T + STEP) == OrderBody(Side.SELL, 150, SELL_PRICE)
        assert await s.trade(T + 2 * STEP) == OrderBody(Side.SELL, 150, SELL_PRICE)
        report = await s.reported("persistence")
        assert report["forecast"] == "none configured"
    assert _forecast_lines(caplog) == [
        f"{AGENT}: orders use forecast: none (no readings to go on yet)",
        f"{AGENT}: orders use forecast: persistence (last interval); before: none",
    ]
    stored = Outbox(path)
    assert [r.interval for r in stored.kept_readings()] == [T, T + STEP, T + 2 * STEP]
    stored.close()

    # Restarted: the readings on disk make the first order after the restart a trade.
    meter.export_wh = 90
    async with scene(mosquitto, path, meter, topics=topics) as s:
        assert await s.trade(T + 3 * STEP) == OrderBody(Side.SELL, 150, SELL_PRICE)
        assert await s.trade(T + 4 * STEP) == OrderBody(Side.SELL, 90, SELL_PRICE)


async def test_a_day_of_history_gives_the_same_slot_and_a_late_service_its_own(
    mosquitto: BrokerAddress, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A day of readings on disk: the last interval and yesterday's same slot (PV at
    noon, import at night), also when the forecasting service is configured but sends
    nothing in time."""
    caplog.set_level(logging.INFO, logger="wattmesh.agents")
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    imported = exported = 0
    for hour in range(24):  # readings at each hour of day 0; the meter reads on
        outbox.keep_reading(Registers(T + hour * STEP, imported, exported), STEP)
        if 10 <= hour < 14:
            exported += 400  # midday sun
        else:
            imported += 200
    outbox.commit()
    outbox.close()
    meter = SolarMeter(export_wh=0)
    meter.registers[:] = [imported, exported]
    day = T + 86_400
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    async with scene(
        mosquitto,
        path,
        meter,
        topics=topics,
        forecaster_key=SigningKey.generate().verifying,  # a service that never answers
        forecast_timeout_s=0.05,
    ) as s:
        # yesterday 23:00 and 00:00: 200 Wh imported each
        assert await s.trade(day) == OrderBody(Side.BUY, 200, BUY_PRICE)
        report = await s.reported("own seasonal (1 day of history)")
        assert report["forecast"] == "none yet"
        await s.trade(day + 10 * STEP)  # readings missed since
        # the last hour nothing (the meter stood still), yesterday 400 Wh exported
        assert await s.trade(day + 11 * STEP) == OrderBody(Side.SELL, 200, SELL_PRICE)
    lines = [r for r in caplog.records if "orders use forecast" in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        f"{AGENT}: orders use forecast: own seasonal (1 day of history)"
        " (mean of the last interval and the same slot of earlier days)"
    ]
    assert lines[0].levelno == logging.WARNING  # a configured service is not answering
