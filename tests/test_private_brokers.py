"""The brokers that tests and simulations start: a private Mosquitto process
(broker.mosquitto) and the embedded amqtt broker (broker.embedded).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.transportkit import next_message, quick_config, until_connected
from wattmesh.broker.embedded import embedded_broker
from wattmesh.broker.mosquitto import MosquittoProcess, private_mosquitto
from wattmesh.broker.transport import BrokerAddress, Message, Transport

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
        transport = Transport(quick_config(address, "private"), subscriptions=[("wm/p", 1)])
        async with transport:
            await until_connected(transport)
            await transport.publish("wm/p", b"x")
            assert await next_message(transport.messages()) == Message("wm/p", b"x", retain=False)
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
        transport = Transport(quick_config(address, "quiet"), subscriptions=[("wm/q", 0)])
        async with transport:
            await until_connected(transport)
            await transport.publish("wm/q", b"hello", qos=0)
            assert await next_message(transport.messages()) == Message(
                "wm/q", b"hello", retain=False
            )
    noisy = [
        r
        for r in caplog.records
        if r.name.startswith(("amqtt", "transitions")) and r.levelno < logging.WARNING
    ]
    assert noisy == []
    assert logging.getLogger("amqtt").level == amqtt_level
