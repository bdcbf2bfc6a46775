"""The household agent: reads its meter, publishes signed readings and orders.

It follows the market operator's announcements: when an interval opens it publishes a
signed meter reading, waits for its forecast (which the forecasting service derives
from that reading), and publishes a signed order for the interval. When the market
closes it publishes a final reading so the last interval can be settled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from agents.battery import BatteryController
from agents.battery_strategy import battery_order_for
from agents.meter import MarketClock, Meter
from agents.metering.errors import MeterError
from agents.sequence import Sequence
from agents.strategy import LimitPricePolicy, order_for
from broker.errors import MessageError
from broker.keys import SigningKey, VerifyingKey
from broker.messages import (
    AnnouncementBody,
    Body,
    ForecastBody,
    Phase,
    ReadingBody,
    RejectionBody,
    SignedMessage,
    decode_message,
    sign_message,
)
from broker.topics import STATUS_OFFLINE, STATUS_ONLINE, Topics
from broker.transport import Message, Transport, TransportConfig, Will

_LOG = logging.getLogger(__name__)

READING_VALIDITY_S = 7 * 86_400


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str
    topics: Topics
    policy: LimitPricePolicy = field(default_factory=LimitPricePolicy)
    operator_key: VerifyingKey | None = None  # when set, unsigned-by-operator news is ignored
    forecast_timeout_s: float = 60.0  # wall-clock backstop when no forecast arrives


def agent_transport(config: AgentConfig, base: TransportConfig) -> Transport:
    """A transport with the agent's subscriptions and its availability last will."""
    topics, agent = config.topics, config.agent_id
    status = topics.status(agent)
    transport_config = replace(base, will=Will(status, STATUS_OFFLINE, qos=1, retain=True))
    return Transport(
        transport_config,
        subscriptions=[
            (topics.announce, 1),
            (topics.forecast(agent), 1),
            (topics.error(agent), 1),
        ],
        on_connect_publish=[(status, STATUS_ONLINE, 1, True)],
    )


class HouseholdAgent:
    """Drives one household. ``run()`` returns once the market announces it is closed."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        key: SigningKey,
        transport: Transport,
        meter: Meter,
        sequence: Sequence,
        market_clock: MarketClock | None = None,
        battery: BatteryController | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.transport = transport
        self.meter = meter
        self.sequence = sequence
        self.market_clock = market_clock
        self.battery = battery
        self.rejections: Counter[str] = Counter()
        self.published = 0
        self.meter_failures = 0
        self._open: AnnouncementBody | None = None
        self._open_interval: int | None = None
        self._ordered: set[int] = set()
        self._forecast: ForecastBody | None = None
        self._fallback: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async for message in self.transport.messages():
            if await self.handle(message):
                return

    async def handle(self, message: Message) -> bool:
        """Handle one inbound message; True once the market has closed."""
        try:
            decoded = decode_message(message.payload)
        except MessageError as exc:
            _LOG.warning(
                "%s: ignoring malformed message on %s: %s", self.config.agent_id, message.topic, exc
            )
            return False
        body = decoded.body
        topics = self.config.topics
        if message.topic == topics.announce and isinstance(body, AnnouncementBody):
            if not self._trusted(decoded):
                return False
            return await self._on_announcement(decoded.header.interval, body)
        if message.topic == topics.forecast(self.config.agent_id) and isinstance(
            body, ForecastBody
        ):
            self._forecast = body
            await self._maybe_order()
        elif isinstance(body, RejectionBody):
            self.rejections[body.reason.value] += 1
            _LOG.warning(
                "%s: ledger rejected seq %s: %s (%s)",
                self.config.agent_id,
                body.ref_seq,
                body.reason.value,
                body.detail,
            )
        return False

    def _trusted(self, message: SignedMessage) -> bool:
        key = self.config.operator_key
        if key is None:
            return True
        try:
            message.verify(key)
        except MessageError:
            _LOG.warning("%s: announcement not signed by the operator", self.config.agent_id)
            return False
        return True

    async def _on_announcement(self, interval: int, body: AnnouncementBody) -> bool:
        if body.phase is Phase.CLEARED:
            return False
        if self._open_interval is not None and interval <= self._open_interval:
            return False  # a retained or repeated announcement we have handled
        self._open_interval = interval
        self._open = body
        if self.market_clock is not None:
            self.market_clock.set(interval)
        try:
            await self._publish_reading(interval)
        except MeterError as exc:  # no reading this interval; the agent keeps trading
            self.meter_failures += 1
            _LOG.warning("%s: no meter reading for %s: %s", self.config.agent_id, interval, exc)
        if body.phase is Phase.CLOSED:
            return True
        self._arm_fallback(interval)
        await self._maybe_order()
        return False

    async def _publish_reading(self, interval: int) -> None:
        reading = await self.meter.read()
        body = ReadingBody(
            meter_time=reading.time,
            import_wh=reading.import_wh,
            export_wh=reading.export_wh,
            pv_wh=reading.pv_wh,
            power_w=reading.power_w,
            battery_in_wh=reading.battery_in_wh,
            battery_out_wh=reading.battery_out_wh,
        )
        await self._publish(
            self.config.topics.reading(self.config.agent_id),
            body,
            interval=interval,
            expires=interval + READING_VALIDITY_S,
        )

    async def _maybe_order(self) -> None:
        interval, announced, forecast = self._open_interval, self._open, self._forecast
        if interval is None or announced is None or interval in self._ordered:
            return
        # Only a forecast issued from this interval's reading counts: an older one may
        # cover the interval too, but using it would make orders depend on timing.
        if forecast is None or forecast.start != interval or not forecast.demand_wh:
            return
        await self._send_order(interval, announced, forecast.demand_wh[0], forecast.pv_wh[0])

    async def _send_order(
        self, interval: int, announced: AnnouncementBody, demand_wh: int, pv_wh: int
    ) -> None:
        self._ordered.add(interval)
        if self._fallback is not None:
            self._fallback.cancel()
        if self.battery is None:
            body = order_for(
                demand_wh=demand_wh,
                pv_wh=pv_wh,
                retail_micro_per_kwh=announced.retail_micro_per_kwh,
                feed_in_micro_per_kwh=announced.feed_in_micro_per_kwh,
                policy=self.config.policy,
            )
        else:
            decision = battery_order_for(
                demand_wh=demand_wh,
                pv_wh=pv_wh,
                soc_wh=await self.battery.soc_wh(),
                battery=self.battery.battery,
                interval_s=announced.interval_s,
                retail_micro_per_kwh=announced.retail_micro_per_kwh,
                feed_in_micro_per_kwh=announced.feed_in_micro_per_kwh,
                policy=self.config.policy,
            )
            try:
                self.battery.command(interval, decision.mode)
            except ValueError as exc:  # e.g. a late order: the interval has begun
                _LOG.warning("%s: battery command refused: %s", self.config.agent_id, exc)
            body = decision.order
        await self._publish(
            self.config.topics.order(self.config.agent_id),
            body,
            interval=interval,
            expires=interval + announced.interval_s,
        )

    def _arm_fallback(self, interval: int) -> None:
        """If no fresh forecast arrives in time, use the last one that covers the interval,
        or send a no-trade order rather than none."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            announced = self._open
            if interval in self._ordered or announced is None:
                return
            demand_wh = pv_wh = 0
            forecast = self._forecast
            if forecast is not None and _covers(forecast, interval):
                step = (interval - forecast.start) // forecast.interval_s
                demand_wh, pv_wh = forecast.demand_wh[step], forecast.pv_wh[step]
            _LOG.warning("%s: no fresh forecast for %s", self.config.agent_id, interval)
            task = loop.create_task(self._send_order(interval, announced, demand_wh, pv_wh))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._fallback = loop.call_later(self.config.forecast_timeout_s, fire)

    async def _publish(self, topic: str, body: Body, *, interval: int, expires: int) -> None:
        message = sign_message(
            self.key,
            body,
            market=self.config.topics.market_id,
            interval=interval,
            agent=self.config.agent_id,
            seq=self.sequence.next(),
            expires=expires,
        )
        await self.transport.publish(topic, message.to_wire(), qos=1)
        self.published += 1

    async def go_offline(self) -> None:
        """Publish the retained offline status before a clean shutdown."""
        await self.transport.publish(
            self.config.topics.status(self.config.agent_id), STATUS_OFFLINE, qos=1, retain=True
        )


def _covers(forecast: ForecastBody, interval: int) -> bool:
    steps = len(forecast.demand_wh)
    return forecast.start <= interval < forecast.start + steps * forecast.interval_s
