"""P1 meters: a serial port or a TCP socket (ser2net-style), and a replay file.

A P1 port pushes a telegram every second (DSMR 5) or ten seconds (DSMR 4) whether
anyone listens or not, so a stream meter reads continuously in a background task
and keeps the latest good reading; :meth:`P1StreamMeter.read` returns it while it
is fresh, or waits for the next one. A lost connection is reopened with capped
exponential backoff; the meter keeps running. Times are in seconds (``_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from wattmesh.agents.meter import MeterReading
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.metering.p1 import P1Counts, P1Decoder, P1Version

_LOG = logging.getLogger(__name__)
_CHUNK: Final = 4096

Connector = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens the byte stream of a P1 port."""


def tcp_connector(host: str, port: int) -> Connector:
    """A raw TCP stream, as ser2net or a P1-to-Wi-Fi dongle serves it."""

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    return connect


def serial_connector(device: str, version: P1Version, baud: int | None = None) -> Connector:
    """A serial device (e.g. ``/dev/ttyUSB0``) with dsmr-parser's line settings."""

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        import serialx
        from dsmr_parser.clients.settings import SERIAL_SETTINGS_V4, SERIAL_SETTINGS_V5

        settings = dict(SERIAL_SETTINGS_V4 if version is P1Version.DSMR4 else SERIAL_SETTINGS_V5)
        if baud is not None:
            settings["baudrate"] = baud
        return await serialx.open_serial_connection(url=device, **settings)

    return connect


class P1StreamMeter:
    """A live P1 port; use ``async with`` (starts and stops the reader task).

    ``read()`` returns the latest good reading if it arrived at most ``max_age_s``
    ago, else waits up to ``timeout_s`` for the next one (MeterError if none comes).
    """

    def __init__(
        self,
        name: str,
        connect: Connector,
        version: P1Version = P1Version.DSMR5,
        *,
        max_age_s: float = 5.0,
        timeout_s: float = 30.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.name = name
        self._connect = connect
        self._decoder = P1Decoder(version)
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._latest: MeterReading | None = None
        self._received_at = 0.0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.connection_error: str | None = None

    @property
    def counts(self) -> P1Counts:
        return self._decoder.counts

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"p1-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def read(self) -> MeterReading:
        if self._task is None:
            raise RuntimeError("P1StreamMeter is not started: use 'async with'")
        latest = self._latest
        if latest is not None and time.monotonic() - self._received_at <= self._max_age_s:
            return latest
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._latest is not latest), self._timeout_s
                )
            except TimeoutError:
                raise MeterError(self._no_data()) from None
        assert self._latest is not None  # the predicate above
        return self._latest

    def _no_data(self) -> str:
        counts = self.counts
        why = self.connection_error or self._decoder.last_error or "no telegram received"
        return (
            f"no valid telegram from {self.name} in {self._timeout_s:g} s "
            f"({counts.good} good, {counts.bad_checksum} bad CRC, {counts.bad_other} "
            f"other bad so far; last problem: {why})"
        )

    async def _run(self) -> None:
        delay_s = self._backoff[0]
        while True:
            try:
                reader, writer = await self._connect()
            except Exception as exc:  # the reader must outlive any port error
                self.connection_error = f"cannot connect: {exc}"
                _LOG.warning("P1 %s: %s; retrying in %.1f s", self.name, exc, delay_s)
                await asyncio.sleep(delay_s)  # reconnect backoff, not synchronisation
                delay_s = min(delay_s * 2, self._backoff[1])
                continue
            self.connection_error = None
            try:
                if await self._pump(reader):
                    delay_s = self._backoff[0]
            except Exception as exc:  # e.g. serialx.SerialException on unplug
                self.connection_error = f"connection lost: {exc}"
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if self.connection_error is None:
                self.connection_error = "connection closed by the other end"
            _LOG.warning("P1 %s: %s; reconnecting", self.name, self.connection_error)
            await asyncio.sleep(delay_s)  # reconnect backoff, not synchronisation
            delay_s = min(delay_s * 2, self._backoff[1])

    async def _pump(self, reader: asyncio.StreamReader) -> bool:
        """Decode until EOF; True if at least one good telegram arrived."""
        got_any = False
        while data := await reader.read(_CHUNK):
            readings = self._decoder.feed(data)
            if readings:
                got_any = True
                async with self._changed:
                    self._latest = readings[-1]
                    self._received_at = time.monotonic()
                    self._changed.notify_all()
        return got_any


class P1ReplayMeter:
    """Replays the telegrams of a captured P1 stream: one good reading per ``read()``.

    Bad telegrams in the file are counted and skipped; after the last telegram
    ``read()`` raises MeterError.
    """

    def __init__(self, path: Path, version: P1Version = P1Version.DSMR5) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MeterError(f"cannot read P1 capture {path}: {exc.strerror}") from exc
        self.name = str(path)
        self._decoder = P1Decoder(version)
        self._readings = self._decoder.feed(data)
        self._next = 0

    @property
    def counts(self) -> P1Counts:
        return self._decoder.counts

    async def read(self) -> MeterReading:
        if self._next >= len(self._readings):
            counts = self.counts
            raise MeterError(
                f"{self.name}: no more telegrams ({counts.good} good, "
                f"{counts.bad_checksum} bad CRC, {counts.bad_other} other bad)"
            )
        reading = self._readings[self._next]
        self._next += 1
        return reading
