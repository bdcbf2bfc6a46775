"""A cleared interval reaching 100 open WebSockets of the dashboard (target: all within 1 s).

A real ledger (:class:`ledger.ledger.Ledger` on SQLite, H households' signed readings and
orders each interval, as in ``bench_dashboard.py``) runs in this process; W intervals
are logged before the dashboard starts. The dashboard serves that ledger with the bus
listener on (its log-follow timer set to an hour, so only the bus wakes it) and N
browsers connect to ``/ws`` (aiohttp clients in this process, on the server's event
loop: the figures include their share of the core). Then, K times: the ledger logs the
next interval (ingest and close, in a worker thread, as ``ledger run`` would), the
operator's signed cleared announcement is published on a private Mosquitto, and the
time until each client holds the ``interval`` event is taken:

- **end to end**: from the publish of the announcement (the bus, the listener's
  signature check, the read-model sync of the interval's entries in a thread, the
  overview query, the push);
- **push**: from ``Hub.broadcast`` of the event to its receipt by each client.

    python bench/bench_dashboard_ws.py [--clients 100] [--intervals 10] [--households 500]
        [--warm 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _machine import machine_line
from aiohttp import ClientSession, WSMsgType
from aiohttp.test_utils import TestServer
from bench_verify import MARKET, STEP, T0, TARIFF, interval_messages

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import AnnouncementBody, Phase, Signer
from wattmesh.broker.mosquitto import MosquittoProcess
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Transport, TransportConfig
from wattmesh.dashboard._routes import RUNTIME
from wattmesh.dashboard.app import HUB, DashboardSettings, make_app
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore


class Market:
    """The ledger and its households, one interval at a time."""

    def __init__(self, url: str, households: int) -> None:
        self.rng = random.Random(1)
        self.keys = {f"h{i:05d}": SigningKey.generate() for i in range(households)}
        self.operator = SigningKey.generate()
        self.ledger = Ledger(LedgerStore(url), market_id=MARKET, operator_key=self.operator)
        self.ledger.register({a: k.verifying for a, k in self.keys.items()}, interval=T0)
        self.seq = dict.fromkeys(self.keys, 0)
        self.registers = dict.fromkeys(self.keys, 0)
        self.next_interval = T0

    def log_interval(self) -> int:
        """Ingest every household's reading and order, close and log; the interval."""
        interval = self.next_interval
        items = interval_messages(self.keys, self.registers, self.seq, self.rng, interval)
        self.ledger.open_interval(interval, TARIFF)
        for wire, _agent in items:
            self.ledger.ingest(wire)
        self.ledger.close_interval()
        self.next_interval += STEP
        return interval


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms"


class Receipts:
    """When each client got each interval's event; an event once all of them have."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.times: dict[int, list[float]] = {}
        self.connected = 0
        self.all_connected = asyncio.Event()
        self.complete: dict[int, asyncio.Event] = {}

    def done(self, interval: int) -> asyncio.Event:
        return self.complete.setdefault(interval, asyncio.Event())

    def joined(self) -> None:
        self.connected += 1
        if self.connected == self.clients:
            self.all_connected.set()

    def got(self, interval: int) -> None:
        times = self.times.setdefault(interval, [])
        times.append(time.perf_counter())
        if len(times) == self.clients:
            self.done(interval).set()


async def _client(session: ClientSession, url: str, receipts: Receipts) -> None:
    async with session.ws_connect(url) as socket:
        receipts.joined()
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                break
            event = json.loads(message.data)
            if event["type"] == "interval":
                receipts.got(event["interval"])


async def run(args: argparse.Namespace) -> None:
    print(machine_line())
    work = Path(tempfile.mkdtemp(prefix="bench-dash-ws-"))
    broker = MosquittoProcess(work / "mosquitto")
    (work / "mosquitto").mkdir()
    await broker.start()
    try:
        ledger_url = f"sqlite:///{work / 'ledger.db'}"
        market = Market(ledger_url, args.households)
        for _ in range(args.warm):
            market.log_interval()
        print(
            f"ledger: {args.households} households, {args.warm} intervals logged first "
            f"({market.ledger.size:,} entries)"
        )
        settings = DashboardSettings(
            ledger_url=ledger_url,
            read_model_url=f"sqlite:///{work / 'read-model.db'}",
            broker=TransportConfig(address=broker.address, client_id="bench-dashboard"),
            sync_every_s=3600.0,
        )
        app = make_app(settings)
        pushed: dict[int, float] = {}
        hub = app[HUB]
        plain_broadcast = hub.broadcast

        def timed_broadcast(text: str) -> None:
            event = json.loads(text)
            if event["type"] == "interval":
                pushed[event["interval"]] = time.perf_counter()
            plain_broadcast(text)

        hub.broadcast = timed_broadcast  # type: ignore[method-assign]
        server = TestServer(app)
        await server.start_server()
        rt = app[RUNTIME]
        await asyncio.wait_for(rt.ready.wait(), 600)
        await asyncio.wait_for(rt.on_bus.wait(), 30)
        receipts = Receipts(args.clients)
        url = str(server.make_url("/ws"))
        operator = Signer(market.operator, MARKET, "operator")
        topics = Topics(MARKET)
        end_to_end: list[float] = []
        push: list[float] = []
        entries: list[int] = []
        async with ClientSession() as session:
            clients = [
                asyncio.create_task(_client(session, url, receipts)) for _ in range(args.clients)
            ]
            await asyncio.wait_for(receipts.all_connected.wait(), 60)
            if hub.clients != args.clients:
                raise SystemExit(f"{hub.clients} clients registered, not {args.clients}")
            publisher = TransportConfig(address=broker.address, client_id="bench-operator")
            async with Transport(publisher) as bus:
                await bus.wait_connected()
                for seq in range(1, args.intervals + 1):
                    before = market.ledger.size
                    interval = await asyncio.to_thread(market.log_interval)
                    entries.append(market.ledger.size - before)
                    body = AnnouncementBody(Phase.CLEARED, STEP, 300_000, 80_000, 150_000, 1, 1)
                    wire = operator.sign(body, interval=interval, seq=seq, expires=0).to_wire()
                    published = time.perf_counter()
                    await bus.publish(topics.announce, wire)
                    await asyncio.wait_for(receipts.done(interval).wait(), 30)
                    end_to_end += [t - published for t in receipts.times[interval]]
                    push += [t - pushed[interval] for t in receipts.times[interval]]
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
        await server.close()
        market.ledger.store.close()
        print(
            f"{args.clients} WebSockets, {args.intervals} intervals of "
            f"~{statistics.mean(entries):,.0f} log entries, {len(push)} receipts"
        )
        print(f"  end to end (bus publish -> every client): {_quantiles(end_to_end)}")
        print(f"  push (Hub.broadcast -> every client):     {_quantiles(push)}")
        print(f"  dropped for slow clients: {hub.dropped}")
    finally:
        await broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--households", type=int, default=500)
    parser.add_argument("--warm", type=int, default=8)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
