"""The dashboard's MQTT listener: verified bus messages to the read model and to browsers (I/O).

The bus is a hostile network: anyone who can publish there may send anything. Every
message is decoded strictly and its signature checked before it counts; whatever is
malformed, unsigned, signed by the wrong key, for another market, of the wrong kind
for its topic or older than one already taken is dropped and counted
(``wattmesh_dashboard_mqtt_rejected{reason}``), never stored or pushed.

Who must have signed what:

- the market topics (``announce``, ``trades``, ``checkpoint``, ``summary``): the
  operator's key (given in the settings, else the one stored in the ledger);
- a household's forecast (``household/<id>/forecast``) and the forecasting service's
  retained ``health`` (``service/forecaster/health``): the forecaster's key when one
  is configured (the agents trust only it), else the operator's (a deployment where
  the operator runs the forecaster under its own key); any other key's are dropped;
- a household's status (``household/<id>/status``): that household's registered key
  (from the read model's ``household`` table, as the ledger registered it), its
  header naming the household of the topic. A status that arrives before the read
  model holds the household's key (a retained one, heard at start) is counted as
  ``unknown_key`` and its latest kept (:data:`MAX_WAITING` households at most) to be
  judged again once the log follower has folded new keys.

A sender's messages of one kind are taken in ``seq`` order only (a retained message
seen again after a reconnect, or a replayed old one, is dropped as ``duplicate``).
What is taken: every announcement is kept as the market's last word
(:attr:`Listener.heard`: its interval, length and phase; the overview's current
interval, :func:`dashboard.queries.market_now`), and a change of the market's state
(open on the wall clock, open in simulated time, idle) is pushed as a ``health`` event
with ``market``; a cleared announcement or a checkpoint wakes the log follower (which
folds the log and pushes the ``interval`` event once the interval is in the read
model); a summary's rejections are stored and pushed as a ``rejections`` event;
forecasts are stored (never pushed: they are a household's own figures); the
forecaster's health is stored and pushed as a ``health`` event with ``forecaster``; statuses
set the household's presence and push a ``presence`` event with counts only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    ForecastBody,
    HealthBody,
    Phase,
    Presence,
    SignedMessage,
    StatusBody,
    SummaryBody,
    decode_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Message, Transport
from wattmesh.dashboard._hub import Hub
from wattmesh.dashboard._qbase import forecaster_json
from wattmesh.dashboard.metrics import DashboardMetrics
from wattmesh.dashboard.queries import Heard, market_now

__all__ = ["MAX_WAITING", "Listener", "LiveSink", "Writes", "live_subscriptions"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

MAX_WAITING = 1024  # statuses kept for households without a key yet (oldest dropped)
_UNSIGNED = "unsigned"  # a payload that is no signed envelope at all (counted apart)
_NOT_RECORDED = "not_recorded"  # verified, but the read model failed to store it


class LiveSink(Protocol):
    """What the listener writes into (the read model's ``record_*``)."""

    def record_summary(self, interval: int, rejections: Mapping[str, int]) -> None: ...

    def record_forecast(self, household: str, body: ForecastBody, *, issued_s: int) -> None: ...

    def record_presence(self, household: str, *, online: bool, at_s: int) -> None: ...

    def record_broker(self, *, connected: bool, at_s: int) -> None: ...

    def record_forecaster_health(self, body: HealthBody, *, at_s: int) -> None: ...


class Writes:
    """Read-model writes one at a time, each in a worker thread (off the event loop)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def run(self, write: Callable[[], T]) -> T:
        async with self._lock:
            return await asyncio.to_thread(write)


@dataclass(frozen=True)
class _Judged:
    message: SignedMessage
    household: str | None  # the household of a household topic


def live_subscriptions(t: Topics) -> list[tuple[str, int]]:
    """What the dashboard reads from the bus (the broker's ACL grants exactly these)."""
    market = [t.announce, t.trades, t.checkpoint, t.summary, t.forecaster_health]
    household = [f"{t.root}/household/+/forecast", t.all_status]
    return [(topic, 1) for topic in (*market, *household)]


class Listener:
    """Judges each bus message and acts on those that verify."""

    def __init__(
        self,
        *,
        topics: Topics,
        operator_key: VerifyingKey,
        forecaster_key: VerifyingKey | None,
        household_key: Callable[[str], VerifyingKey | None],
        sink: LiveSink,
        writes: Writes,
        hub: Hub,
        metrics: DashboardMetrics,
        wake_sync: Callable[[], None],
        presence_counts: Callable[[], tuple[int, int]],
        now: Callable[[], float] = time.time,
    ) -> None:
        self.topics = topics
        self._operator = operator_key
        self._forecaster = forecaster_key if forecaster_key is not None else operator_key
        self._household_key = household_key
        self._sink, self._writes, self._hub, self._metrics = sink, writes, hub, metrics
        self._wake_sync = wake_sync
        self._presence_counts = presence_counts
        self._now = now
        self._last_seq: dict[tuple[str, str, str], int] = {}  # (kind, agent, topic) -> seq
        # The latest status of each household whose key is not in the read model yet
        # (the dashboard may hear a retained status before it folds the key entry).
        self._waiting: OrderedDict[str, Message] = OrderedDict()
        self.last_cleared: int | None = None
        self.heard: Heard | None = None  # the market's last announcement
        self._market_pushed: tuple[str, str | None] | None = None

    def subscriptions(self) -> list[tuple[str, int]]:
        return live_subscriptions(self.topics)

    async def run(self, transport: Transport) -> None:
        """Take the transport's messages until it closes."""
        async for message in transport.messages():
            try:
                await self.handle(message)
            except Exception:  # the read model failed to take it: log, count, go on
                _LOG.exception("could not record a message from %s", message.topic)
                self._metrics.mqtt_rejected.labels(reason=_NOT_RECORDED).inc()

    async def watch_broker(self, transport: Transport) -> None:
        """Record and push the broker connection's state as it changes."""
        while True:
            await transport.wait_connected()
            await self._broker_state(connected=True)
            await transport.wait_disconnected()
            await self._broker_state(connected=False)

    async def _broker_state(self, *, connected: bool) -> None:
        at_s = int(self._now())
        await self._writes.run(lambda: self._sink.record_broker(connected=connected, at_s=at_s))
        event = {"type": "health", "broker": {"configured": True, "connected": connected}}
        self._hub.broadcast(json.dumps(event))

    # ------------------------------------------------------------------ judging

    def _drop(self, reason: str, topic: str, detail: str) -> None:
        self._metrics.mqtt_rejected.labels(reason=reason).inc()
        _LOG.debug("dropped a message on %s (%s): %s", topic, reason, detail)

    def judge(self, message: Message) -> _Judged | None:
        """The message if it is one to act on (signed by the right key, in order), else
        None with the reason counted."""
        if not message.payload:  # a retained message cleared: nothing to judge
            return None
        try:
            judged = self._judge(message.topic, message.payload)
        except MessageError as exc:
            reason = _UNSIGNED if exc.reason is RejectReason.MALFORMED_JSON else exc.reason.value
            self._drop(reason, message.topic, exc.detail)
            return None
        self._metrics.mqtt_messages.labels(kind=judged.message.header.kind).inc()
        return judged

    def _judge(self, topic: str, payload: bytes) -> _Judged:
        kind, key, household = self._expected(topic)
        if kind is None:
            raise MessageError(RejectReason.BAD_TOPIC, "not a topic the dashboard reads")
        signed = decode_message(payload)
        header = signed.header
        if header.kind != kind:
            raise MessageError(RejectReason.SCHEMA, f"a {header.kind} message on this topic")
        if header.market != self.topics.market_id:
            raise MessageError(RejectReason.WRONG_MARKET, f"market {header.market}")
        if kind == "status" and household is not None:
            key = self._household_key(household)
            if key is None:
                self._wait_for_key(household, topic, payload)
                raise MessageError(RejectReason.UNKNOWN_KEY, f"no key for {household}")
            if header.agent != household:
                raise MessageError(RejectReason.KEY_MISMATCH, f"signed as {header.agent}")
        if key is None:
            raise MessageError(RejectReason.UNKNOWN_KEY, "no key to check it with")
        signed.verify(key)
        order_key = (kind, header.agent, topic)
        if header.seq <= self._last_seq.get(order_key, -1):
            raise MessageError(RejectReason.DUPLICATE, f"seq {header.seq} seen already")
        self._last_seq[order_key] = header.seq
        return _Judged(signed, household)

    def _wait_for_key(self, household: str, topic: str, payload: bytes) -> None:
        self._waiting[household] = Message(topic, payload, retain=False)
        self._waiting.move_to_end(household)
        while len(self._waiting) > MAX_WAITING:
            self._waiting.popitem(last=False)

    async def keys_changed(self) -> None:
        """Judge again the statuses that waited for their household's key (call after
        the read model folded key entries)."""
        ready = [h for h in self._waiting if self._household_key(h) is not None]
        for household in ready:
            await self.handle(self._waiting.pop(household))

    def _expected(self, topic: str) -> tuple[str | None, VerifyingKey | None, str | None]:
        """The kind a topic carries, the key that must sign it, and its household."""
        t = self.topics
        market = {
            t.announce: "announcement",
            t.trades: "trades",
            t.checkpoint: "checkpoint",
            t.summary: SummaryBody.KIND,
        }
        if topic in market:
            return market[topic], self._operator, None
        if topic == t.forecaster_health:
            return HealthBody.KIND, self._forecaster, None
        where = t.classify(topic)
        if where is None:
            return None, None, None
        if where.kind == "forecast":
            return "forecast", self._forecaster, where.agent
        if where.kind == "status":
            return "status", None, where.agent
        return None, None, None

    # ------------------------------------------------------------------ acting

    async def handle(self, message: Message) -> None:
        """Judge one message and act on it; never raises for what the bus sends."""
        judged = self.judge(message)
        if judged is None:
            return
        signed, header = judged.message, judged.message.header
        body = signed.body
        if isinstance(body, AnnouncementBody):
            self._announced(header.interval, body)
            if body.phase is Phase.CLEARED:
                self.last_cleared = header.interval
                self._wake_sync()
        elif header.kind == "checkpoint":
            self._wake_sync()
        elif isinstance(body, SummaryBody):
            await self._summary(header.interval, body)
        elif isinstance(body, ForecastBody) and judged.household is not None:
            household, at_s = judged.household, int(self._now())
            await self._writes.run(
                lambda: self._sink.record_forecast(household, body, issued_s=at_s)
            )
        elif isinstance(body, StatusBody) and judged.household is not None:
            await self._presence(judged.household, online=body.state is Presence.ONLINE)
        elif isinstance(body, HealthBody):
            await self._forecaster_health(body)

    def _announced(self, interval: int, body: AnnouncementBody) -> None:
        now_s = int(self._now())
        self.heard = Heard(interval, body.interval_s, body.phase.value, now_s)
        market = market_now(self.heard, now_s=now_s, last_closed=None, interval_s=body.interval_s)
        shown = (market["state"], market["clock"])
        if shown != self._market_pushed:
            self._market_pushed = shown
            self._hub.broadcast(json.dumps({"type": "health", "market": market}))

    async def _summary(self, interval: int, body: SummaryBody) -> None:
        rejections = dict(body.rejections)
        await self._writes.run(lambda: self._sink.record_summary(interval, rejections))
        event = {"type": "rejections", "interval": interval, "counts": dict(rejections)}
        self._hub.broadcast(json.dumps(event))

    async def _forecaster_health(self, body: HealthBody) -> None:
        at_s = int(self._now())
        await self._writes.run(lambda: self._sink.record_forecaster_health(body, at_s=at_s))
        shown = forecaster_json(body.to_json(), heard_s=at_s, now_s=at_s)
        self._hub.broadcast(json.dumps({"type": "health", "forecaster": shown}))

    async def _presence(self, household: str, *, online: bool) -> None:
        at_s = int(self._now())
        await self._writes.run(
            lambda: self._sink.record_presence(household, online=online, at_s=at_s)
        )
        online_n, known_n = await self._writes.run(self._presence_counts)
        self._hub.broadcast(json.dumps({"type": "presence", "online": online_n, "known": known_n}))
