"""A cleared interval reaching 100 open WebSockets of the dashboard (target: all within 1 s).

A simulated neighbourhood's ledger (``simulate``, over a private Mosquitto) is copied
and its last K intervals are cut off. The dashboard serves the copy with the bus
listener on (log follow every hour only, so only the bus wakes it); N browsers connect
to ``/ws`` (aiohttp clients in this process, on the server's event loop: the figures
include their share of the one core). Then, K times: the next interval's log rows are
appended to the ledger file (as ``ledger run`` would), the operator's signed cleared
announcement is published on the bus, and the time until each client holds the
``interval`` event is taken:

- **end to end**: from the publish of the announcement (the bus, the listener's
  signature check, the read-model sync in a thread, the overview query, the push);
- **push**: from ``Hub.broadcast`` of the event to its receipt by each client.

    python bench/bench_dashboard_ws.py [--clients 100] [--intervals 10] [--households 3]
        [--ledger PATH]   # an existing ledger instead of a simulation (market from its meta)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _machine import machine_line
from aiohttp import ClientSession, WSMsgType
from aiohttp.test_utils import TestServer

from wattmesh.broker.messages import AnnouncementBody, Phase, Signer
from wattmesh.broker.mosquitto import MosquittoProcess
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Transport, TransportConfig
from wattmesh.dashboard._routes import RUNTIME
from wattmesh.dashboard.app import HUB, DashboardSettings, make_app
from wattmesh.ledger._append_only import trigger_names
from wattmesh.ledger.store import APPEND_ONLY_TABLES
from wattmesh.sim.simkeys import simulation_key
from wattmesh.sim.simulate import SimulationConfig, run_simulation

SEED = 7


def _drop_triggers(path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for table in APPEND_ONLY_TABLES:
            for name in trigger_names(table):
                conn.execute(sa.text(f'DROP TRIGGER IF EXISTS "{name}"'))
    engine.dispose()


def _cut(path: Path, k: int) -> list[tuple[int, list[Any], list[Any]]]:
    """Cut the last ``k`` cleared intervals off the ledger at ``path``; per interval, in
    order: (interval, its log rows, its checkpoint rows)."""
    _drop_triggers(path)
    with sqlite3.connect(path) as conn:
        clearings = conn.execute(
            "SELECT idx, interval FROM log_entry WHERE kind = 'clearing' ORDER BY idx DESC LIMIT ?",
            (k,),
        ).fetchall()[::-1]
        starts = []
        for idx, _interval in clearings:
            (before,) = conn.execute(
                "SELECT max(idx) FROM log_entry WHERE kind = 'checkpoint_ref' AND idx < ?", (idx,)
            ).fetchone()
            starts.append(before + 1)
        (size,) = conn.execute("SELECT count(*) FROM log_entry").fetchone()
        parts = []
        for n, (start, (_idx, interval)) in enumerate(zip(starts, clearings, strict=True)):
            end = starts[n + 1] if n + 1 < len(starts) else size
            rows = conn.execute(
                "SELECT * FROM log_entry WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
            ).fetchall()
            cps = conn.execute(
                "SELECT * FROM checkpoint WHERE tree_size > ? AND tree_size <= ?",
                (start, end if n + 1 < len(starts) else 1 << 62),
            ).fetchall()
            parts.append((interval, rows, cps))
        conn.execute("DELETE FROM log_entry WHERE idx >= ?", (starts[0],))
        conn.execute("DELETE FROM checkpoint WHERE tree_size > ?", (starts[0],))
    return parts


def _append(path: Path, rows: list[Any], checkpoints: list[Any]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(f"INSERT INTO log_entry VALUES ({','.join('?' * len(rows[0]))})", rows)
        if checkpoints:
            marks = ",".join("?" * len(checkpoints[0]))
            conn.executemany(f"INSERT INTO checkpoint VALUES ({marks})", checkpoints)


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
        if args.ledger is None:
            started = time.perf_counter()
            report = await run_simulation(
                SimulationConfig(
                    households=args.households, days=1, seed=SEED, pv_share=0.5,
                    forecaster="naive", history_days=7, workdir=work / "sim",
                    gate_timeout_s=30.0, broker=broker.address.url,
                )
            )  # fmt: skip
            source = work / "sim" / "ledger.db"
            print(
                f"ledger: simulate {args.households} households, 1 day: "
                f"{report['ledger_entries']} entries in {time.perf_counter() - started:.1f} s"
            )
        else:
            source = Path(args.ledger)
        ledger = work / "ledger.db"
        shutil.copyfile(source, ledger)
        parts = _cut(ledger, args.intervals)
        with sqlite3.connect(ledger) as conn:
            (market,) = conn.execute(
                "SELECT value FROM ledger_meta WHERE key = 'market_id'"
            ).fetchone()
        settings = DashboardSettings(
            ledger_url=f"sqlite:///{ledger}",
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
        async with ClientSession() as session:
            clients = [
                asyncio.create_task(_client(session, url, receipts)) for _ in range(args.clients)
            ]
            await asyncio.wait_for(receipts.all_connected.wait(), 60)
            if hub.clients != args.clients:
                raise SystemExit(f"{hub.clients} clients registered, not {args.clients}")
            operator = Signer(simulation_key(SEED, "operator"), market, "operator")
            if args.ledger is not None and rt.operator_key != operator.key.verifying:
                raise SystemExit("--ledger must come from a simulation with seed 7")
            topics = Topics(market)
            end_to_end: list[float] = []
            push: list[float] = []
            async with Transport(
                TransportConfig(address=broker.address, client_id="bench-operator")
            ) as bus:
                await bus.wait_connected()
                for seq, (interval, rows, checkpoints) in enumerate(parts, start=1):
                    _append(ledger, rows, checkpoints)
                    body = AnnouncementBody(Phase.CLEARED, 900, 300_000, 80_000, 150_000, 1, 1)
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
        print(f"{args.clients} WebSockets, {len(parts)} intervals, {len(push)} receipts")
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
    parser.add_argument("--households", type=int, default=3)
    parser.add_argument("--ledger", default=None)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
