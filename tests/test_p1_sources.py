"""P1 stream meters over a real TCP socket and a real pseudo-terminal, and replay files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.p1kit import corrupt, telegram
from wattmesh.agents.metering._p1_sources import (
    P1ReplayMeter,
    P1StreamMeter,
    serial_connector,
    tcp_connector,
)
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.metering.p1 import P1Version


@contextlib.asynccontextmanager
async def p1_dongle(
    serve: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server like a P1-to-Wi-Fi dongle; yields its port, closes every connection."""
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[None]] = []

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


async def test_tcp_meter_skips_a_corrupt_telegram_and_returns_the_next_good_one() -> None:
    async def serve(writer: asyncio.StreamWriter) -> None:
        writer.write(corrupt(telegram(stamp="261201143015W")))
        writer.write(telegram(stamp="261201143016W", power_used="00.420"))
        await writer.drain()
        await asyncio.Event().wait()  # keep the connection open like a P1 dongle

    async with p1_dongle(serve) as port:
        name = f"p1-tcp:127.0.0.1:{port}"
        async with P1StreamMeter(name, tcp_connector("127.0.0.1", port)) as meter:
            reading = await meter.read()
            assert reading.power_w == 420
            assert meter.counts.bad_checksum == 1 and meter.counts.good == 1
            assert await meter.read() == reading  # still fresh: no wait for another


async def test_tcp_meter_reconnects_after_the_dongle_drops_the_connection() -> None:
    connections = 0

    async def serve(writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(telegram(stamp=f"26120114301{connections}W", power_used=f"00.00{connections}"))
        await writer.drain()
        writer.close()  # the dongle reboots after each telegram

    async with p1_dongle(serve) as port:
        meter = P1StreamMeter(
            "tcp", tcp_connector("127.0.0.1", port), max_age_s=0.0, backoff_initial_s=0.01
        )
        async with meter:
            powers = [(await meter.read()).power_w for _ in range(3)]
    assert powers == [1, 2, 3] and connections >= 3


async def test_meter_without_data_raises_a_clear_meter_error() -> None:
    async def serve(writer: asyncio.StreamWriter) -> None:
        writer.write(corrupt(telegram()))
        await writer.drain()
        await asyncio.Event().wait()

    async with p1_dongle(serve) as port:
        meter = P1StreamMeter("p1-tcp:x", tcp_connector("127.0.0.1", port), timeout_s=0.3)
        async with meter:
            with pytest.raises(MeterError, match=r"no valid telegram from p1-tcp:x.*1 bad CRC"):
                await meter.read()


async def test_serial_meter_reads_a_pseudo_terminal() -> None:
    controller, device = os.openpty()
    tty.setraw(device)

    async def meter_sends_every_100_ms() -> None:  # like a P1 port: it never waits for us
        while True:
            os.write(controller, telegram(stamp="261201143015W", power_used="03.000"))
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(meter_sends_every_100_ms())
    try:
        name = os.ttyname(device)
        async with P1StreamMeter(name, serial_connector(name, P1Version.DSMR5), timeout_s=10) as m:
            reading = await m.read()
        assert reading.power_w == 3000
        assert m.counts.good >= 1
    finally:
        sender.cancel()
        os.close(controller)
        os.close(device)


async def test_replay_meter_returns_each_good_telegram_then_stops(tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    path.write_bytes(
        telegram(stamp="261201143015W")
        + corrupt(telegram(stamp="261201143016W"))
        + telegram(stamp="261201143017W")
    )
    meter = P1ReplayMeter(path)
    first, second = await meter.read(), await meter.read()
    assert second.time - first.time == 2
    assert meter.counts.bad_checksum == 1
    with pytest.raises(MeterError, match="no more telegrams"):
        await meter.read()


def test_replay_of_a_missing_file_is_a_meter_error(tmp_path: Path) -> None:
    with pytest.raises(MeterError, match="cannot read P1 capture"):
        P1ReplayMeter(tmp_path / "nope.txt")


async def test_a_port_that_cannot_be_opened_is_retried_and_reported() -> None:
    attempts = 0

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("device unplugged")  # not an OSError, like serialx's errors

    meter = P1StreamMeter("p1-serial:/dev/gone", connect, timeout_s=0.3, backoff_initial_s=0.01)
    async with meter:
        with pytest.raises(MeterError, match="cannot connect: device unplugged"):
            await meter.read()
    assert attempts >= 2


async def test_serial_device_that_does_not_exist_is_a_clear_meter_error(tmp_path: Path) -> None:
    name = str(tmp_path / "ttyUSB9")
    meter = P1StreamMeter(name, serial_connector(name, P1Version.DSMR5), timeout_s=0.5)
    async with meter:
        with pytest.raises(MeterError, match=r"no valid telegram from .*ttyUSB9.*cannot connect"):
            await meter.read()
