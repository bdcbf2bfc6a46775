"""A flood on one household's topics while 20 honest households trade (issue 11, 6).

A private Mosquitto saving its database on a timer (``autosave_on_changes false``,
``autosave_interval 60``: what docs/protocol.md advises), the real ``wattmesh ledger
run`` process (``interval_s`` 10, SQLite, signatures checked inline), 20 honest
households (one light client that answers each ``open`` announcement with a signed
reading and order per household) and one flooding client in a process of its own
(raw socket, QoS 1, everything written at once: as fast as it can) that publishes
``--junk`` junk messages on the first household's order topic and ``--audits``
17-byte audit requests on its audit topic, interleaved. The flood starts just after
``--quiet`` intervals without it (the baseline, in the same run).

Per interval: households logged (readings and orders, of 20), junk and audit
requests the flooder got acknowledged in it, responses the ledger sent and the
flooded household received (rejections, audit answers), the ledger's log lines, and
the gate time (from the open until every household's reading and order was admitted).

    python bench/bench_flood.py [--junk 50000] [--audits 20000] [--quiet 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _machine import machine_line
from _mosquitto import RawClient, publish_packets, run_mosquitto

from wattmesh.broker._mqtt_packets import (
    DISCONNECT_BYTES,
)
from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    OrderBody,
    Phase,
    ReadingBody,
    Side,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.household_registry import write_registry

ROOT = Path(__file__).resolve().parents[1]
MARKET = "flood"
TOPICS = Topics(MARKET)
HOUSEHOLDS = [f"h{i:02d}" for i in range(20)]
FLOODED = HOUSEHOLDS[0]
INTERVAL_S = 10
SUMMARY = re.compile(
    r"interval (?P<interval>\d+) \(\S+\): orders (?P<orders>\d+)/(?P<households>\d+) "
    r"readings (?P<readings>\d+)/\d+ .* gate_s (?P<gate_s>\S+) close_s \S+ "
    r"rejected (?P<rejected>\d+).* responses (?P<responses>\d+) limited (?P<limited>\d+) "
    r"dropped (?P<dropped>\d+) audit_ignored (?P<audit_ignored>\d+)"
)


@contextlib.contextmanager
def mosquitto(workdir: Path) -> Iterator[int]:
    settings = (
        f"persistence true\npersistence_location {workdir}/\n"
        "autosave_on_changes false\nautosave_interval 60\n"
        "max_queued_messages 200000\nset_tcp_nodelay true\n"
    )
    with run_mosquitto(workdir, settings) as (port, _pid):
        yield port


def write_market(folder: Path, port: int) -> dict[str, SigningKey]:
    write_key_pair(folder / "operator")
    keys = {agent: SigningKey.generate() for agent in HOUSEHOLDS}
    write_registry(folder / "registry.json", {a: k.verifying for a, k in keys.items()})
    (folder / "ledger.toml").write_text(
        f'market_id = "{MARKET}"\noperator_key_file = "operator/private_key.pem"\n'
        f'registry_file = "registry.json"\ninterval_s = {INTERVAL_S}\n'
        f'[database]\nurl = "sqlite:///{folder / "ledger.db"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        "[gate]\ntimeout_s = 9\ngrace_s = 2\n"
        "[[tariffs]]\nstart_hour_utc = 0\n"
        "retail_micro_per_kwh = 300000\nfeed_in_micro_per_kwh = 80000\n",
        encoding="utf-8",
    )
    return keys


def _flooder(port: int, junk: int, audits: int, ready: Any, go: Any, acked: Any, done: Any) -> None:
    """One client: once ``go`` is set, at the next ``open`` announcement every PUBLISH
    written at once, PUBACKs counted as they come."""
    order, audit = TOPICS.order(FLOODED), TOPICS.audit_request(FLOODED)
    total = junk + audits
    items: list[tuple[str, bytes]] = []
    for n in range(total):
        if n * audits // total != (n + 1) * audits // total:  # spread evenly
            items.append((audit, b'{"from_size": 1} '))  # 17 bytes
        else:
            items.append((order, b'{"junk": %d}' % n))
    packets = publish_packets(items)
    client = RawClient(port, f"flooder-{os.getpid()}", TOPICS.announce)
    ready.put(os.getpid())
    while True:  # a live (not retained) open announcement after ``go``
        first, body = client.read()
        live_publish = first >> 4 == 3 and not first & 1
        if live_publish and go.is_set() and b'"phase":"open"' in body:
            break

    def count_acks() -> None:
        n = 0
        while n < total:
            if client.read_packet() == 0x40:
                n += 1
                if n % 500 == 0 or n == total:
                    acked.value = n

    reader = threading.Thread(target=count_acks)
    reader.start()
    start = time.monotonic()
    client.sock.sendall(packets)
    reader.join()
    elapsed = time.monotonic() - start
    client.sock.sendall(DISCONNECT_BYTES)
    client.sock.close()
    done.put(elapsed)


class Honest:
    """Each household's signed reading and order in answer to every ``open``."""

    def __init__(self, transport: Transport, keys: dict[str, SigningKey]) -> None:
        self.transport = transport
        self.keys = keys
        self.seq = 0
        self.opened: dict[int, float] = {}

    async def run(self) -> None:
        async for message in self.transport.messages():
            if message.topic != TOPICS.announce or not message.payload:
                continue
            signed = decode_message(message.payload)
            body = signed.body_as(AnnouncementBody)
            interval = signed.header.interval
            if body.phase is not Phase.OPEN or interval in self.opened:
                continue
            self.opened[interval] = time.monotonic()
            self.seq += 1
            sends = []
            for n, (agent, key) in enumerate(self.keys.items()):
                registers = self.seq * 5
                reading = ReadingBody(interval, registers if n % 2 else 0, 0, 0, 0)
                # 40 Wh: within a default 17,250 W connection over 10 s (48 Wh), which
                # the ledger enforces (beyond_connection otherwise).
                order = OrderBody(Side.BUY if n % 2 else Side.SELL, 40, 150_000)
                pair: tuple[tuple[str, Body], ...] = (
                    (TOPICS.reading(agent), reading),
                    (TOPICS.order(agent), order),
                )
                for k, (topic, b) in enumerate(pair):
                    wire = sign_message(
                        key,
                        b,
                        market=MARKET,
                        interval=interval,
                        agent=agent,
                        seq=2 * self.seq + k,
                        expires=interval + INTERVAL_S,
                    ).to_wire()
                    sends.append(self.transport.publish(topic, wire, qos=1))
            await asyncio.gather(*sends)


async def main_async(args: argparse.Namespace) -> bool:
    print(machine_line())
    print(
        f"{len(HOUSEHOLDS)} households, interval_s {INTERVAL_S}, flood on {FLOODED}'s topics: "
        f"{args.junk} junk messages + {args.audits} audit requests, one client"
    )
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as port:
        folder = Path(tmp)
        keys = write_market(folder, port)
        broker = BrokerAddress("127.0.0.1", port)
        households = Transport(
            TransportConfig(address=broker, client_id="honest"),
            subscriptions=[(TOPICS.announce, 1)],
        )
        replies = Transport(
            TransportConfig(address=broker, client_id="flood-replies"),
            subscriptions=[(TOPICS.error(FLOODED), 1), (TOPICS.checkpoint_reply(FLOODED), 1)],
        )
        received = [0]

        async def count_replies() -> None:
            async for _message in replies.messages():
                received[0] += 1

        ledger = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wattmesh.cli",
            "ledger",
            "run",
            "--config",
            str(folder / "ledger.toml"),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert ledger.stderr is not None
        ctx = multiprocessing.get_context("spawn")
        acked, done, ready, go = ctx.Value("i", 0), ctx.Queue(), ctx.Queue(), ctx.Event()
        flooder = ctx.Process(
            target=_flooder, args=(port, args.junk, args.audits, ready, go, acked, done)
        )
        flooder.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.get, True, 60)
        armed = False
        try:
            async with households, replies:
                await asyncio.wait_for(
                    asyncio.gather(households.wait_connected(), replies.wait_connected()), 20
                )
                honest = Honest(households, keys)
                tasks = [
                    asyncio.create_task(honest.run()),
                    asyncio.create_task(count_replies()),
                ]
                print(
                    f"{'interval':>10} {'flood':>5} {'logged':>9} {'junk+audit acked':>16} "
                    f"{'responses':>9} {'limited':>8} {'dropped':>7} {'received':>8} "
                    f"{'log lines':>9} {'gate_s':>7}"
                )
                lines = 0
                seen, last_acked, last_received = 0, 0, 0
                flood_done_at: int | None = None
                quiet_gates: list[float] = []
                flood_gates: list[float] = []
                short: list[str] = []  # intervals without every household logged
                while True:
                    raw = await asyncio.wait_for(ledger.stderr.readline(), 60)
                    if not raw:
                        raise RuntimeError("the ledger process ended")
                    lines += 1
                    match = SUMMARY.search(raw.decode())
                    if match is None:
                        continue
                    seen += 1
                    now_acked, now_received = acked.value, received[0]
                    flooding = armed and (flood_done_at is None or seen <= flood_done_at)
                    sent = now_acked - last_acked
                    logged = min(int(match["orders"]), int(match["readings"]))
                    if seen > 1 and logged < len(HOUSEHOLDS):  # (after the start-up interval)
                        short.append(match["interval"])
                    print(
                        f"{match['interval']:>10} {'yes' if flooding else 'no':>5} "
                        f"{logged:>5}/{len(HOUSEHOLDS)} {sent:>16,} {match['responses']:>9} "
                        f"{match['limited']:>8} {match['dropped']:>7} "
                        f"{now_received - last_received:>8} {lines:>9} {match['gate_s']:>7}",
                        flush=True,
                    )
                    (flood_gates if flooding else quiet_gates).append(float(match["gate_s"]))
                    last_acked, last_received, lines = now_acked, now_received, 0
                    if seen == args.quiet + 1 and not armed:  # (after the start-up interval)
                        go.set()  # the flood starts with the next open
                        armed = True
                    elif armed and flood_done_at is None and not flooder.is_alive():
                        flood_done_at = seen + 1  # the next interval still judges its tail
                    if flood_done_at is not None and seen > flood_done_at:
                        break
                    if seen > args.quiet + 12:
                        print("the flood did not end within 12 intervals")
                        break
                flood_s = done.get(timeout=5)
                print(
                    f"flood: {args.junk + args.audits:,} messages acknowledged by the broker in "
                    f"{flood_s:.1f} s ({(args.junk + args.audits) / flood_s:,.0f}/s)"
                )
                print(
                    f"gate_s without the flood {min(quiet_gates):.3f}-{max(quiet_gates):.3f}, "
                    f"under it {min(flood_gates):.3f}-{max(flood_gates):.3f}"
                )
                print(
                    "every household's reading and order logged in every interval: "
                    + ("yes" if not short else f"NO (intervals {', '.join(short)})")
                )
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                return not short
        finally:
            go.set()
            flooder.join(30)
            if flooder.is_alive():
                flooder.kill()
            if ledger.returncode is None:
                ledger.terminate()
                await ledger.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--junk", type=int, default=50_000)
    parser.add_argument("--audits", type=int, default=20_000)
    parser.add_argument("--quiet", type=int, default=2, help="intervals before the flood")
    if not asyncio.run(main_async(parser.parse_args())):
        sys.exit(1)


if __name__ == "__main__":
    main()
