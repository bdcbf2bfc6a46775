"""MQTT transport when its connection dies (a TCP proxy cuts it): a publish in flight is
retried, and no inbound message paho has acknowledged is lost with the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.transportkit import TIMEOUT_S, next_message, quick_config, unique_prefix, until_connected
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig


class _CuttableProxy:
    """TCP proxy to a broker that can swallow client bytes and cut all connections."""

    def __init__(self, upstream: BrokerAddress) -> None:
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.swallow = False
        self.swallowed_publish = asyncio.Event()

    async def start(self) -> BrokerAddress:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return BrokerAddress("127.0.0.1", port)

    def cut(self) -> None:
        """Abort every proxied connection (client and broker side) without a DISCONNECT."""
        for writer in self._writers:
            writer.transport.abort()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self._upstream.host, self._upstream.port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer, upstream=True),
            self._pump(up_reader, writer, upstream=False),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        while data := await src.read(65536):
            if upstream and self.swallow:
                if data[0] >> 4 == 3:  # MQTT PUBLISH packet type
                    self.swallowed_publish.set()
                continue
            dst.write(data)
            await dst.drain()
        dst.transport.abort()


async def test_publish_in_flight_when_the_connection_dies_is_retried(
    broker: BrokerAddress,
) -> None:
    p = unique_prefix()
    proxy = _CuttableProxy(broker)
    via_proxy = await proxy.start()
    try:
        transport = Transport(
            quick_config(via_proxy, f"in-flight-{p[-12:]}"), subscriptions=[(f"{p}/data/#", 1)]
        )
        async with transport:
            await until_connected(transport)
            inbox = transport.messages()
            proxy.swallow = True
            pending = asyncio.create_task(transport.publish(f"{p}/data/1", b"in-flight"))
            await asyncio.wait_for(proxy.swallowed_publish.wait(), TIMEOUT_S)
            # The PUBLISH left the client but never reached the broker: no PUBACK.
            assert not pending.done()
            proxy.swallow = False
            proxy.cut()
            assert await next_message(inbox) == Message(f"{p}/data/1", b"in-flight", retain=False)
            await asyncio.wait_for(pending, TIMEOUT_S)
            assert transport.reconnects == 1
    finally:
        await proxy.close()


class _QueueWatch:
    """Counts puts and gets on an asyncio.Queue (by wrapping the instance's methods)."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.puts = self.gets = 0
        self._changed = asyncio.Event()
        put, get = queue.put_nowait, queue.get_nowait

        def counted_put(item: Any) -> None:
            put(item)
            self.puts += 1
            self._changed.set()

        def counted_get() -> Any:
            item = get()
            self.gets += 1
            self._changed.set()
            return item

        queue.put_nowait = counted_put  # type: ignore[method-assign]
        queue.get_nowait = counted_get  # type: ignore[method-assign]

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), TIMEOUT_S)


async def test_messages_buffered_when_the_connection_dies_are_not_lost(
    broker: BrokerAddress,
) -> None:
    p = unique_prefix()
    proxy = _CuttableProxy(broker)
    via_proxy = await proxy.start()
    try:
        config = TransportConfig(
            address=via_proxy,
            client_id=f"slow-{p[-12:]}",
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
            inbound_queue_size=1,
        )
        subscriber = Transport(config, subscriptions=[(f"{p}/data/#", 1)])
        async with subscriber, Transport(quick_config(broker, f"pub-{p[-12:]}")) as publisher:
            await until_connected(subscriber, publisher)
            conn = subscriber._conn
            assert conn is not None
            ours, theirs = _QueueWatch(subscriber._inbound), _QueueWatch(conn.client._queue)
            # Nobody consumes: message 0 fills our buffer, the reader then holds 1
            # while it waits, and aiomqtt queues 2. paho has PUBACKed all three.
            await publisher.publish(f"{p}/data/0", b"0", qos=1)
            await ours.until(lambda: ours.puts == 1)
            await publisher.publish(f"{p}/data/1", b"1", qos=1)
            await theirs.until(lambda: theirs.gets == 2)
            await publisher.publish(f"{p}/data/2", b"2", qos=1)
            await theirs.until(lambda: theirs.puts == 3)
            proxy.cut()
            await asyncio.wait_for(subscriber.wait_disconnected(), TIMEOUT_S)
            inbox = subscriber.messages()
            for n in range(3):
                assert await next_message(inbox) == Message(f"{p}/data/{n}", str(n).encode(), False)
    finally:
        await proxy.close()


async def test_a_message_handed_over_as_the_connection_drops_is_not_lost(
    broker: BrokerAddress,
) -> None:
    """paho reads the last PUBLISH and then the end of the stream in one go (a killed
    broker): the message enters aiomqtt's queue, already PUBACKed, and the supervisor
    cancels the reader in the same moment. The message must still come out (aiomqtt's
    own message iterator dropped it when cancelled after its queue task took it)."""
    p = unique_prefix()
    subscriber = Transport(
        quick_config(broker, f"sub-{p[-12:]}"), subscriptions=[(f"{p}/data/#", 1)]
    )
    async with subscriber, Transport(quick_config(broker, f"pub-{p[-12:]}")) as publisher:
        await until_connected(subscriber, publisher)
        inbox = subscriber.messages()
        await publisher.publish(f"{p}/data/0", b"0", qos=1)
        assert await next_message(inbox) == Message(f"{p}/data/0", b"0", False)
        conn = subscriber._conn
        assert conn is not None
        queue = conn.client._queue
        put = queue.put_nowait

        def put_then_drop(item: Any) -> None:
            put(item)
            subscriber._mark_lost(conn)  # what the reader's end of the stream does

        queue.put_nowait = put_then_drop  # type: ignore[method-assign]
        await publisher.publish(f"{p}/data/1", b"1", qos=1)
        assert await next_message(inbox) == Message(f"{p}/data/1", b"1", False)
