"""MQTT transport against real brokers (private Mosquitto and embedded amqtt)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.embedded import embedded_broker
from broker.mosquitto import MosquittoProcess, free_port, private_mosquitto
from broker.transport import (
    BrokerAddress,
    Message,
    Session,
    Transport,
    TransportClosedError,
    TransportConfig,
    Will,
    backoff_delays,
    parse_broker_url,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 10.0


def _config(address: BrokerAddress, client_id: str) -> TransportConfig:
    return TransportConfig(
        address=address, client_id=client_id, backoff_initial_s=0.05, backoff_max_s=0.5
    )


def _prefix() -> str:
    """A topic prefix unique to this test (the session Mosquitto keeps retained state)."""
    return f"wmtest/{uuid.uuid4().hex[:12]}"


async def _next(inbox: AsyncIterator[Message]) -> Message:
    return await asyncio.wait_for(anext(inbox), TIMEOUT_S)


async def _connected(*transports: Transport) -> None:
    for transport in transports:
        await asyncio.wait_for(transport.wait_connected(), TIMEOUT_S)


# --------------------------------------------------------------------- round trips


async def test_round_trip_qos0_qos1_and_retained(broker: BrokerAddress) -> None:
    p = _prefix()
    subscriber = Transport(_config(broker, f"sub-{p[-12:]}"), subscriptions=[(f"{p}/data/#", 1)])
    publisher = Transport(_config(broker, f"pub-{p[-12:]}"))
    async with subscriber, publisher:
        await _connected(subscriber, publisher)
        inbox = subscriber.messages()

        await publisher.publish(f"{p}/data/a", b"\x00first", qos=1)
        await publisher.publish(f"{p}/data/b", b"second", qos=1)
        assert await _next(inbox) == Message(f"{p}/data/a", b"\x00first", retain=False)
        assert await _next(inbox) == Message(f"{p}/data/b", b"second", retain=False)

        await publisher.publish(f"{p}/data/c", b"fire-and-forget", qos=0)
        assert await _next(inbox) == Message(f"{p}/data/c", b"fire-and-forget", retain=False)

        await publisher.publish(f"{p}/state", b"kept", qos=1, retain=True)
        late = Transport(_config(broker, f"late-{p[-12:]}"), subscriptions=[(f"{p}/state", 1)])
        async with late:
            assert await _next(late.messages()) == Message(f"{p}/state", b"kept", retain=True)


# ------------------------------------------------------------------------ last will

_CHILD = """
import asyncio
import sys

from broker.transport import Transport, TransportConfig, Will, parse_broker_url


async def main() -> None:
    url, topic, client_id = sys.argv[1:4]
    config = TransportConfig(
        address=parse_broker_url(url),
        client_id=client_id,
        will=Will(topic, b"offline", qos=1, retain=True),
    )
    async with Transport(config, on_connect_publish=[(topic, b"online", 1, True)]) as t:
        await t.wait_connected()
        print("connected", flush=True)
        await asyncio.Event().wait()


asyncio.run(main())
"""


async def test_last_will_sets_retained_offline_when_client_is_killed(
    broker: BrokerAddress,
) -> None:
    p = _prefix()
    status = f"{p}/status/agent-1"
    observer = Transport(_config(broker, f"obs-{p[-12:]}"), subscriptions=[(status, 1)])
    async with observer:
        await _connected(observer)
        inbox = observer.messages()
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            broker.url,
            status,
            f"agent-{p[-12:]}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert child.stdout is not None
        assert child.stderr is not None
        try:
            line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT_S)
            if line != b"connected\n":
                stderr = await child.stderr.read()
                pytest.fail(f"child did not connect: {line!r} {stderr.decode()}")
            assert await _next(inbox) == Message(status, b"online", retain=False)
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGKILL)  # no DISCONNECT packet: unclean loss
            await child.wait()
        assert child.returncode == -signal.SIGKILL

        assert await _next(inbox) == Message(status, b"offline", retain=False)

    late = Transport(_config(broker, f"late-{p[-12:]}"), subscriptions=[(status, 1)])
    async with late:
        assert await _next(late.messages()) == Message(status, b"offline", retain=True)


# ----------------------------------------------------------------------- reconnect


async def test_reconnects_after_broker_restart_and_delivers_publish_issued_while_down(
    tmp_path: Path,
) -> None:
    p = _prefix()
    process = MosquittoProcess(tmp_path / "mosquitto")
    await process.start()
    try:
        transport = Transport(
            _config(process.address, "reconnecting"),
            subscriptions=[(f"{p}/data/#", 1)],
            on_connect_publish=[(f"{p}/status", b"online", 1, True)],
            rng=random.Random(7),
        )
        async with transport:
            await _connected(transport)
            inbox = transport.messages()
            await transport.publish(f"{p}/data/1", b"before")
            assert await _next(inbox) == Message(f"{p}/data/1", b"before", retain=False)

            await process.kill()
            await asyncio.wait_for(transport.wait_disconnected(), TIMEOUT_S)
            connected_while_down = transport.connected
            assert not connected_while_down
            pending = asyncio.create_task(transport.publish(f"{p}/data/2", b"while-down"))

            await process.start()
            # The broker has no persistence: this arrives only if the publish was
            # sent after the restart and the subscription was renewed.
            assert await _next(inbox) == Message(f"{p}/data/2", b"while-down", retain=False)
            await asyncio.wait_for(pending, TIMEOUT_S)
            assert transport.connected
            assert transport.reconnects == 1

            other = Transport(_config(process.address, "other"))
            async with other:
                await other.publish(f"{p}/data/3", b"from-other")
                assert await _next(inbox) == Message(f"{p}/data/3", b"from-other", retain=False)

            # on_connect_publish ran again after the reconnect (retained state was lost).
            observer = Transport(
                _config(process.address, "observer"), subscriptions=[(f"{p}/status", 1)]
            )
            async with observer:
                assert await _next(observer.messages()) == Message(
                    f"{p}/status", b"online", retain=True
                )
    finally:
        await process.stop()


async def test_a_persistent_session_gets_what_was_published_while_it_was_away(
    mosquitto: BrokerAddress,
) -> None:
    p = _prefix()
    config = TransportConfig(
        address=mosquitto,
        client_id=f"persistent-{p[-12:]}",
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        session=Session.PERSISTENT,
    )
    async with Transport(config, subscriptions=[(f"{p}/data/#", 1)]) as first:
        await _connected(first)
    # Away (disconnected cleanly): the broker queues QoS 1 messages for the session.
    async with Transport(_config(mosquitto, f"pub-{p[-12:]}")) as publisher:
        for n in range(3):
            await publisher.publish(f"{p}/data/{n}", f"queued {n}".encode(), qos=1)
    async with Transport(config, subscriptions=[(f"{p}/data/#", 1)]) as again:
        inbox = again.messages()
        for n in range(3):
            assert await _next(inbox) == Message(f"{p}/data/{n}", f"queued {n}".encode(), False)
    # A clean session (the default) would have lost them: nothing was kept for it.
    clean = _config(mosquitto, f"clean-{p[-12:]}")
    async with Transport(clean, subscriptions=[(f"{p}/data/#", 1)]) as c1:
        await _connected(c1)
    async with Transport(_config(mosquitto, f"pub2-{p[-12:]}")) as publisher:
        await publisher.publish(f"{p}/data/lost", b"lost", qos=1)
        await publisher.publish(f"{p}/marker", b"m", qos=1)
    async with Transport(clean, subscriptions=[(f"{p}/data/#", 1), (f"{p}/marker", 1)]) as c2:
        await _connected(c2)
        async with Transport(_config(mosquitto, f"pub3-{p[-12:]}")) as publisher:
            await publisher.publish(f"{p}/marker", b"after", qos=1)
        assert await _next(c2.messages()) == Message(f"{p}/marker", b"after", retain=False)


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
    p = _prefix()
    proxy = _CuttableProxy(broker)
    via_proxy = await proxy.start()
    try:
        transport = Transport(
            _config(via_proxy, f"in-flight-{p[-12:]}"), subscriptions=[(f"{p}/data/#", 1)]
        )
        async with transport:
            await _connected(transport)
            inbox = transport.messages()
            proxy.swallow = True
            pending = asyncio.create_task(transport.publish(f"{p}/data/1", b"in-flight"))
            await asyncio.wait_for(proxy.swallowed_publish.wait(), TIMEOUT_S)
            # The PUBLISH left the client but never reached the broker: no PUBACK.
            assert not pending.done()
            proxy.swallow = False
            proxy.cut()
            assert await _next(inbox) == Message(f"{p}/data/1", b"in-flight", retain=False)
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
    p = _prefix()
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
        async with subscriber, Transport(_config(broker, f"pub-{p[-12:]}")) as publisher:
            await _connected(subscriber, publisher)
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
                assert await _next(inbox) == Message(f"{p}/data/{n}", str(n).encode(), False)
    finally:
        await proxy.close()


async def test_a_message_handed_over_as_the_connection_drops_is_not_lost(
    broker: BrokerAddress,
) -> None:
    """paho reads the last PUBLISH and then the end of the stream in one go (a killed
    broker): the message enters aiomqtt's queue, already PUBACKed, and the supervisor
    cancels the reader in the same moment. The message must still come out (aiomqtt's
    own message iterator dropped it when cancelled after its queue task took it)."""
    p = _prefix()
    subscriber = Transport(_config(broker, f"sub-{p[-12:]}"), subscriptions=[(f"{p}/data/#", 1)])
    async with subscriber, Transport(_config(broker, f"pub-{p[-12:]}")) as publisher:
        await _connected(subscriber, publisher)
        inbox = subscriber.messages()
        await publisher.publish(f"{p}/data/0", b"0", qos=1)
        assert await _next(inbox) == Message(f"{p}/data/0", b"0", False)
        conn = subscriber._conn
        assert conn is not None
        queue = conn.client._queue
        put = queue.put_nowait

        def put_then_drop(item: Any) -> None:
            put(item)
            subscriber._mark_lost(conn)  # what the reader's end of the stream does

        queue.put_nowait = put_then_drop  # type: ignore[method-assign]
        await publisher.publish(f"{p}/data/1", b"1", qos=1)
        assert await _next(inbox) == Message(f"{p}/data/1", b"1", False)


async def test_connects_once_a_broker_appears_on_the_port(tmp_path: Path) -> None:
    process = MosquittoProcess(tmp_path / "mosquitto")
    transport = Transport(_config(process.address, "early-bird"))
    async with transport:
        connected_before_start = transport.connected
        assert not connected_before_start
        waiter = asyncio.create_task(transport.wait_connected())
        await process.start()
        try:
            await asyncio.wait_for(waiter, TIMEOUT_S)
            assert transport.connected
            assert transport.reconnects == 0
        finally:
            await transport.aclose()
            await process.stop()


async def test_close_releases_waiters_without_a_broker() -> None:
    transport = Transport(_config(BrokerAddress("127.0.0.1", free_port()), "nobody-home"))
    async with transport:
        publish = asyncio.create_task(transport.publish("wm/x", b"never"))
        connect = asyncio.create_task(transport.wait_connected())
        received = [m async for m in _until_closed(transport)]
    with pytest.raises(TransportClosedError):
        await asyncio.wait_for(publish, TIMEOUT_S)
    with pytest.raises(TransportClosedError):
        await asyncio.wait_for(connect, TIMEOUT_S)
    assert received == []
    assert not transport.connected


async def _until_closed(transport: Transport) -> AsyncIterator[Message]:
    """Close the transport from a separate task while iterating its messages."""
    closer = asyncio.create_task(transport.aclose())
    async for message in transport.messages():
        yield message
    await closer


async def test_use_before_start_is_an_error() -> None:
    transport = Transport(_config(BrokerAddress("127.0.0.1", 1883), "unused"))
    with pytest.raises(RuntimeError, match="not started"):
        await transport.publish("wm/x", b"")


# ------------------------------------------------------------------ broker processes


async def _accepts_tcp(address: BrokerAddress) -> bool:
    try:
        _reader, writer = await asyncio.open_connection(address.host, address.port)
    except ConnectionRefusedError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_private_mosquitto_serves_then_frees_its_port(tmp_path: Path) -> None:
    async with private_mosquitto(tmp_path) as address:
        transport = Transport(_config(address, "private"), subscriptions=[("wm/p", 1)])
        async with transport:
            await _connected(transport)
            await transport.publish("wm/p", b"x")
            assert await _next(transport.messages()) == Message("wm/p", b"x", retain=False)
    assert "running" in (tmp_path / "mosquitto.log").read_text()
    assert not await _accepts_tcp(address)


async def test_mosquitto_restart_keeps_the_port_and_refuses_a_taken_port(
    tmp_path: Path,
) -> None:
    process = MosquittoProcess(tmp_path / "a")
    await process.start()
    try:
        port = process.address.port
        await process.restart()
        running_after_restart = process.running
        assert running_after_restart
        assert process.address.port == port
        assert await _accepts_tcp(process.address)

        rival = MosquittoProcess(tmp_path / "b", port=port)
        with pytest.raises(RuntimeError, match="already in use"):
            await rival.start()
        assert not rival.running
    finally:
        await process.stop()
    assert not process.running
    await process.stop()  # idempotent


# ------------------------------------------------------------------- embedded broker


async def test_embedded_broker_is_quiet_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    amqtt_level = logging.getLogger("amqtt").level
    async with embedded_broker() as address:
        transport = Transport(_config(address, "quiet"), subscriptions=[("wm/q", 0)])
        async with transport:
            await _connected(transport)
            await transport.publish("wm/q", b"hello", qos=0)
            assert await _next(transport.messages()) == Message("wm/q", b"hello", retain=False)
    noisy = [
        r
        for r in caplog.records
        if r.name.startswith(("amqtt", "transitions")) and r.levelno < logging.WARNING
    ]
    assert noisy == []
    assert logging.getLogger("amqtt").level == amqtt_level


# --------------------------------------------------------------------------- backoff


@given(
    initial_s=st.floats(min_value=0.001, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=1000.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delays_stay_within_the_exponential_cap(
    initial_s: float, factor: float, seed: int
) -> None:
    maximum_s = initial_s * factor
    delays = backoff_delays(initial_s, maximum_s, random.Random(seed))
    for n in range(60):
        delay = next(delays)
        assert 0.0 <= delay <= min(maximum_s, initial_s * 2**n)


def test_backoff_is_full_jitter_and_seedable() -> None:
    first = backoff_delays(1.0, 8.0, random.Random(42))
    second = backoff_delays(1.0, 8.0, random.Random(42))
    sample = [next(first) for _ in range(4004)]
    assert sample == [next(second) for _ in range(4004)]
    capped = sample[4:]  # from n = 3 on the cap is the maximum, 8 s
    assert abs(sum(capped) / len(capped) - 4.0) < 0.25  # uniform on [0, 8] has mean 4
    assert min(capped) < 0.1
    assert max(capped) > 7.9


class _Delays(logging.Handler):
    """Collects the supervisor's "reconnecting in N s" delays; wakes a waiter."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.delays: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("reconnecting to"):
            self.delays.append(f"{record.args[1]:.2f}")  # type: ignore[index]
            self.changed.set()


async def test_the_supervisor_waits_the_jittered_exponential_delays_between_attempts() -> None:
    nobody = BrokerAddress("127.0.0.1", free_port())
    config = TransportConfig(
        address=nobody, client_id="backoff", backoff_initial_s=0.01, backoff_max_s=0.08
    )
    handler = _Delays()
    logger = logging.getLogger("broker.transport")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        async with Transport(config, rng=random.Random(11)):
            while len(handler.delays) < 8:
                handler.changed.clear()
                await asyncio.wait_for(handler.changed.wait(), TIMEOUT_S)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    expected = backoff_delays(0.01, 0.08, random.Random(11))
    assert handler.delays[:8] == [f"{next(expected):.2f}" for _ in range(8)]


@pytest.mark.parametrize(("initial_s", "maximum_s"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_rejects_bad_bounds(initial_s: float, maximum_s: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        next(backoff_delays(initial_s, maximum_s, random.Random(0)))


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost", BrokerAddress("localhost", 1883)),
        ("mqtt://127.0.0.1:18830", BrokerAddress("127.0.0.1", 18830)),
        ("mqtt://[::1]:1884", BrokerAddress("::1", 1884)),
        ("mqtt://Broker.Example:65535", BrokerAddress("broker.example", 65535)),
    ],
)
def test_parse_broker_url(url: str, expected: BrokerAddress) -> None:
    address = parse_broker_url(url)
    assert address == expected
    assert parse_broker_url(address.url) == address


@pytest.mark.parametrize(
    "url",
    [
        "",
        "localhost:1883",
        "mqtts://localhost",
        "tcp://localhost:1883",
        "http://localhost",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://localhost:",
        "mqtt://localhost:0",
        "mqtt://localhost:65536",
        "mqtt://localhost:port",
        "mqtt://user:secret@localhost",
        "mqtt://localhost/",
        "mqtt://localhost/topic",
        "mqtt://localhost?x=1",
        "mqtt://localhost#frag",
    ],
)
def test_parse_broker_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=r"expected mqtt://host\[:port\]"):
        parse_broker_url(url)


def test_config_validation() -> None:
    address = BrokerAddress("127.0.0.1", 1883)
    with pytest.raises(ValueError, match="qos"):
        Will("wm/status", b"offline", qos=3, retain=True)
    with pytest.raises(ValueError, match="wildcard"):
        Will("wm/#", b"offline", qos=1, retain=True)
    with pytest.raises(ValueError, match="client_id"):
        TransportConfig(address=address, client_id="")
    with pytest.raises(ValueError, match="backoff"):
        TransportConfig(address=address, client_id="c", backoff_initial_s=5, backoff_max_s=1)
    with pytest.raises(ValueError, match="port"):
        BrokerAddress("127.0.0.1", 0)
    with pytest.raises(ValueError, match="qos"):
        Transport(TransportConfig(address=address, client_id="c"), subscriptions=[("a/#", 5)])
