"""MQTT 3.1.1 transport with automatic reconnection, built on aiomqtt 2.x.

aiomqtt (>=2.5,<3) gives one connection per ``Client`` and never reconnects. This
module wraps it in a supervisor that reconnects with exponential backoff and full
jitter, resubscribes after every (re)connect, republishes caller-chosen "on connect"
messages (e.g. a retained ``online`` status) and retries QoS 1 publishes that were
cut off by a dropped connection (at-least-once: the receiver may see duplicates).

Sessions are clean (``clean_session=True``) by default: a persistent session would
not buy reliable redelivery of our *own* publishes, because aiomqtt keeps in-flight
QoS state inside the ``Client`` object (a new one is made per connection; the
transport retries instead), and amqtt skips the offline QoS 1 queue for anonymous
sessions; a persistent session of a dead subscriber also makes the broker queue
without bound. Subscriptions are therefore re-sent after every connect and a message
published while a clean-session subscriber is offline is not kept for it (use
retained messages for state). A receiver that must not miss messages published
while it reconnects (the ledger's ingest) chooses :attr:`Session.PERSISTENT`: the
broker then queues QoS 1 messages for it while it is away and redelivers
unacknowledged ones; over a broker restart only if the broker persists sessions.

An acknowledged inbound message is never lost with the connection: the transport
reads aiomqtt's queue itself and rescues what is left in it at a disconnect
(:mod:`broker._transport_reader` says why).

Nothing here depends on MQTT 5 features. Times are in seconds (``_s`` suffix).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiomqtt

from wattmesh.broker._transport_config import (
    DEFAULT_MQTT_PORT,
    BrokerAddress,
    ConnectMessages,
    Session,
    TlsConfig,
    TransportConfig,
    Will,
    _check_publish_topic,
    _check_qos,
    backoff_delays,
    parse_broker_url,
)
from wattmesh.broker._transport_link import Link
from wattmesh.broker._transport_reader import read_queue, rescue_queued
from wattmesh.broker.errors import BrokerError, FailureError

__all__ = [
    "DEFAULT_MQTT_PORT",
    "BrokerAddress",
    "ConnectMessages",
    "Link",
    "Message",
    "Session",
    "TlsConfig",
    "Transport",
    "TransportClosedError",
    "TransportConfig",
    "Will",
    "backoff_delays",
    "parse_broker_url",
]

_LOG = logging.getLogger(__name__)
_MQTT_LOG = logging.getLogger(f"{__name__}.mqtt")  # aiomqtt/paho's own messages
# aiomqtt warns once more than this many publishes await their acknowledgement; a
# service that publishes to many households at once is expected to exceed its 10.
_PENDING_PUBLISH_WARNING = 10_000


@dataclass(frozen=True)
class Message:
    """An inbound message. ``retain`` is true only when it came from the retained store."""

    topic: str
    payload: bytes
    retain: bool


class TransportClosedError(BrokerError, FailureError):
    """The transport was closed (or its supervisor failed) while an operation waited."""


# --------------------------------------------------------------------------- transport


@dataclass(frozen=True)
class _Connection:
    """One live aiomqtt connection; ``lost`` resolves when it must no longer be used."""

    client: aiomqtt.Client
    lost: asyncio.Future[None]


class Transport:
    """Reconnecting MQTT 3.1.1 client; use as ``async with Transport(...) as t``.

    Entering starts a background supervisor and returns at once (the broker may be
    down); :meth:`wait_connected` waits for the first connection. After every
    (re)connect the supervisor subscribes to ``subscriptions`` (``(filter, qos)``)
    and publishes ``on_connect_publish`` (``(topic, payload, qos, retain)``) before
    the transport counts as connected, so a publish never overtakes them.
    ``per_connect``, when given, is called before each connection attempt for that
    connection's last will and further on-connect messages (:class:`ConnectMessages`),
    e.g. a signed ``offline`` and ``online`` status with fresh sequence numbers.

    Inbound messages are buffered in a queue of ``config.inbound_queue_size``; when
    the consumer of :meth:`messages` falls behind, the reader stops draining aiomqtt,
    whose own queue (same bound) then discards further messages with a logged
    warning. aiomqtt offers no way to pause the socket, so this is bounded memory,
    not TCP-level backpressure.

    Leaving disconnects cleanly (the broker does not publish the will); publish an
    ``offline`` status yourself before leaving.
    """

    def __init__(
        self,
        config: TransportConfig,
        *,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_connect_publish: Sequence[tuple[str, bytes, int, bool]] = (),
        per_connect: Callable[[], ConnectMessages] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        for topic_filter, qos in subscriptions:
            if not topic_filter:
                msg = "subscription filter must not be empty"
                raise ValueError(msg)
            _check_qos(qos)
        for topic, _payload, qos, _retain in on_connect_publish:
            _check_publish_topic(topic)
            _check_qos(qos)
        self._config = config
        self._subscriptions = tuple(subscriptions)
        self._on_connect_publish = tuple(on_connect_publish)
        if per_connect is not None and config.will is not None:
            raise ValueError("give the will in the config or per connection, not both")
        self._per_connect = per_connect
        self._connect_publish: tuple[tuple[str, bytes, int, bool], ...] = ()
        self._rng = rng if rng is not None else random.Random()
        self._inbound: asyncio.Queue[Message] = asyncio.Queue(maxsize=config.inbound_queue_size)
        self._conn: _Connection | None = None
        self._connected_evt = asyncio.Event()
        self._disconnected_evt = asyncio.Event()
        self._disconnected_evt.set()
        self._closed: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._ever_connected = False
        self._reconnects = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._supervisor is not None:
            msg = "Transport can be entered only once"
            raise RuntimeError(msg)
        self._closed = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"mqtt-transport-{self._config.client_id}"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Disconnect cleanly and stop reconnecting; idempotent."""
        if self._supervisor is None or self._closed is None:
            return
        if not self._closed.done():
            self._closed.set_result(None)
        # The supervisor finishes its current connect/subscribe step (bounded by the
        # operation timeout) and then disconnects; cancelling a connect half-way
        # would leak aiomqtt's socket.
        grace_s = 2 * self._config.operation_timeout_s + 1.0
        done, _ = await asyncio.wait({self._supervisor}, timeout=grace_s)
        if not done:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        elif not self._supervisor.cancelled() and (failure := self._supervisor.exception()):
            raise failure

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True while a connection is up, subscribed and on-connect messages are sent."""
        return self._conn is not None and not self._conn.lost.done()

    @property
    def reconnects(self) -> int:
        """Number of successful connections after the first one."""
        return self._reconnects

    async def wait_connected(self) -> None:
        """Wait until connected; raises TransportClosedError if closed meanwhile."""
        await self._current_connection()

    async def wait_disconnected(self) -> None:
        """Wait until the transport has no usable connection (returns at once if so)."""
        await self._disconnected_evt.wait()

    # ------------------------------------------------------------------ publishing

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish ``payload`` to ``topic``, waiting for a connection first.

        QoS 1 and 2 return once the broker acknowledged; QoS 0 once written to the
        socket. If the connection drops before that, the publish is retried on the
        next connection (at-least-once; duplicates possible). Raises
        TransportClosedError if the transport closes while waiting.
        """
        _check_publish_topic(topic)
        _check_qos(qos)
        while True:
            conn = await self._current_connection()
            if await self._publish_on(conn, topic, payload, qos, retain):
                return

    async def _publish_on(
        self, conn: _Connection, topic: str, payload: bytes, qos: int, retain: bool
    ) -> bool:
        """One attempt on ``conn``; False if the connection was lost meanwhile."""
        attempt = asyncio.ensure_future(
            conn.client.publish(
                topic, payload, qos=qos, retain=retain, timeout=self._config.operation_timeout_s
            )
        )
        try:
            await _wait_first(attempt, conn.lost)
        finally:
            if not attempt.done():
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
        if attempt.cancelled():
            return False
        error = attempt.exception()
        if error is None:
            return True
        if isinstance(error, aiomqtt.MqttError):
            _LOG.info("publish to %s failed (%s); reconnecting and retrying", topic, error)
            self._mark_lost(conn)
            return False
        raise error

    async def link(self) -> Link:
        """Wait for a connection and return a handle that publishes on it only.

        For a sender that keeps several publishes in flight in a strict order (the
        agent's outbox): see :class:`Link`. Raises TransportClosedError if the
        transport closes while waiting.
        """
        conn = await self._current_connection()
        return Link(conn.lost, functools.partial(self._publish_on, conn))

    # ------------------------------------------------------------------ receiving

    async def messages(self) -> AsyncIterator[Message]:
        """Messages from all subscriptions, across reconnects, in arrival order.

        Iteration ends once the transport is closed and the buffer is drained.
        """
        closed = self._require_started()
        while True:
            if not self._inbound.empty():
                yield self._inbound.get_nowait()
                continue
            if closed.done():
                return
            getter = asyncio.ensure_future(self._inbound.get())
            try:
                await _wait_first(getter, closed)
            finally:
                if not getter.done():
                    getter.cancel()
                    await asyncio.gather(getter, return_exceptions=True)
            if not getter.cancelled():
                yield getter.result()

    def buffered(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages already received, in arrival order, without waiting.

        For consumers that work in batches: take one from :meth:`messages`, then what
        is buffered behind it.
        """
        out: list[Message] = []
        inbound = self._inbound
        while len(out) < limit and not inbound.empty():
            out.append(inbound.get_nowait())
        return out

    # ------------------------------------------------------------------ supervisor

    def _require_started(self) -> asyncio.Future[None]:
        if self._closed is None:
            msg = "Transport is not started: use 'async with Transport(...)'"
            raise RuntimeError(msg)
        return self._closed

    async def _current_connection(self) -> _Connection:
        closed = self._require_started()
        while True:
            if closed.done():
                raise TransportClosedError("transport closed") from self._failure
            conn = self._conn
            if conn is not None and not conn.lost.done():
                return conn
            waiter = asyncio.ensure_future(self._connected_evt.wait())
            try:
                await _wait_first(waiter, closed)
            finally:
                waiter.cancel()

    def _mark_lost(self, conn: _Connection) -> None:
        if not conn.lost.done():
            conn.lost.set_result(None)
        if self._conn is conn:
            self._conn = None
            self._connected_evt.clear()
            self._disconnected_evt.set()

    async def _supervise(self) -> None:
        closed = self._require_started()
        try:
            delays = self._new_backoff()
            while not closed.done():
                established = False
                try:
                    established = await self._connect_and_serve(closed)
                except aiomqtt.MqttError as exc:
                    _LOG.warning("MQTT connection to %s failed: %s", self._config.address.url, exc)
                if closed.done():
                    break
                if established:
                    delays = self._new_backoff()
                delay_s = next(delays)
                _LOG.info("reconnecting to %s in %.2f s", self._config.address.url, delay_s)
                await asyncio.wait({closed}, timeout=delay_s)
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            if not closed.done():
                closed.set_result(None)

    def _new_backoff(self) -> Iterator[float]:
        return backoff_delays(self._config.backoff_initial_s, self._config.backoff_max_s, self._rng)

    def _new_client(self) -> aiomqtt.Client:
        cfg = self._config
        fixed = cfg.will
        if self._per_connect is not None:  # this connection's own will and announcements
            messages = self._per_connect()
            fixed, self._connect_publish = messages.will, messages.publish
            for topic, _payload, qos, _retain in self._connect_publish:
                _check_publish_topic(topic)
                _check_qos(qos)
        will = (
            None
            if fixed is None
            else aiomqtt.Will(fixed.topic, fixed.payload, fixed.qos, fixed.retain)
        )
        try:
            tls_context = None if cfg.tls is None else cfg.tls.context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; retried with backoff
            msg = f"cannot set up TLS: {exc}"
            raise aiomqtt.MqttError(msg) from exc
        client = aiomqtt.Client(
            cfg.address.host,
            cfg.address.port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            will=will,
            tls_context=tls_context,
            clean_session=cfg.session is Session.CLEAN,
            keepalive=cfg.keepalive_s,
            timeout=cfg.operation_timeout_s,
            max_queued_incoming_messages=cfg.inbound_queue_size,
            max_inflight_messages=cfg.max_inflight,
            logger=_MQTT_LOG,
        )
        client.pending_calls_threshold = _PENDING_PUBLISH_WARNING
        return client

    async def _connect_and_serve(self, closed: asyncio.Future[None]) -> bool:
        """Run one connection until it is lost or the transport closes.

        Returns True if the connection was fully established (subscribed and
        on-connect messages sent). Raises aiomqtt.MqttError if that failed.
        """
        client = self._new_client()
        carry: list[Message] = []  # the message the reader holds while it waits
        try:
            async with client:
                await self._serve(client, carry, closed)
        finally:
            # Also what paho acknowledged while the clean DISCONNECT was under way.
            await rescue_queued(client, self._inbound, carry, _inbound_message)
        return True

    async def _serve(
        self, client: aiomqtt.Client, carry: list[Message], closed: asyncio.Future[None]
    ) -> None:
        """Subscribe, publish the on-connect messages, then read until the end."""
        _disable_nagle(client)
        if self._subscriptions:
            granted = await client.subscribe(list(self._subscriptions))
            refused = [
                topic_filter
                for (topic_filter, _qos), code in zip(self._subscriptions, granted, strict=True)
                if _refused(code)
            ]
            if refused:
                msg = f"broker refused subscriptions {refused}"
                raise aiomqtt.MqttError(msg)
        for topic, payload, qos, retain in (*self._on_connect_publish, *self._connect_publish):
            await client.publish(topic, payload, qos=qos, retain=retain)
        if closed.done():
            return
        conn = _Connection(client, asyncio.get_running_loop().create_future())
        reader = asyncio.create_task(
            read_queue(client, self._inbound, carry, _inbound_message),
            name="mqtt-transport-reader",
        )
        reader.add_done_callback(lambda _task: self._mark_lost(conn))
        self._conn = conn
        self._disconnected_evt.clear()
        self._connected_evt.set()
        if self._ever_connected:
            self._reconnects += 1
            _LOG.info("reconnected to %s", self._config.address.url)
        self._ever_connected = True
        # aiomqtt's own "connection gone" future: the reader does not end on a drop
        # (it waits on aiomqtt's queue, or for room in a full buffer).
        gone: asyncio.Future[None] = client._disconnected
        try:
            await _wait_first(conn.lost, closed, gone)
        finally:
            if gone.done() and not gone.cancelled():
                gone.exception()  # retrieved: the loss is logged below
            self._mark_lost(conn)
            reader.cancel()
            (outcome,) = await asyncio.gather(reader, return_exceptions=True)
            if isinstance(outcome, Exception) and not isinstance(outcome, aiomqtt.MqttError):
                _LOG.error("inbound reader failed", exc_info=outcome)
        if not closed.done():
            _LOG.warning("MQTT connection to %s lost", self._config.address.url)


# ----------------------------------------------------------------------------- helpers


def _inbound_message(message: aiomqtt.Message) -> Message:
    # aiomqtt types the payload as bytes (paho delivers bytes for MQTT 3.1.1)
    return Message(message.topic.value, bytes(message.payload), message.retain)


async def _wait_first(*futures: asyncio.Future[Any]) -> None:
    """Wait until any of ``futures`` is done (none is cancelled or consumed)."""
    await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)


def _disable_nagle(client: aiomqtt.Client) -> None:
    """Send small MQTT packets at once (paho leaves Nagle's algorithm on).

    With Nagle on, a publish that follows another before its TCP ACK waits for the
    peer's delayed ACK (~40 ms on Linux): every request/response hop pays it.
    """
    sock = client._client.socket()  # paho's socket; aiomqtt exposes no setter
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _refused(code: object) -> bool:
    """True for a SUBACK failure (0x80); paho gives ReasonCode objects or ints."""
    is_failure = getattr(code, "is_failure", None)
    if isinstance(is_failure, bool):
        return is_failure
    return code == 0x80
