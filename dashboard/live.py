"""The dashboard's MQTT listener: verified bus messages to the read model and to browsers (I/O).

The bus is a hostile network: anyone who can publish there may send anything. Every
message is decoded strictly and its signature checked before it counts; whatever is
malformed, unsigned, signed by the wrong key, for another market, of the wrong kind
for its topic or older than one already taken is dropped and counted
(``wattmesh_dashboard_mqtt_rejected{reason}``), never stored or pushed.

Who must have signed what:

- the market topics (``announce``, ``trades``, ``checkpoint``, ``summary``): the
  operator's key (given in the settings, else the one stored in the ledger);
- a household's forecast (``household/<id>/forecast``): the forecaster's key when one
  is configured (the agents trust only it), else the operator's (a deployment where
  the operator runs the forecaster under its own key); forecasts signed by any other
  key are dropped;
- a household's status (``household/<id>/status``): that household's registered key
  (from the read model's ``household`` table, as the ledger registered it), its
  header naming the household of the topic.

A sender's messages of one kind are taken in ``seq`` order only (a retained message
seen again after a reconnect, or a replayed old one, is dropped as ``duplicate``).
What is taken: a cleared announcement or a checkpoint wakes the log follower (which
folds the log and pushes the ``interval`` event once the interval is in the read
model); a summary's rejections are stored and pushed as a ``rejections`` event;
forecasts are stored (never pushed: they are a household's own figures); statuses
set the household's presence and push a ``presence`` event with counts only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import (
    DOMAIN_PREFIX,
    AnnouncementBody,
    ForecastBody,
    Phase,
    Presence,
    SignedMessage,
    StatusBody,
    canonical_bytes,
    decode_message,
    parse_header,
    parse_json,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Message, Transport
from wattmesh.dashboard._hub import Hub
from wattmesh.dashboard.metrics import DashboardMetrics

__all__ = ["Listener", "LiveSink", "Writes"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

SUMMARY_KIND = "summary"
_UNSIGNED = "unsigned"  # a payload that is no signed envelope at all (counted apart)


class LiveSink(Protocol):
    """What the listener writes into (the read model's ``record_*``)."""

    def record_summary(self, interval: int, rejections: Mapping[str, int]) -> None: ...

    def record_forecast(self, household: str, body: ForecastBody, *, issued_s: int) -> None: ...

    def record_presence(self, household: str, *, online: bool, at_s: int) -> None: ...

    def record_broker(self, *, connected: bool, at_s: int) -> None: ...


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
        self.last_cleared: int | None = None

    def subscriptions(self) -> list[tuple[str, int]]:
        t = self.topics
        market = [t.announce, t.trades, t.checkpoint, f"{t.root}/market/{SUMMARY_KIND}"]
        household = [f"{t.root}/household/+/forecast", t.all_status]
        return [(topic, 1) for topic in (*market, *household)]

    async def run(self, transport: Transport) -> None:
        """Take the transport's messages until it closes."""
        async for message in transport.messages():
            await self.handle(message)

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
        signed = _decode(payload, kind)
        header = signed.header
        if header.kind != kind:
            raise MessageError(RejectReason.SCHEMA, f"a {header.kind} message on this topic")
        if header.market != self.topics.market_id:
            raise MessageError(RejectReason.WRONG_MARKET, f"market {header.market}")
        if kind == "status" and household is not None:
            key = self._household_key(household)
            if key is None:
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

    def _expected(self, topic: str) -> tuple[str | None, VerifyingKey | None, str | None]:
        """The kind a topic carries, the key that must sign it, and its household."""
        t = self.topics
        market = {
            t.announce: "announcement",
            t.trades: "trades",
            t.checkpoint: "checkpoint",
            f"{t.root}/market/{SUMMARY_KIND}": SUMMARY_KIND,
        }
        if topic in market:
            return market[topic], self._operator, None
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
            if body.phase is Phase.CLEARED:
                self.last_cleared = header.interval
                self._wake_sync()
        elif header.kind == "checkpoint":
            self._wake_sync()
        elif header.kind == SUMMARY_KIND:
            await self._summary(header.interval, signed)
        elif isinstance(body, ForecastBody) and judged.household is not None:
            household, at_s = judged.household, int(self._now())
            await self._writes.run(
                lambda: self._sink.record_forecast(household, body, issued_s=at_s)
            )
        elif isinstance(body, StatusBody) and judged.household is not None:
            await self._presence(judged.household, online=body.state is Presence.ONLINE)

    async def _summary(self, interval: int, signed: SignedMessage) -> None:
        rejections = _summary_rejections(signed)
        await self._writes.run(lambda: self._sink.record_summary(interval, rejections))
        event = {"type": "rejections", "interval": interval, "counts": dict(rejections)}
        self._hub.broadcast(json.dumps(event))

    async def _presence(self, household: str, *, online: bool) -> None:
        at_s = int(self._now())
        await self._writes.run(
            lambda: self._sink.record_presence(household, online=online, at_s=at_s)
        )
        online_n, known_n = await self._writes.run(self._presence_counts)
        self._hub.broadcast(json.dumps({"type": "presence", "online": online_n, "known": known_n}))


@dataclass(frozen=True)
class _SummaryBody:
    """A summary's body read loosely, until ``broker.bodies`` knows the kind."""

    KIND: ClassVar[str] = SUMMARY_KIND
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.fields


def _decode(payload: bytes, kind: str) -> SignedMessage:
    """:func:`decode_message`; a summary also when the wire contract lacks its kind."""
    try:
        return decode_message(payload)
    except MessageError as exc:
        if kind != SUMMARY_KIND or exc.reason is not RejectReason.SCHEMA:
            raise
    outer = parse_json(payload)
    signed = outer.get("signed") if isinstance(outer, dict) else None
    if not (isinstance(signed, dict) and isinstance(outer.get("sig"), str)):
        raise MessageError(RejectReason.SCHEMA, "not a signed envelope")
    if signed.get("domain") != DOMAIN_PREFIX + SUMMARY_KIND or not isinstance(
        signed.get("body"), dict
    ):
        raise MessageError(RejectReason.SCHEMA, "not a summary")
    try:
        header = parse_header(signed, SUMMARY_KIND)
        signature = base64.b64decode(outer["sig"], validate=True)
    except (KeyError, ValueError) as exc:
        raise MessageError(RejectReason.SCHEMA, f"summary header: {exc}") from exc
    body = _SummaryBody(signed["body"])
    return SignedMessage(header, body, signature, canonical_bytes(signed))


def _summary_rejections(signed: SignedMessage) -> dict[str, int]:
    """The ``rejections`` of a (verified) summary: reason -> count (the schema's)."""
    counts = signed.body.to_json().get("rejections")
    if not isinstance(counts, dict):
        return {}
    return {
        str(reason): n
        for reason, n in counts.items()
        if type(n) is int and n > 0 and len(str(reason)) <= 64
    }
