"""Publishes an agent's Home Assistant discovery and state (the MQTT adapter).

The bridge has its own MQTT connection (client id ``<agent client id>-ha``) so it
never delays the agent's signed messages, and its own last will on
``ha/availability``. On every (re)connect it publishes the retained discovery
configs and ``online``; it re-sends the configs when HA announces ``online`` on
``<prefix>/status``. It first reads back its retained meter state (the register
floor, see :class:`~agents.homeassistant.RegisterGuard`); then every
``state_interval_s`` it reads the meter and publishes
the retained meter state (a failed read publishes nothing: the sensors expire);
it follows the market's announcements and trades for the price and trade sensors,
trusting only operator-signed ones when the operator key is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

from wattmesh.agents.agent import AgentConfig
from wattmesh.agents.homeassistant import (
    HaTopics,
    HomeAssistantConfig,
    RegisterGuard,
    discovery_messages,
    meter_state,
    parse_meter_state,
    price_state,
    trade_state,
)
from wattmesh.agents.meter import Meter
from wattmesh.agents.metering.errors import MeterError
from wattmesh.broker.errors import MessageError
from wattmesh.broker.messages import (
    AnnouncementBody,
    Phase,
    SignedMessage,
    TradesBody,
    decode_message,
)
from wattmesh.broker.topics import STATUS_OFFLINE, STATUS_ONLINE
from wattmesh.broker.transport import Message, Transport, TransportConfig, Will

__all__ = ["HomeAssistantBridge"]

_LOG = logging.getLogger(__name__)


class HomeAssistantBridge:
    """Run with ``await bridge.run()`` inside ``async with bridge.transport``."""

    def __init__(
        self,
        config: HomeAssistantConfig,
        agent: AgentConfig,
        base: TransportConfig,
        meter: Meter,
        *,
        sw_version: str,
    ) -> None:
        self.config = config
        self.agent = agent
        self.meter = meter
        self.ha = HaTopics(agent.topics, agent.agent_id, config.prefix)
        self.guard = RegisterGuard()
        self.meter_failures = 0
        self.published_states = 0
        self._discovery = discovery_messages(
            agent.topics, agent.agent_id, config, sw_version=sw_version
        )
        transport_config = replace(
            base,
            client_id=f"{base.client_id}-ha",
            will=Will(self.ha.availability, STATUS_OFFLINE, qos=1, retain=True),
        )
        self.transport = Transport(
            transport_config,
            subscriptions=[
                (agent.topics.announce, 1),
                (agent.topics.trades, 1),
                (self.ha.ha_status, 1),
                (self.ha.meter, 1),  # the retained state of the previous run: the floor
                (self.ha.sync, 1),
            ],
            on_connect_publish=[
                *((topic, payload, 1, True) for topic, payload in self._discovery),
                (self.ha.availability, STATUS_ONLINE, 1, True),
                # The broker delivers retained messages on SUBSCRIBE, before it handles
                # this later publish: its echo means the floor (if any) has arrived.
                (self.ha.sync, b"sync", 1, False),
            ],
        )
        self._synced = asyncio.Event()

    async def run(self) -> None:
        """Publish until cancelled."""
        poller = asyncio.create_task(self._poll_meter(), name="ha-meter")
        try:
            async for message in self.transport.messages():
                await self.handle(message)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def go_offline(self) -> None:
        await self.transport.publish(self.ha.availability, STATUS_OFFLINE, qos=1, retain=True)

    async def publish_meter_state(self) -> bool:
        """Read the meter once and publish its state; False if nothing was published."""
        try:
            reading = await self.meter.read()
        except MeterError as exc:
            self.meter_failures += 1
            _LOG.warning("%s: no meter state for Home Assistant: %s", self.agent.agent_id, exc)
            return False
        if not self.guard.admit(reading):
            _LOG.warning(
                "%s: meter register went down (import %s, export %s); not published",
                self.agent.agent_id,
                reading.import_wh,
                reading.export_wh,
            )
            return False
        await self.transport.publish(self.ha.meter, meter_state(reading), qos=1, retain=True)
        self.published_states += 1
        return True

    async def _poll_meter(self) -> None:
        await self._synced.wait()  # never publish below a floor that is still in flight
        while True:
            try:
                await self.publish_meter_state()
            except Exception:  # a meter bug must not silence HA for good: log, go on
                self.meter_failures += 1
                _LOG.exception("%s: Home Assistant meter update failed", self.agent.agent_id)
            await asyncio.sleep(self.config.state_interval_s)  # the update period

    async def handle(self, message: Message) -> None:
        if message.topic == self.ha.meter:
            if message.retain and (registers := parse_meter_state(message.payload)):
                self.guard.seed(*registers)
            return
        if message.topic == self.ha.sync:
            self._synced.set()
            return
        if message.topic == self.ha.ha_status:
            if message.payload == STATUS_ONLINE:
                for topic, payload in self._discovery:
                    await self.transport.publish(topic, payload, qos=1, retain=True)
            return
        try:
            decoded = decode_message(message.payload)
            if self.agent.operator_key is not None:
                decoded.verify(self.agent.operator_key)
        except MessageError as exc:
            _LOG.info(
                "%s: ignoring %s for Home Assistant: %s", self.agent.agent_id, message.topic, exc
            )
            return
        if message.topic == self.agent.topics.announce:
            await self._on_announcement(decoded)
        elif message.topic == self.agent.topics.trades:
            await self._on_trades(decoded)

    async def _on_announcement(self, message: SignedMessage) -> None:
        body = message.body
        if not isinstance(body, AnnouncementBody) or body.phase is not Phase.CLEARED:
            return
        if body.price_micro_per_kwh is None:
            return  # nothing cleared: keep the last price rather than publish a placeholder
        payload = price_state(
            interval=message.header.interval,
            price_micro_per_kwh=body.price_micro_per_kwh,
            volume_wh=body.volume_wh,
        )
        await self.transport.publish(self.ha.price, payload, qos=1, retain=True)

    async def _on_trades(self, message: SignedMessage) -> None:
        body = message.body
        if not isinstance(body, TradesBody):
            return
        me = self.agent.agent_id
        for trade in body.trades:
            if me not in (trade.buyer, trade.seller):
                continue
            payload = trade_state(
                interval=message.header.interval,
                side="buy" if trade.buyer == me else "sell",
                counterparty=trade.seller if trade.buyer == me else trade.buyer,
                quantity_wh=trade.quantity_wh,
                price_micro_per_kwh=trade.price_micro_per_kwh,
            )
            await self.transport.publish(self.ha.trade, payload, qos=1, retain=True)
