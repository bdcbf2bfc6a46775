"""Backfill rate of the agent's outbox: window 1 (one publish per round trip) vs more.

A backlog of N stored readings (520-byte payloads, about a signed reading) is sent by
:class:`agents._publisher.DurablePublisher` over a private Mosquitto, from entering
the publisher until ``flush`` returns (every PUBACK received, deletions committed).
Baseline in the same run: ``max_in_flight=1``, what the sender did before (one
message per broker round trip). Two links: loopback, and loopback through a proxy
that delays every byte by ``--delay-ms`` in each direction (a Raspberry Pi on Wi-Fi
sees round trips of a few to tens of milliseconds); the delayed run uses a smaller
backlog for window 1, which would otherwise take minutes. The MQTT client's own
in-flight limit is raised to the window, as ``agents.lifecycle`` does.

    .venv/bin/python bench/bench_outbox_backfill.py [--count 10000] [--delay-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._machine import machine_line  # noqa: E402
from wattmesh.agents._outbox import Outbox  # noqa: E402
from wattmesh.agents._publisher import DEFAULT_MAX_IN_FLIGHT, DurablePublisher  # noqa: E402
from wattmesh.broker.mosquitto import private_mosquitto  # noqa: E402
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig  # noqa: E402

TOPIC = "bench/household/h001/reading"
PAYLOAD = b"x" * 520
WINDOWS = (1, 16, DEFAULT_MAX_IN_FLIGHT, 256)


async def _delay_pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float
) -> None:
    """Forward bytes in order, each chunk ``delay_s`` after it arrived."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                writer.close()
                return
            # A link delay, not synchronisation: the chunk may leave at ``due``.
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay_s, data))
        queue.put_nowait((loop.time() + delay_s, b""))
        await sender
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


@contextlib.asynccontextmanager
async def _delayed(upstream: BrokerAddress, delay_s: float) -> AsyncIterator[BrokerAddress]:
    """A TCP proxy to ``upstream`` adding ``delay_s`` each way (none: the broker itself)."""
    if delay_s <= 0:
        yield upstream
        return
    relays: set[asyncio.Task[object]] = set()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection(upstream.host, upstream.port)
        pumps = asyncio.gather(
            _delay_pump(client_r, broker_w, delay_s),
            _delay_pump(broker_r, client_w, delay_s),
            return_exceptions=True,
        )
        relays.add(pumps)
        try:
            await pumps
        except asyncio.CancelledError:
            pass  # the proxy is closing; asyncio's server would log a cancelled handler
        finally:
            relays.discard(pumps)
            client_w.close()
            broker_w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield BrokerAddress("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    finally:
        server.close()
        for relay in list(relays):
            relay.cancel()
        await asyncio.gather(*relays, return_exceptions=True)


async def _backfill(address: BrokerAddress, workdir: Path, count: int, window: int) -> float:
    """Seconds to send a stored backlog of ``count`` with ``window`` in flight."""
    outbox = Outbox(workdir / f"outbox-{window}-{count}.db")
    for _ in range(count):
        outbox.add(TOPIC, lambda _seq: PAYLOAD)
    outbox.commit()
    config = TransportConfig(
        address=address, client_id=f"bench-agent-{window}", max_inflight=max(window, 20)
    )
    async with Transport(config) as transport:
        await transport.wait_connected()
        start = time.perf_counter()
        async with DurablePublisher(outbox, transport, max_in_flight=window) as publisher:
            assert await publisher.flush(3600)
        elapsed = time.perf_counter() - start
        assert publisher.sent == count
    assert outbox.pending == 0
    outbox.close()
    return elapsed


async def _run(count: int, delay_ms: float, slow_count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with private_mosquitto(workdir / "mosquitto") as broker:
            for label, delay_s, small in (
                ("loopback", 0.0, count),
                (f"+{delay_ms:g} ms each way", delay_ms / 1000, slow_count),
            ):
                async with _delayed(broker, delay_s) as address:
                    baseline = None
                    for window in WINDOWS:
                        n = small if window == 1 else count
                        elapsed = await _backfill(address, workdir, n, window)
                        rate = n / elapsed
                        baseline = rate if baseline is None else baseline
                        print(
                            f"{label:<20} window {window:>3}: {n:>6,} messages in "
                            f"{elapsed:6.2f} s = {rate:>7,.0f}/s  (x{rate / baseline:.1f})",
                            flush=True,
                        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--delay-ms", type=float, default=5.0)
    parser.add_argument("--slow-count", type=int, default=1_000, help="window 1, delayed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(machine_line())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    asyncio.run(_run(args.count, args.delay_ms, args.slow_count))
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
