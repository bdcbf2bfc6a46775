"""MQTT transport against real brokers (private Mosquitto and embedded amqtt): delivery,
last will, reconnects, persistent sessions, closing, and the supervisor's backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.transportkit import TIMEOUT_S, next_message, quick_config, unique_prefix, until_connected
from wattmesh.broker.mosquitto import MosquittoProcess, free_port
from wattmesh.broker.transport import (
    BrokerAddress,
    Message,
    Session,
    Transport,
    TransportClosedError,
    TransportConfig,
    backoff_delays,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------- round trips


async def test_round_trip_qos0_qos1_and_retained(broker: BrokerAddress) -> None:
    p = unique_prefix()
    subscriber = Transport(
        quick_config(broker, f"sub-{p[-12:]}"), subscriptions=[(f"{p}/data/#", 1)]
    )
    publisher = Transport(quick_config(broker, f"pub-{p[-12:]}"))
    async with subscriber, publisher:
        await until_connected(subscriber, publisher)
        inbox = subscriber.messages()

        await publisher.publish(f"{p}/data/a", b"\x00first", qos=1)
        await publisher.publish(f"{p}/data/b", b"second", qos=1)
        assert await next_message(inbox) == Message(f"{p}/data/a", b"\x00first", retain=False)
        assert await next_message(inbox) == Message(f"{p}/data/b", b"second", retain=False)

        await publisher.publish(f"{p}/data/c", b"fire-and-forget", qos=0)
        assert await next_message(inbox) == Message(f"{p}/data/c", b"fire-and-forget", retain=False)

        await publisher.publish(f"{p}/state", b"kept", qos=1, retain=True)
        late = Transport(quick_config(broker, f"late-{p[-12:]}"), subscriptions=[(f"{p}/state", 1)])
        async with late:
            assert await next_message(late.messages()) == Message(
                f"{p}/state", b"kept", retain=True
            )


# ------------------------------------------------------------------------ last will

_CHILD = """
import asyncio
import sys

from wattmesh.broker.transport import Transport, TransportConfig, Will, parse_broker_url


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
    p = unique_prefix()
    status = f"{p}/status/agent-1"
    observer = Transport(quick_config(broker, f"obs-{p[-12:]}"), subscriptions=[(status, 1)])
    async with observer:
        await until_connected(observer)
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
            assert await next_message(inbox) == Message(status, b"online", retain=False)
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGKILL)  # no DISCONNECT packet: unclean loss
            await child.wait()
        assert child.returncode == -signal.SIGKILL

        assert await next_message(inbox) == Message(status, b"offline", retain=False)

    late = Transport(quick_config(broker, f"late-{p[-12:]}"), subscriptions=[(status, 1)])
    async with late:
        assert await next_message(late.messages()) == Message(status, b"offline", retain=True)


# ----------------------------------------------------------------------- reconnect


async def test_reconnects_after_broker_restart_and_delivers_publish_issued_while_down(
    tmp_path: Path,
) -> None:
    p = unique_prefix()
    process = MosquittoProcess(tmp_path / "mosquitto")
    await process.start()
    try:
        transport = Transport(
            quick_config(process.address, "reconnecting"),
            subscriptions=[(f"{p}/data/#", 1)],
            on_connect_publish=[(f"{p}/status", b"online", 1, True)],
            rng=random.Random(7),
        )
        async with transport:
            await until_connected(transport)
            inbox = transport.messages()
            await transport.publish(f"{p}/data/1", b"before")
            assert await next_message(inbox) == Message(f"{p}/data/1", b"before", retain=False)

            await process.kill()
            await asyncio.wait_for(transport.wait_disconnected(), TIMEOUT_S)
            connected_while_down = transport.connected
            assert not connected_while_down
            pending = asyncio.create_task(transport.publish(f"{p}/data/2", b"while-down"))

            await process.start()
            # The broker has no persistence: this arrives only if the publish was
            # sent after the restart and the subscription was renewed.
            assert await next_message(inbox) == Message(f"{p}/data/2", b"while-down", retain=False)
            await asyncio.wait_for(pending, TIMEOUT_S)
            assert transport.connected
            assert transport.reconnects == 1

            other = Transport(quick_config(process.address, "other"))
            async with other:
                await other.publish(f"{p}/data/3", b"from-other")
                assert await next_message(inbox) == Message(
                    f"{p}/data/3", b"from-other", retain=False
                )

            # on_connect_publish ran again after the reconnect (retained state was lost).
            observer = Transport(
                quick_config(process.address, "observer"), subscriptions=[(f"{p}/status", 1)]
            )
            async with observer:
                assert await next_message(observer.messages()) == Message(
                    f"{p}/status", b"online", retain=True
                )
    finally:
        await process.stop()


async def test_a_persistent_session_gets_what_was_published_while_it_was_away(
    mosquitto: BrokerAddress,
) -> None:
    p = unique_prefix()
    config = TransportConfig(
        address=mosquitto,
        client_id=f"persistent-{p[-12:]}",
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        session=Session.PERSISTENT,
    )
    async with Transport(config, subscriptions=[(f"{p}/data/#", 1)]) as first:
        await until_connected(first)
    # Away (disconnected cleanly): the broker queues QoS 1 messages for the session.
    async with Transport(quick_config(mosquitto, f"pub-{p[-12:]}")) as publisher:
        for n in range(3):
            await publisher.publish(f"{p}/data/{n}", f"queued {n}".encode(), qos=1)
    async with Transport(config, subscriptions=[(f"{p}/data/#", 1)]) as again:
        inbox = again.messages()
        for n in range(3):
            assert await next_message(inbox) == Message(
                f"{p}/data/{n}", f"queued {n}".encode(), False
            )
    # A clean session (the default) would have lost them: nothing was kept for it.
    clean = quick_config(mosquitto, f"clean-{p[-12:]}")
    async with Transport(clean, subscriptions=[(f"{p}/data/#", 1)]) as c1:
        await until_connected(c1)
    async with Transport(quick_config(mosquitto, f"pub2-{p[-12:]}")) as publisher:
        await publisher.publish(f"{p}/data/lost", b"lost", qos=1)
        await publisher.publish(f"{p}/marker", b"m", qos=1)
    async with Transport(clean, subscriptions=[(f"{p}/data/#", 1), (f"{p}/marker", 1)]) as c2:
        await until_connected(c2)
        async with Transport(quick_config(mosquitto, f"pub3-{p[-12:]}")) as publisher:
            await publisher.publish(f"{p}/marker", b"after", qos=1)
        assert await next_message(c2.messages()) == Message(f"{p}/marker", b"after", retain=False)


async def test_connects_once_a_broker_appears_on_the_port(tmp_path: Path) -> None:
    process = MosquittoProcess(tmp_path / "mosquitto")
    transport = Transport(quick_config(process.address, "early-bird"))
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
    transport = Transport(quick_config(BrokerAddress("127.0.0.1", free_port()), "nobody-home"))
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
    transport = Transport(quick_config(BrokerAddress("127.0.0.1", 1883), "unused"))
    with pytest.raises(RuntimeError, match="not started"):
        await transport.publish("wm/x", b"")


# ----------------------------------------------------------------------- backoff


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
    logger = logging.getLogger("wattmesh.broker.transport")
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
