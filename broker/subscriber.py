"""A receive-only MQTT 3.1.1 client for high message rates: the ledger's ingest.

:class:`broker.transport.Transport` (aiomqtt over paho) costs well over 100 us of
Python per received message: paho parses each packet byte by byte and writes each
PUBACK with its own ``send``, and every message passes through two queues and a
future. At thousands of signed orders per second that, not the ledger, was the
bottleneck (``bench/bench_ingest_mqtt.py``). :class:`Subscriber` is an asyncio
protocol instead: each read of the socket is parsed in one pass
(:class:`broker._mqtt_packets.PacketReader`), its PUBACKs go out in one write, and the
messages land in one buffer that :meth:`Subscriber.messages` and
:meth:`Subscriber.buffered` drain.

It shares :class:`broker.transport.TransportConfig` (address, client id, credentials,
TLS, keepalive, backoff, session, ``inbound_queue_size``) and the
:class:`broker.transport.Message` type with the transport, and behaves like it where
both apply: reconnects with exponential backoff and full jitter, subscribes again
after every connect, keeps a persistent session when asked (the broker queues QoS 1
messages while it is away). It publishes nothing and has no last will (the ledger
publishes through its :class:`~broker.transport.Transport`).

Delivery: a QoS 1 message is acknowledged as soon as it has been read into the
buffer, as paho does; a message the broker sends again (its PUBACK was lost with the
connection) arrives again, with ``dup`` set on the wire. Backpressure: when the
buffer holds ``inbound_queue_size`` messages the client stops reading the socket
(TCP then holds the broker back) and reads again below half of it. A packet the
broker should not send is a :class:`~broker._mqtt_packets.MqttProtocolError`: the
connection is dropped, counted and made again. A PUBLISH above
:data:`~broker._mqtt_packets.MAX_PACKET_BYTES` (a broker without the documented
``message_size_limit``) is not: it is skipped as it streams in, acknowledged, counted
(:attr:`Subscriber.oversize`) and logged in aggregate, and the connection stays up.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

from wattmesh.broker._mqtt_packets import (
    CONNACK,
    DISCONNECT_BYTES,
    MAX_PACKET_BYTES,
    PINGREQ_BYTES,
    PINGRESP,
    SUBACK,
    Control,
    MqttProtocolError,
    Oversize,
    PacketReader,
    Publish,
    connack_problem,
    connect_packet,
    puback_packet,
    suback_codes,
    subscribe_packet,
)
from wattmesh.broker._transport_config import Session, TransportConfig, backoff_delays
from wattmesh.broker.errors import BrokerError
from wattmesh.broker.transport import Message

__all__ = ["Subscriber"]

_LOG = logging.getLogger(__name__)
_SUBSCRIBE_ID = 1


class SubscriberFailed(BrokerError):
    """The subscriber's connection supervisor died of an unexpected error."""


class _Protocol(asyncio.Protocol):
    """One connection: parse what arrives, acknowledge it, hand messages over."""

    def __init__(self, owner: Subscriber) -> None:
        self._owner = owner
        self._reader = PacketReader()
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = loop.create_future()
        self.connack: asyncio.Future[bytes] = loop.create_future()
        self.suback: asyncio.Future[bytes] = loop.create_future()
        self.last_pong = loop.time()
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._reader.feed(data)
        except MqttProtocolError as exc:
            self.fail(exc)
            return
        acks: list[bytes] = []
        inbound = self._owner._inbound
        before = len(inbound)
        for packet in packets:
            if isinstance(packet, Publish):
                if packet.packet_id is not None:
                    acks.append(puback_packet(packet.packet_id))
                inbound.append(Message(packet.topic, packet.payload, packet.retain))
            elif isinstance(packet, Oversize):
                # Acknowledged and dropped: refusing it would have the broker send it
                # again for ever (persistent session, retained message).
                if packet.packet_id is not None:
                    acks.append(puback_packet(packet.packet_id))
                self._owner._oversize(packet)
            else:
                self._control(packet)
        if acks and self.transport is not None:
            self.transport.write(b"".join(acks))
        if len(inbound) > before:
            self._owner._arrived.set()
        if len(inbound) >= self._owner._high_water and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def _control(self, packet: Control) -> None:
        if packet.kind == CONNACK and not self.connack.done():
            self.connack.set_result(packet.body)
        elif packet.kind == SUBACK and not self.suback.done():
            self.suback.set_result(packet.body)
        elif packet.kind == PINGRESP:
            self.last_pong = asyncio.get_running_loop().time()
        else:
            self.fail(MqttProtocolError(f"unexpected packet type {packet.kind} now"))

    def fail(self, exc: MqttProtocolError) -> None:
        """Drop the connection because of what the broker sent."""
        self._owner.protocol_errors += 1
        _LOG.warning("MQTT protocol error from the broker: %s", exc)
        if not self.lost.done():
            self.lost.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        for waiter in (self.connack, self.suback):
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection lost during the handshake"))
                waiter.exception()  # retrieved here; whoever awaits it still gets it


class Subscriber:
    """Receive-only MQTT client; use as ``async with Subscriber(config, subs) as s``."""

    def __init__(
        self,
        config: TransportConfig,
        subscriptions: Sequence[tuple[str, int]],
        *,
        rng: random.Random | None = None,
    ) -> None:
        if config.will is not None:
            raise ValueError("a subscriber has no last will (it publishes nothing)")
        if not subscriptions:
            raise ValueError("subscribe to at least one topic filter")
        self._config = config
        self._subscriptions = list(subscriptions)
        self._rng = rng or random.Random()
        self._inbound: deque[Message] = deque()
        self._high_water = config.inbound_queue_size
        self._arrived = asyncio.Event()
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()  # set at every connect
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._protocol: _Protocol | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self.connects = 0
        self.protocol_errors = 0
        self.oversize = 0  # PUBLISH packets over MAX_PACKET_BYTES, acknowledged and dropped

    async def __aenter__(self) -> Self:
        self._closed = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(self._supervise(), name="mqtt-subscriber")
        self._supervisor.add_done_callback(self._supervisor_ended)
        return self

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        """A supervisor that dies of an unexpected error ends :meth:`messages` with it
        (after what is buffered), instead of leaving the reader waiting for ever."""
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
            self._closing = True
            self._arrived.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect cleanly and stop; buffered messages stay readable."""
        self._closing = True
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            protocol.transport.write(DISCONNECT_BYTES)
            protocol.transport.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            # Its end, even a failure (already handed to messages()), is not close()'s.
            await asyncio.wait([self._supervisor])
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._arrived.set()

    async def wait_connected(self, timeout_s: float | None = None, *, connects: int = 1) -> None:
        """Return once connected and subscribed, on the ``connects``-th connection or a
        later one (TimeoutError after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while not (self._connected.is_set() and self.connects >= connects):
                self._changed.clear()
                await self._changed.wait()

    # ------------------------------------------------------------------ consuming

    async def messages(self) -> AsyncIterator[Message]:
        """Every message in arrival order, across reconnects, until :meth:`close`."""
        inbound = self._inbound
        while True:
            if inbound:
                message = inbound.popleft()
                self._resume_if_drained()
                yield message
                continue
            if self._failure is not None:
                raise SubscriberFailed(f"the MQTT subscriber stopped: {self._failure!r}")
            if self._closing:
                return
            self._arrived.clear()
            await self._arrived.wait()

    def buffered(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages already received, in arrival order, without waiting."""
        inbound = self._inbound
        take = min(limit, len(inbound))
        out = [inbound.popleft() for _ in range(take)]
        self._resume_if_drained()
        return out

    def _resume_if_drained(self) -> None:
        protocol = self._protocol
        if (
            protocol is not None
            and protocol.paused
            and protocol.transport is not None
            and len(self._inbound) <= self._high_water // 2
        ):
            protocol.paused = False
            protocol.transport.resume_reading()

    def _oversize(self, packet: Oversize) -> None:
        """Count an oversize PUBLISH; log the 1st, 2nd, 4th, 8th... (aggregated)."""
        self.oversize += 1
        if self.oversize & (self.oversize - 1) == 0:
            _LOG.warning(
                "dropped an oversize message on %.200r (%d bytes, limit %d): acknowledged "
                "and skipped, %d so far",
                packet.topic,
                packet.size,
                MAX_PACKET_BYTES,
                self.oversize,
            )

    # ----------------------------------------------------------------- connection

    async def _supervise(self) -> None:
        cfg = self._config
        delays = backoff_delays(cfg.backoff_initial_s, cfg.backoff_max_s, self._rng)
        while not self._closing:
            try:
                if await self._connect_and_serve():
                    delays = backoff_delays(cfg.backoff_initial_s, cfg.backoff_max_s, self._rng)
            except (OSError, TimeoutError, ConnectionError, MqttProtocolError) as exc:
                _LOG.warning("MQTT subscriber connection to %s: %s", cfg.address.url, exc)
            finally:
                self._connected.clear()
                self._protocol = None
            if self._stopping():
                return
            delay_s = next(delays)
            _LOG.info("subscriber reconnecting to %s in %.2f s", cfg.address.url, delay_s)
            await asyncio.sleep(delay_s)  # backoff between attempts, not synchronisation

    def _stopping(self) -> bool:
        return self._closing

    async def _connect_and_serve(self) -> bool:
        """One connection until it is lost; True if it got as far as subscribed."""
        cfg = self._config
        loop = asyncio.get_running_loop()
        protocol = _Protocol(self)
        ssl_context = None if cfg.tls is None else cfg.tls.context()
        async with asyncio.timeout(cfg.operation_timeout_s):
            await loop.create_connection(
                lambda: protocol,
                cfg.address.host,
                cfg.address.port,
                ssl=ssl_context,
                server_hostname=cfg.address.host if ssl_context is not None else None,
            )
        self._protocol = protocol
        transport = protocol.transport
        assert transport is not None
        established = False
        try:
            await self._handshake(protocol, transport)
            established = True
            self.connects += 1
            self._connected.set()
            self._changed.set()
            await self._keep_alive(protocol, transport)
        except ConnectionError:
            if not protocol.lost.done() or protocol.lost.exception() is None:
                raise  # else the broker's protocol error below says more
        finally:
            transport.abort()
        reason = protocol.lost.exception() if protocol.lost.done() else None
        if reason is not None and not self._closing:
            raise reason
        return established

    async def _handshake(self, protocol: _Protocol, transport: asyncio.Transport) -> None:
        cfg = self._config
        transport.write(
            connect_packet(
                cfg.client_id,
                keepalive_s=cfg.keepalive_s,
                clean_session=cfg.session is Session.CLEAN,
                username=cfg.username,
                password=cfg.password,
            )
        )
        async with asyncio.timeout(cfg.operation_timeout_s):
            problem = connack_problem(await protocol.connack)
            if problem is not None:
                raise MqttProtocolError(f"broker refused the connection: {problem}")
            transport.write(subscribe_packet(_SUBSCRIBE_ID, self._subscriptions))
            codes = suback_codes(await protocol.suback, _SUBSCRIBE_ID)
        pairs = zip(self._subscriptions, codes, strict=False)
        refused = [topic_filter for (topic_filter, _qos), code in pairs if code & 0x80]
        if refused or len(codes) != len(self._subscriptions):
            raise MqttProtocolError(f"broker refused subscriptions {refused or codes!r}")

    async def _keep_alive(self, protocol: _Protocol, transport: asyncio.Transport) -> None:
        """Ping every half keepalive; drop a connection that stops answering."""
        keepalive_s = self._config.keepalive_s
        loop = asyncio.get_running_loop()
        while not protocol.lost.done():
            await asyncio.wait({protocol.lost}, timeout=keepalive_s / 2)
            if protocol.lost.done():
                return
            if loop.time() - protocol.last_pong > keepalive_s * 1.5:
                _LOG.warning("broker stopped answering pings; reconnecting")
                return
            transport.write(PINGREQ_BYTES)
