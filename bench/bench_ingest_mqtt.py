"""Ingest from Mosquitto: signed orders accepted and stored per second.

A private Mosquitto (own config: ``max_queued_messages 0`` and ``max_inflight_messages
0``, since Mosquitto's default queue of 1,000 messages per client drops QoS 1 messages
to a subscriber that falls behind a burst), ``--publishers`` processes holding the N
pre-signed orders (one per household) that each publish their share at QoS 1 as soon as
the market's OPEN announcement arrives, and the ledger's ``LedgerService`` over
``broker.transport.Transport`` ingesting (``run_ingest``: in batches, the signatures
checked inline or on ``--workers`` processes) and closing the interval
(clearing, log, SQLite transaction, signed checkpoint). Two figures: accepted and
stored, N / (time from the OPEN announcement until every order is admitted and kept in
the store's intake, committed), and through the gate closure, N / (time from the OPEN
announcement to the signed checkpoint). Baselines in the same run: a bare aiomqtt
subscriber and a bare ``broker.subscriber.Subscriber`` receiving the same messages from
the same publishers, no verification. CPU seconds of each part within the window. Each
ledger variant goes through ``--intervals`` consecutive intervals on one ledger, a
figure per interval; the one-core P-256 verification rate is printed first, as the
yardstick of the machine.

    python bench/bench_ingest_mqtt.py [--orders 10000] [--publishers 4] [--workers 2]
        [--intervals 3] [--repeat 1] [--only Subscriber ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from _machine import machine_line
from _mosquitto import RawClient, publish_packets, run_mosquitto

from wattmesh.broker._mqtt_packets import (
    DISCONNECT_BYTES,
)
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, Side, sign_message
from wattmesh.broker.subscriber import Subscriber
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.sigcheck import InlineVerifier, PoolVerifier, SignatureVerifier, preload
from wattmesh.ledger.store import LedgerStore

MARKET = "bench"
INTERVAL_S = 900
T0 = 1_750_000_500 - 1_750_000_500 % INTERVAL_S
TARIFF = GridTariff(300_000, 80_000)
TOPICS = Topics(MARKET)


def mosquitto(workdir: Path) -> contextlib.AbstractContextManager[tuple[int, int]]:
    settings = (
        "persistence false\nmax_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\n"
    )
    return run_mosquitto(workdir, settings)


def _publisher(port: int, items: list[tuple[str, bytes]], ready: Any, done: Any) -> None:
    """A thin MQTT 3.1.1 publisher (raw socket, QoS 1): it stands for many household
    devices, so it must cost the shared two cores as little as possible. It encodes
    every PUBLISH in advance, waits for the OPEN announcement, writes them all and
    waits for every PUBACK."""
    packets = publish_packets(items)
    client = RawClient(port, f"pub-{os.getpid()}", TOPICS.announce)
    ready.put(os.getpid())
    while client.read_packet() >> 4 != 3:  # the announcement (QoS 0)
        pass
    cpu = time.process_time()
    client.sock.sendall(packets)
    acked = 0
    while acked < len(items):
        if client.read_packet() == 0x40:
            acked += 1
    client.sock.sendall(DISCONNECT_BYTES)
    client.sock.close()
    done.put((acked, time.process_time() - cpu))


def _signed(n: int, intervals: int) -> tuple[dict[str, SigningKey], list[list[tuple[str, bytes]]]]:
    """N households' keys and, for each of ``intervals`` consecutive intervals from T0,
    one signed order per household (topic, wire)."""
    rng = random.Random(n)
    keys = {f"h{i:06d}": SigningKey.generate() for i in range(n)}
    per_interval: list[list[tuple[str, bytes]]] = []
    for k in range(intervals):
        interval = T0 + k * INTERVAL_S
        items: list[tuple[str, bytes]] = []
        for agent, key in keys.items():
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            body = OrderBody(side, rng.randint(50, 2_000), rng.randint(80_000, 300_000))
            message = sign_message(
                key,
                body,
                market=MARKET,
                interval=interval,
                agent=agent,
                seq=k + 1,
                expires=interval + INTERVAL_S,
            )
            items.append((TOPICS.order(agent), message.to_wire()))
        per_interval.append(items)
    return keys, per_interval


@contextlib.asynccontextmanager
async def publishers(
    port: int, items: list[tuple[str, bytes]], count: int
) -> AsyncIterator[Callable[[], Any]]:
    """Start the publisher processes, wait until each is subscribed; yield a coroutine
    factory that waits until all have published."""
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_publisher, args=(port, items[i::count], ready, done))
        for i in range(count)
    ]
    for p in procs:
        p.start()
    loop = asyncio.get_running_loop()
    for _ in procs:
        await loop.run_in_executor(None, ready.get, True, 60)

    async def all_done() -> tuple[int, float]:
        """Messages acknowledged, and the publishers' CPU seconds while publishing."""
        reports = [await loop.run_in_executor(None, done.get, True, 120) for _ in procs]
        return sum(a for a, _ in reports), sum(c for _, c in reports)

    try:
        yield all_done
    finally:
        for p in procs:
            p.join(30)


async def baseline(
    port: int, items: list[tuple[str, bytes]], count: int, meter: CpuMeter
) -> tuple[float, float]:
    """Bare aiomqtt: receive all N messages, nothing else."""
    async with aiomqtt.Client("127.0.0.1", port, max_queued_incoming_messages=0) as sub:
        await sub.subscribe(TOPICS.all_orders, qos=1)
        async with publishers(port, items, count) as all_done:
            start = time.perf_counter()
            meter.begin()
            await sub.publish(TOPICS.announce, b"go", qos=1)
            received = 0
            async for _message in sub.messages:
                received += 1
                if received == len(items):
                    break
            elapsed = time.perf_counter() - start
            meter.end()
            _acked, publishers_s = await all_done()
    return elapsed, publishers_s


async def baseline_subscriber(
    port: int, items: list[tuple[str, bytes]], count: int, meter: CpuMeter
) -> tuple[float, float]:
    """Bare broker.subscriber.Subscriber: receive all N messages, nothing else."""
    config = TransportConfig(
        BrokerAddress("127.0.0.1", port), "bare-sub", inbound_queue_size=len(items) + 1000
    )
    async with Subscriber(config, [(TOPICS.all_orders, 1)]) as sub:
        await sub.wait_connected(30)
        async with publishers(port, items, count) as all_done:
            start = time.perf_counter()
            meter.begin()
            async with aiomqtt.Client("127.0.0.1", port) as announcer:
                await announcer.publish(TOPICS.announce, b"go", qos=1)
            received = 0
            async for _message in sub.messages():
                received += 1
                if received == len(items):
                    break
            elapsed = time.perf_counter() - start
            meter.end()
            _acked, publishers_s = await all_done()
    return elapsed, publishers_s


@dataclass(frozen=True)
class IntervalRun:
    """One interval of a ledger run: seconds from the OPEN announcement until every
    order was accepted and stored, and until the signed checkpoint; orders logged; the
    CPU line of the window."""

    stored_s: float
    closed_s: float
    orders: int
    cpu: str


async def ledger_run(
    port: int,
    keys: dict[str, SigningKey],
    per_interval: list[list[tuple[str, bytes]]],
    count: int,
    verifier: SignatureVerifier | None,
    db: str,
    meter: CpuMeter,
    *,
    own_subscriber: bool = False,
) -> list[IntervalRun]:
    """The ledger's ingest over the transport, or (``own_subscriber``) over a
    ``Subscriber`` on its own connection, the transport then only publishing; one
    ledger and service through consecutive intervals, as a running ledger goes."""
    operator = SigningKey.generate()
    ledger = Ledger(LedgerStore(db), market_id=MARKET, operator_key=operator)
    ledger.register({a: k.verifying for a, k in keys.items()}, interval=T0)
    gc.freeze()  # as wattmesh ledger run does once its state is restored
    address = BrokerAddress("127.0.0.1", port)
    queue_size = len(per_interval[0]) + 1000
    config = TransportConfig(address, "ledger", inbound_queue_size=queue_size)
    subscriptions = ledger_subscriptions(TOPICS)
    runs: list[IntervalRun] = []
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(
            Transport(config, subscriptions=[] if own_subscriber else subscriptions)
        )
        await transport.wait_connected()
        source = None
        if own_subscriber:
            sub_config = TransportConfig(address, "ledger-ingest", inbound_queue_size=queue_size)
            source = await stack.enter_async_context(Subscriber(sub_config, subscriptions))
            await source.wait_connected(30)
        service = LedgerService(
            ledger, OperatorConfig(TOPICS, gate_timeout_s=120), key=operator, transport=transport
        )
        ingest = asyncio.create_task(service.run_ingest(verifier, source=source))
        expected = len(per_interval[0])  # one order per household in every interval
        for k, items in enumerate(per_interval):
            ledger.open_interval(T0 + k * INTERVAL_S, TARIFF)
            async with publishers(port, items, count) as all_done:
                start = time.perf_counter()
                meter.begin()
                await transport.publish(TOPICS.announce, b"open", qos=1)
                # Every order in (admitted, and kept: the service flushes the intake
                # after each message or batch before it signals progress): close.
                await service.wait_until(lambda: ledger.open_orders == expected, 120)
                stored = time.perf_counter() - start
                outcome = ledger.close_interval()
                closed = time.perf_counter() - start
                meter.end()
                _acked, publishers_s = await all_done()
            runs.append(IntervalRun(stored, closed, outcome.orders, meter.line(publishers_s)))
        ingest.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest
    ledger.store.close()
    return runs


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children() -> list[int]:
    """This process's live child processes (the verify workers, once started)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


class CpuMeter:
    """CPU seconds of each part within the timed window (:meth:`begin` to :meth:`end`):
    this process, the verify workers, Mosquitto, and the publishers (they report their
    own, from the announcement to their last PUBACK)."""

    def __init__(self, workers: list[int], broker: int) -> None:
        self.pids = {"verify workers": workers, "mosquitto": [broker]}
        self.used: dict[str, float] = {}
        self._start: tuple[float, dict[str, float]] = (0.0, {})

    def _now(self) -> tuple[float, dict[str, float]]:
        return time.process_time(), {
            part: sum(_cpu_s(p) for p in pids) for part, pids in self.pids.items()
        }

    def begin(self) -> None:
        self._start = self._now()

    def end(self) -> None:
        own, parts = self._now()
        self.used = {"ledger process": own - self._start[0]}
        self.used |= {part: cpu - self._start[1][part] for part, cpu in parts.items()}

    def line(self, publishers_s: float) -> str:
        used = self.used | {"publishers": publishers_s}
        parts = ", ".join(f"{part} {cpu:.2f}" for part, cpu in used.items())
        return f"CPU s in the window: {parts}; total {sum(used.values()):.2f}"


def verifies_per_s(keys: dict[str, SigningKey], items: list[tuple[str, bytes]]) -> float:
    """This machine's P-256 verifications per second on one core (cryptography), over
    the first 2,000 of the orders: the yardstick for the figures, since the signature
    checks are most of the work and these shared machines differ in speed."""
    from wattmesh.broker.messages import decode_message

    sample = [decode_message(wire) for _topic, wire in items[:2000]]
    pairs = [(keys[m.header.agent].verifying, m.signature, m.signed_bytes) for m in sample]
    start = time.process_time()
    assert all(key.verify(signature, data) for key, signature, data in pairs)
    return len(pairs) / (time.process_time() - start)


async def main_async(args: argparse.Namespace) -> None:
    keys, per_interval = _signed(args.orders, args.intervals)
    print(f"P-256 verifications on one core: {verifies_per_s(keys, per_interval[0]):,.0f}/s")
    items = per_interval[0]
    n = len(items)
    # As a running ledger does (wattmesh ledger run): the workers load every
    # registered key as they start, not in the first interval.
    ders = [k.verifying.der() for k in keys.values()]
    pool = PoolVerifier(args.workers, keys=ders)
    pool.warm_up()
    workers = _children()
    preload(ders)  # the same for the inline verifier, in this process
    variants: list[tuple[str, SignatureVerifier | None, bool]] = [
        ("ledger, batches, inline verify", InlineVerifier(), False),
        (f"ledger, batches, {args.workers} verify workers", pool, False),
        ("ledger, Subscriber, batches, inline verify", InlineVerifier(), True),
        (f"ledger, Subscriber, batches, {args.workers} verify workers", pool, True),
    ]
    baselines = [
        ("baseline: bare aiomqtt receive", None, False),
        ("bare Subscriber receive", None, True),
    ]
    chosen = [
        variant
        for variant in [*baselines, *variants]
        if not args.only or any(part in variant[0] for part in args.only)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for run, (name, verifier, own) in enumerate(chosen * args.repeat):
            work = Path(tmp) / str(run)
            work.mkdir()
            with mosquitto(work) as (port, broker_pid):
                meter = CpuMeter(workers, broker_pid)
                if (name, verifier, own) in baselines:
                    bare = baseline_subscriber if own else baseline
                    elapsed, publishers_s = await bare(port, items, args.publishers, meter)
                    figures = f"received {n / elapsed:8,.0f}/s ({elapsed:.2f} s)"
                    print(f"{name:52} {figures}  load {os.getloadavg()[0]:.1f}")
                    print(f"    {meter.line(publishers_s)}")
                else:
                    db = f"sqlite:///{work / 'ledger.db'}"
                    runs = await ledger_run(
                        port,
                        keys,
                        per_interval,
                        args.publishers,
                        verifier,
                        db,
                        meter,
                        own_subscriber=own,
                    )
                    for k, result in enumerate(runs, 1):
                        if result.orders != n:
                            raise SystemExit(f"{name}: {result.orders} of {n} orders logged")
                        figures = (
                            f"accepted and stored {n / result.stored_s:8,.0f}/s "
                            f"({result.stored_s:.2f} s), through the gate closure "
                            f"{n / result.closed_s:6,.0f}/s ({result.closed_s:.2f} s)"
                        )
                        label = f"{name}, interval {k}" if len(runs) > 1 else name
                        print(f"{label:52} {figures}  load {os.getloadavg()[0]:.1f}")
                        print(f"    {result.cpu}")
            shutil.rmtree(work, ignore_errors=True)
    pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--intervals", type=int, default=3, help="consecutive intervals per ledger run"
    )
    parser.add_argument("--repeat", type=int, default=1, help="run the chosen variants N times")
    parser.add_argument(
        "--only", action="append", help="run the variants whose name holds this (repeatable)"
    )
    args = parser.parse_args()
    print(machine_line())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
