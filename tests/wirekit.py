"""A TCP proxy between MQTT 3.1.1 clients and the broker that watches the wire.

It forwards bytes unchanged in both directions and parses the MQTT packets as they
pass: every PUBLISH from the client (its payload and packet id, per connection) and
every PUBACK from the broker, and the other way round every QoS 1 PUBLISH the broker
delivers and the client's PUBACK for it (:attr:`WireConnection.consumed`: what the
client has taken off the broker's hands). ``outstanding`` is the number of QoS 1
publishes that have passed towards the broker and whose PUBACK has not passed back
yet: the client has at least that many unacknowledged publishes out, since it cannot
have an acknowledgement the proxy has not forwarded. When either side closes, the
proxy closes the other, so killing the broker disconnects the client as it would
directly.

Controls for outage tests: :meth:`MqttTap.swallow_acks` stops forwarding anything
from the broker to the client (the broker has the publishes, the client never
learns it: PUBACKs lost with the connection), :meth:`MqttTap.refuse` stops listening
until :meth:`MqttTap.listen` (connections are refused, so the client retries with
backoff), and :meth:`MqttTap.cut` drops the open connections (the client
reconnects). :meth:`MqttTap.wait_until` waits for a condition on what passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from wattmesh.broker._mqtt_packets import FrameReader
from wattmesh.broker.transport import BrokerAddress

_PUBLISH = 3
_PUBACK = 4
_CHUNK = 65536


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes


@dataclass
class WireConnection:
    """What passed over one client connection."""

    sent: list[Publish] = field(default_factory=list)  # PUBLISH packets, in wire order
    acked: list[Publish] = field(default_factory=list)  # those whose PUBACK passed back
    # QoS 1 PUBLISH packets from the broker whose PUBACK the client sent, in that order
    consumed: list[Publish] = field(default_factory=list)
    _by_packet_id: dict[int, Publish] = field(default_factory=dict)
    _delivered: dict[int, Publish] = field(default_factory=dict)  # from the broker

    def payloads(self, topic: str) -> list[bytes]:
        return [p.payload for p in self.sent if p.topic == topic]


class MqttTap:
    """Use as ``async with MqttTap(broker_address) as tap``; clients connect to
    ``tap.address``."""

    def __init__(self, upstream: BrokerAddress) -> None:
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.connections: list[WireConnection] = []
        self.outstanding = 0  # on the current connection
        self.max_outstanding = 0
        self._watchers: list[tuple[int, asyncio.Event]] = []
        self._swallowing = False
        self._port = 0
        self._changed = asyncio.Event()  # set whenever a packet was parsed

    @property
    def address(self) -> BrokerAddress:
        assert self._port, "use 'async with MqttTap(...)'"
        return BrokerAddress("127.0.0.1", self._port)

    def payloads(self, topic: str) -> list[bytes]:
        """PUBLISH payloads to ``topic`` over all connections, in wire order."""
        return [p for conn in self.connections for p in conn.payloads(topic)]

    def consumed(self) -> list[Publish]:
        """What clients acknowledged of the broker's QoS 1 deliveries, all connections."""
        return [p for conn in self.connections for p in conn.consumed]

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Return once ``condition()`` holds, checked after every packet that passes."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def outstanding_reached(self, count: int) -> asyncio.Event:
        """An event set once ``outstanding`` has been at least ``count``."""
        event = asyncio.Event()
        if self.max_outstanding >= count:
            event.set()
        else:
            self._watchers.append((count, event))
        return event

    def outstanding_now(self, count: int) -> asyncio.Event:
        """An event set once ``outstanding`` is at least ``count``, now or later (not
        counting earlier moments, unlike :meth:`outstanding_reached`)."""
        event = asyncio.Event()
        if self.outstanding >= count:
            event.set()
        else:
            self._watchers.append((count, event))
        return event

    def swallow_acks(self) -> None:
        """From now on, drop everything the broker sends on the current connection."""
        self._swallowing = True

    def refuse(self) -> None:
        """Stop listening (connections already open stay)."""
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        """Drop every open connection (both sides are closed; the clients see a loss)."""
        for task in list(self._handlers):
            task.cancel()

    async def listen(self) -> None:
        """Listen again, on the same port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._relay(client_r, client_w)
        except asyncio.CancelledError:
            pass  # leaving the tap: asyncio's server would log a cancelled handler
        finally:
            self._handlers.discard(handler)
            client_w.close()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(
                self._upstream.host, self._upstream.port
            )
        except OSError:
            return
        conn = WireConnection()
        self.connections.append(conn)
        self.outstanding = 0
        self._swallowing = False
        up = asyncio.create_task(
            self._pump(client_r, broker_w, FrameReader(), lambda p: self._from_client(conn, p))
        )
        down = asyncio.create_task(
            self._pump(
                broker_r,
                client_w,
                FrameReader(),
                lambda p: self._from_broker(conn, p),
                swallowed=lambda: self._swallowing and conn is self.connections[-1],
            )
        )
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            client_w.close()
            broker_w.close()
            with contextlib.suppress(OSError):
                await broker_w.wait_closed()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        packets: FrameReader,
        seen: Callable[[tuple[int, bytes]], None],
        swallowed: Callable[[], bool] = lambda: False,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                if swallowed():
                    continue
                for packet in packets.feed(data):
                    seen(packet)
                writer.write(data)
                await writer.drain()

    def _from_client(self, conn: WireConnection, packet: tuple[int, bytes]) -> None:
        self._changed.set()
        first, body = packet
        if first >> 4 == _PUBACK:
            delivered = conn._delivered.pop(int.from_bytes(body[:2], "big"), None)
            if delivered is not None:
                conn.consumed.append(delivered)
            return
        if first >> 4 != _PUBLISH:
            return
        publish, packet_id = _publish(first, body)
        conn.sent.append(publish)
        if packet_id is None:
            return
        conn._by_packet_id[packet_id] = publish
        if conn is self.connections[-1]:
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)
            for count, event in self._watchers:
                if self.outstanding >= count:
                    event.set()

    def _from_broker(self, conn: WireConnection, packet: tuple[int, bytes]) -> None:
        self._changed.set()
        first, body = packet
        if first >> 4 == _PUBLISH:
            publish, packet_id = _publish(first, body)
            if packet_id is not None and (first >> 1) & 3 == 1:
                conn._delivered[packet_id] = publish
            return
        if first >> 4 != _PUBACK:
            return
        publish = conn._by_packet_id.pop(int.from_bytes(body[:2], "big"), None)
        if publish is None:
            return  # not for a publish seen here (the broker would be at fault)
        conn.acked.append(publish)
        if conn is self.connections[-1]:
            self.outstanding -= 1


def _publish(first: int, body: bytes) -> tuple[Publish, int | None]:
    """A PUBLISH packet's topic and payload, and its packet id (None at QoS 0)."""
    pos = 2 + int.from_bytes(body[:2], "big")
    topic = body[2:pos].decode()
    if (first >> 1) & 3 == 0:
        return Publish(topic, body[pos:]), None
    return Publish(topic, body[pos + 2 :]), int.from_bytes(body[pos : pos + 2], "big")
