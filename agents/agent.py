"""The household agent: reads its meter, publishes signed readings and orders.

It follows the market operator's announcements: when an interval opens it publishes a
signed meter reading, waits for its forecast (which the forecasting service derives
from that reading), and publishes a signed order for the interval. When the market
closes it publishes a final reading so the last interval can be settled. When the
interval it trades is announced open once more (a restarted ledger that lost what it
had not logged), it sends the very bytes of that interval's reading and order again
(docs/protocol.md, "A repeated open").

It acts on a forecast only when the forecasting service's key signed it
(``forecaster_key``). Without one, or when no fresh forecast came within
``forecast_timeout_s``, it orders on its own forecast from its own readings of the
last 7 days (:mod:`agents._forecast_source`, :mod:`agents._selfcast`). Given the
operator's key, on announcements and rejections only when the operator signed them.
Everything else it receives is counted per reason and logged in aggregate
(:mod:`agents._inbound`).

Its parts: :mod:`agents._resend` (the interval traded and the repeated-open rule),
:mod:`agents._ordering` (the order for an interval), :mod:`agents._forecast_source`
(which forecast an order uses), :mod:`agents._diagnostics` (when
and how its health report goes out) and :mod:`agents._audit_feed` (the audit of the
operator's log).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from wattmesh.agents._audit import Auditor, CheckpointStore, MemoryCheckpointStore
from wattmesh.agents._audit_feed import AuditFeed
from wattmesh.agents._clock import DEFAULT_MAX_DRIFT_S, ClockHealth, assess_clock
from wattmesh.agents._diagnostics import DiagnosticsSender, ReportSchedule, Verdict
from wattmesh.agents._forecast_source import Choice, ForecastSource
from wattmesh.agents._inbound import LogTally
from wattmesh.agents._ordering import order_for_interval
from wattmesh.agents._publisher import DirectPublisher, DurablePublisher, Publisher
from wattmesh.agents._resend import TradedInterval
from wattmesh.agents._strategy import LimitPricePolicy
from wattmesh.agents.battery import BatteryController
from wattmesh.agents.meter import Clock, MarketClock, Meter, system_clock
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.presence import StatusSigner
from wattmesh.agents.sequence import SeqSource
from wattmesh.broker.audit_bodies import CheckpointNoteBody, ReceiptBody
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W
from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    ForecastBody,
    Phase,
    Presence,
    ReadingBody,
    RejectionBody,
    SignedMessage,
    Signer,
    TradesBody,
    decode_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Message, Transport, TransportClosedError, TransportConfig

__all__ = ["AgentConfig", "HouseholdAgent", "agent_transport"]

_LOG = logging.getLogger(__name__)

READING_VALIDITY_S = 7 * 86_400


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str
    topics: Topics
    policy: LimitPricePolicy = field(default_factory=LimitPricePolicy)
    operator_key: VerifyingKey | None = None  # when set, unsigned-by-operator news is ignored
    # The forecasting service's key: only forecasts it signed are used; None: no
    # forecasting service, the agent orders on its own forecast (agents._selfcast).
    forecaster_key: VerifyingKey | None = None
    # The connection's limit (W): no order above what it carries over the interval.
    max_power_w: int = DEFAULT_MAX_POWER_W
    forecast_timeout_s: float = 60.0  # then an older or its own forecast (wall clock)
    # Refuse to sign orders while meter and system clocks differ by more (s); None: never.
    # Not checked under a MarketClock (simulated time is not wall time).
    max_clock_drift_s: int | None = DEFAULT_MAX_DRIFT_S
    # Diagnostics go out after a reading at most this often (s), and at once when the
    # clock verdict or the outbox's drop count changes.
    diagnostics_interval_s: float = 60.0


def agent_transport(
    config: AgentConfig, base: TransportConfig, *, status: StatusSigner | None = None
) -> Transport:
    """A transport with the agent's subscriptions and, given ``status``, its signed
    availability: ``online`` on each connect, ``offline`` as that connection's last
    will (:mod:`agents.presence`). Without it the agent publishes no status."""
    topics, agent = config.topics, config.agent_id
    return Transport(
        base,
        subscriptions=[
            (topics.announce, 1),
            (topics.forecast(agent), 1),
            (topics.error(agent), 1),
            (topics.checkpoint, 1),
            (topics.checkpoint_reply(agent), 1),
            (topics.receipt(agent), 1),
            (topics.trades, 1),
        ],
        per_connect=None if status is None else status.connect_messages,
    )


class HouseholdAgent:
    """Drives one household. ``run()`` returns once the market announces it is closed.

    Signed messages go out through ``publisher`` (the real agent: a
    :class:`DurablePublisher` over its outbox), or, given a ``sequence`` instead,
    straight to the transport (simulations).

    With ``config.operator_key`` set the agent audits the operator's log
    (:mod:`agents._audit_feed`, :mod:`agents._audit`), keeping its last verified
    checkpoint in ``checkpoints`` (the real agent: a file in its state directory;
    default: in memory).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        key: SigningKey,
        transport: Transport,
        meter: Meter,
        sequence: SeqSource | None = None,
        publisher: Publisher | None = None,
        market_clock: MarketClock | None = None,
        battery: BatteryController | None = None,
        wall_clock: Clock = system_clock,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        if publisher is None:
            if sequence is None:
                msg = "give a sequence or a publisher"
                raise ValueError(msg)
            publisher = DirectPublisher(transport, sequence)
        elif sequence is not None:
            msg = "give a sequence or a publisher, not both"
            raise ValueError(msg)
        self.config = config
        self.key = key
        self._signer = Signer(key, config.topics.market_id, config.agent_id)
        self.transport = transport
        self.meter = meter
        self.publisher: Publisher = publisher
        self.market_clock = market_clock
        self.battery = battery
        self.meter_failures = 0
        self.wall_clock = wall_clock
        self.rejections: Counter[str] = Counter()
        self.published = 0
        self.clock: ClockHealth | None = None  # from the last reading; None: not checked
        self.orders_refused = 0
        self.resent = 0  # messages sent again because their interval was opened again
        self.ignored = LogTally()  # messages not acted on, per reason (loop time)
        self._rejected = LogTally()  # the ledger's rejections, for their log lines
        self.forecast_state = "none configured" if config.forecaster_key is None else "none yet"
        self._schedule = ReportSchedule(config.diagnostics_interval_s)  # loop time
        self._diagnostics = DiagnosticsSender(
            transport, config.topics.diagnostics(config.agent_id), self.diagnostics
        )
        self._open: AnnouncementBody | None = None  # the traded interval's announcement
        self._traded = TradedInterval()  # its interval, and what was sent for it
        self._ordered: set[int] = set()
        self._forecast: ForecastBody | None = None
        outbox = publisher.outbox if isinstance(publisher, DurablePublisher) else None
        self.forecasts = ForecastSource(
            config.agent_id, outbox, has_forecaster=config.forecaster_key is not None
        )
        self._fallback: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.audit: Auditor | None = None
        self.audited = asyncio.Event()  # set after each operator audit message handled
        self._audit_feed: AuditFeed | None = None
        if config.operator_key is not None:
            self._audit_feed = AuditFeed(
                config.agent_id,
                topics=config.topics,
                operator_key=config.operator_key,
                checkpoints=checkpoints if checkpoints is not None else MemoryCheckpointStore(),
                transport=transport,
                audited=self.audited,
                on_alarm=self.report_diagnostics,
                on_unsigned=lambda topic, detail: self._ignore("audit_unsigned", topic, detail),
            )
            self.audit = self._audit_feed.auditor

    async def run(self) -> None:
        async for message in self.transport.messages():
            if await self.handle(message):
                return

    async def handle(self, message: Message) -> bool:
        """Handle one inbound message; True once the market has closed."""
        topic = message.topic
        try:
            decoded = decode_message(message.payload)
        except MessageError as exc:
            self._ignore("malformed", topic, str(exc))
            return False
        body = decoded.body
        topics, me = self.config.topics, self.config.agent_id
        if topic == topics.announce and isinstance(body, AnnouncementBody):
            if not self._signed_by(self.config.operator_key, decoded, "announcement", topic):
                return False
            if self._traded.opens_again(decoded):
                await self._resend(decoded)
                return False
            return await self._on_announcement(decoded, body)
        if topic == topics.forecast(me) and isinstance(body, ForecastBody):
            await self._on_forecast(decoded, body, topic)
        elif isinstance(body, CheckpointNoteBody | ReceiptBody | TradesBody):
            if self._audit_feed is not None:  # it checks the operator's signature
                await self._audit_feed.handle(topic, decoded)
        elif topic == topics.error(me) and isinstance(body, RejectionBody):
            if self._signed_by(self.config.operator_key, decoded, "rejection", topic):
                self._on_rejection(body, topic)
        else:
            self._ignore("unexpected", topic, f"a {decoded.header.kind} message")
        return False

    def _ignore(self, reason: str, topic: str, detail: str) -> None:
        """Count a message not acted on; log the first of its reason, then summaries."""
        line = self.ignored.note(reason, topic, detail, asyncio.get_running_loop().time())
        if line is not None:
            _LOG.warning("%s: ignored %s", self.config.agent_id, line)

    def _signed_by(
        self, key: VerifyingKey | None, message: SignedMessage, what: str, topic: str
    ) -> bool:
        """Whether ``message`` may be trusted: signed by ``key`` (any, without a key)."""
        if key is None:
            return True
        try:
            message.verify(key)
        except MessageError as exc:
            self._ignore(f"{what}_unsigned", topic, f"not signed by the operator: {exc}")
            return False
        return True

    async def _on_forecast(self, message: SignedMessage, body: ForecastBody, topic: str) -> None:
        """Keep a forecast the forecasting service signed for this market, and order."""
        key = self.config.forecaster_key
        if key is None:
            self._ignore("forecast_unconfigured", topic, "no forecaster key is configured")
            return
        try:
            message.verify(key)
        except MessageError as exc:
            self.forecast_state = "unsigned forecast ignored"
            self._ignore("forecast_unsigned", topic, f"not signed by the forecaster: {exc}")
            return
        if message.header.market != self.config.topics.market_id:
            self._ignore("forecast_wrong_market", topic, f"for market {message.header.market}")
            return
        self.forecast_state = "signed"
        self._forecast = body
        await self._maybe_order()

    def _on_rejection(self, body: RejectionBody, topic: str) -> None:
        if self.audit is not None:
            self.audit.refused(body.ref)
        reason = body.reason.value
        self.rejections[reason] += 1
        detail = f"seq {body.ref_seq}: {body.detail}"
        line = self._rejected.note(reason, topic, detail, asyncio.get_running_loop().time())
        if line is not None:
            _LOG.warning("%s: ledger rejected: %s", self.config.agent_id, line)

    async def _resend(self, announcement: SignedMessage) -> None:
        """Publish this interval's reading and order (those sent so far) again, byte
        for byte, through the publisher (the real agent: its outbox)."""
        sent = self._traded.reopen(announcement.message_id)
        _LOG.info(
            "%s: interval %d announced open again; sending its %d message(s) again",
            self.config.agent_id,
            announcement.header.interval,
            len(sent),
        )
        for topic, wire in sent:
            await self.publisher.resend(topic, wire)
            self.resent += 1
        if sent:
            self.report_diagnostics()

    async def _on_announcement(self, announcement: SignedMessage, body: AnnouncementBody) -> bool:
        interval = announcement.header.interval
        if body.phase is Phase.CLEARED:
            self._traded.clear(interval)
            return False
        if not self._traded.begin(interval, announcement.message_id):
            return False  # an older interval's, or a copy of the one acted on
        self._open = body
        if self.market_clock is not None:
            self.market_clock.set(interval)
        try:
            await self.record_reading(interval)
        except MeterError as exc:  # no reading this interval; the agent keeps trading
            self.meter_failures += 1
            _LOG.warning("%s: no meter reading for %s: %s", self.config.agent_id, interval, exc)
        if body.phase is Phase.CLOSED:
            return True
        self._arm_fallback(interval)
        await self._maybe_order()
        return False

    async def record_reading(self, interval: int) -> None:
        """Read the meter and publish a signed reading for ``interval`` (meter time)."""
        reading = await self.meter.read()
        self._check_clock(reading.time)
        announced = self._open
        interval_s = announced.interval_s if announced is not None else None
        self.forecasts.note_reading(interval, reading, interval_s)
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
        self.report_diagnostics()

    def _check_clock(self, meter_time_s: int) -> None:
        limit = self.config.max_clock_drift_s
        if limit is None or self.market_clock is not None:
            return
        health = assess_clock(
            meter_time_s=meter_time_s, system_time_s=self.wall_clock(), max_drift_s=limit
        )
        if not health.ok and (self.clock is None or self.clock.ok):
            _LOG.error(
                "%s: clock problem, not signing orders: %s", self.config.agent_id, health.reason
            )
        elif health.ok and self.clock is not None and not self.clock.ok:
            _LOG.warning(
                "%s: clocks agree again (drift %d s)", self.config.agent_id, health.drift_s
            )
        self.clock = health

    async def _maybe_order(self) -> None:
        interval, announced, forecast = self._traded.interval, self._open, self._forecast
        if interval is None or announced is None or interval in self._ordered:
            return
        if self.config.forecaster_key is None:  # no service: the agent's own, at once
            own = self.forecasts.fallback(None, interval, announced.interval_s)
            await self._send_order(interval, announced, own)
            return
        # Only a forecast issued from this interval's reading counts: an older one may
        # cover the interval too, but using it would make orders depend on timing.
        if forecast is None or forecast.start != interval or not forecast.demand_wh:
            return
        await self._send_order(interval, announced, self.forecasts.fresh(forecast))

    async def _send_order(self, interval: int, announced: AnnouncementBody, choice: Choice) -> None:
        self._ordered.add(interval)
        if self._fallback is not None:
            self._fallback.cancel()
        if self.forecasts.use(choice):
            self.report_diagnostics()
        if self.clock is not None and not self.clock.ok:
            self.orders_refused += 1
            _LOG.warning(
                "%s: no order for %s: %s", self.config.agent_id, interval, self.clock.reason
            )
            return
        body = await order_for_interval(
            interval,
            announced,
            demand_wh=choice.demand_wh,
            pv_wh=choice.pv_wh,
            policy=self.config.policy,
            battery=self.battery,
            agent_id=self.config.agent_id,
            max_power_w=self.config.max_power_w,
        )
        await self._publish(
            self.config.topics.order(self.config.agent_id),
            body,
            interval=interval,
            expires=interval + announced.interval_s,
        )

    def _arm_fallback(self, interval: int) -> None:
        """If no fresh forecast arrives in time, use the last one that covers the interval,
        else the agent's own, else send a no-trade order rather than none."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            announced = self._open
            if interval in self._ordered or announced is None:
                return
            choice = self.forecasts.fallback(self._forecast, interval, announced.interval_s)
            task = loop.create_task(self._send_order(interval, announced, choice))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._fallback = loop.call_later(self.config.forecast_timeout_s, fire)

    async def _publish(self, topic: str, body: Body, *, interval: int, expires: int) -> None:
        def build(seq: int) -> bytes:
            message = self._signer.sign(body, interval=interval, seq=seq, expires=expires)
            if self.audit is not None:
                self.audit.expect(message)
            wire = message.to_wire()
            self._traded.keep(interval, topic, wire)  # at once: a resend may follow
            return wire

        await self.publisher.submit(topic, build)
        self.published += 1

    def diagnostics(self) -> dict[str, object]:
        """The agent's health report (JSON-able; see docs/protocol.md, diagnostics)."""
        outbox = self.publisher.outbox if isinstance(self.publisher, DurablePublisher) else None
        return {
            "outbox_pending": outbox.pending if outbox is not None else 0,
            "outbox_dropped": outbox.dropped if outbox is not None else 0,
            "outbox_last_seq": outbox.last_seq if outbox is not None else None,
            "clock_drift_s": self.clock.drift_s if self.clock is not None else None,
            "clock_ok": self.clock.ok if self.clock is not None else True,
            "orders_refused": self.orders_refused,
            "resent": self.resent,
            "reconnects": self.transport.reconnects,
            "rejections": dict(sorted(self.rejections.items())),
            "forecast": self.forecast_state,
            "forecast_used": self.forecasts.used,
            "ignored": dict(sorted(self.ignored.counts.items())),
            "audit": self.audit.report() if self.audit is not None else None,
        }

    def report_diagnostics(self) -> None:
        """Publish the diagnostics (retained) in the background once connected.

        At most one report waits for the broker; it is built when it can be sent, and
        one asked for meanwhile is sent after it (so the last change is reported).
        Rate-limited by ``config.diagnostics_interval_s`` unless the clock verdict, the
        drop count, the audit alarms or the forecast orders use changed. Not under a
        MarketClock: simulations have no use for it.
        """
        if self.market_clock is not None:
            return
        report = self.diagnostics()
        alarms = sum(self.audit.alarms.values()) if self.audit is not None else 0
        verdict = Verdict(
            bool(report["clock_ok"]),
            int(str(report["outbox_dropped"])),
            alarms,
            self.forecasts.used,
        )
        if self._schedule.due(asyncio.get_running_loop().time(), verdict):
            self._diagnostics.send()

    async def go_offline(self, status: StatusSigner | None, timeout_s: float = 5.0) -> bool:
        """Publish the retained, signed offline status (``status``'s next) before a
        clean shutdown (without ``status``: only stop the diagnostics).

        Returns False if the broker did not acknowledge within ``timeout_s`` (it is
        unreachable; it then publishes the offline last will itself once it notices).
        """
        await self._diagnostics.stop()
        if status is None:
            return True
        offline = status.sign(Presence.OFFLINE)
        try:
            await asyncio.wait_for(
                self.transport.publish(status.topic, offline, qos=1, retain=True), timeout_s
            )
        except (TimeoutError, TransportClosedError):
            return False
        return True
