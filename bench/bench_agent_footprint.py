"""Footprint of ``wattmesh agent`` on a P1 meter publishing one reading per second.

Real parts: a private Mosquitto, a P1 TCP dongle stand-in sending one DSMR 5
telegram per second (meter time = now, Europe/Amsterdam), a market-operator stand-in
announcing (signed, retained) a new 1-second interval every second, and the agent as
a real subprocess (``python -m wattmesh.cli agent --config agent.toml``) with its
outbox on disk. Per announcement the agent publishes a signed reading and, after
``forecast_timeout_s`` = 0.5 s without a forecast, a signed order.

Baseline in the same run and on the same announcements: a bare Python process that
imports only aiomqtt and cryptography (loading a PEM key like the agent) and
publishes two ECDSA P-256-signed messages (JSON of similar size, QoS 1) per
announcement, as the agent does.

Figures: resident memory (RSS, and PSS/USS from /proc/PID/smaps_rollup) after the
window, peak RSS (VmHWM), CPU (utime+stime over the window, % of one core), start-up
(process start to the first reading received by a subscriber). The agent runs under
``-X importtime``: the benchmark asserts its whole import closure, lazy imports
included, holds none of prophet, pandas, numpy, SQLAlchemy.

    .venv/bin/python bench/bench_agent_footprint.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._machine import machine_line  # noqa: E402
from tests.p1kit import telegram  # noqa: E402
from wattmesh.broker.keys import write_key_pair  # noqa: E402
from wattmesh.broker.messages import AnnouncementBody, Phase, sign_message  # noqa: E402
from wattmesh.broker.mosquitto import MosquittoProcess  # noqa: E402
from wattmesh.broker.topics import Topics  # noqa: E402
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig  # noqa: E402

HEAVY = ("prophet", "pandas", "numpy", "sqlalchemy")
TOPICS = Topics("fp")
_AMSTERDAM = ZoneInfo("Europe/Amsterdam")
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# The baseline: aiomqtt + cryptography only, two signed messages per announcement.
BASELINE = r"""
import asyncio, json, sys, time
import aiomqtt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

host, port, announce, reading_topic, order_topic = sys.argv[1:6]
pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
key = serialization.load_pem_private_key(pem, password=None)  # as the agent loads its key
algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
seq = 0

def signed(body):
    global seq
    seq += 1
    header = {"agent": "base", "seq": seq, "time": int(time.time())}
    data = json.dumps({"body": body, "header": header}, sort_keys=True).encode()
    signature = key.sign(data, algorithm).hex()
    return json.dumps({"msg": data.decode(), "sig": signature, "pad": "x" * 180})

async def main():
    async with aiomqtt.Client(host, int(port), identifier="fp-baseline") as client:
        await client.subscribe(announce, qos=1)
        async for message in client.messages:
            now = int(time.time())
            reading = {"import_wh": 22222221, "export_wh": 3580245, "power_w": 750, "t": now}
            await client.publish(reading_topic, signed(reading), qos=1)
            order = {"side": "none", "energy_wh": 0, "limit": 0, "t": now}
            await client.publish(order_topic, signed(order), qos=1)

asyncio.run(main())
"""


@dataclass(frozen=True)
class Footprint:
    rss_mb: float
    pss_mb: float
    uss_mb: float
    peak_rss_mb: float
    cpu_percent: float
    startup_s: float
    readings: int  # received during the window


def _smaps_mb(pid: int) -> tuple[float, float, float]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields["Rss"] / 1024, fields["Pss"] / 1024, uss / 1024


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _cpu_s(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


@contextlib.asynccontextmanager
async def _dongle() -> AsyncIterator[int]:
    """A P1-to-TCP dongle: one DSMR 5 telegram per second, meter time = now."""

    async def serve(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                local = datetime.now(_AMSTERDAM)
                flag = "S" if local.dst() else "W"
                writer.write(telegram(stamp=local.strftime("%y%m%d%H%M%S") + flag))
                await writer.drain()
                await asyncio.sleep(1.0)  # the meter's own cadence, not synchronisation

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def _operator(broker: BrokerAddress, folder: Path, started: asyncio.Event) -> None:
    """Announce a new 1 s interval every second (signed, retained, QoS 1)."""
    key = write_key_pair(folder / "operator")
    config = TransportConfig(address=broker, client_id="fp-operator")
    async with Transport(config) as op:
        seq = 0
        while True:
            seq += 1
            now = int(time.time())
            wire = sign_message(
                key,
                AnnouncementBody(Phase.OPEN, 1, 300_000, 80_000),
                market=TOPICS.market_id,
                interval=now,
                agent="operator",
                seq=seq,
                expires=now + 1,
            ).to_wire()
            await op.publish(TOPICS.announce, wire, qos=1, retain=True)
            started.set()
            await asyncio.sleep(1.0)  # the market's cadence, not synchronisation


def _agent_config(folder: Path, broker: BrokerAddress, p1_port: int) -> Path:
    write_key_pair(folder / "keys")
    path = folder / "agent.toml"
    path.write_text(
        f'agent_id = "h001"\nmarket_id = "{TOPICS.market_id}"\n'
        f'broker = "mqtt://{broker.host}:{broker.port}"\n'
        'key_file = "keys/private_key.pem"\nstate_dir = "state"\n'
        'operator_key_file = "operator/public_key.pem"\nforecast_timeout_s = 0.5\n'
        f'[meter]\nkind = "p1-tcp"\nhost = "127.0.0.1"\nport = {p1_port}\n',
        encoding="utf-8",
    )
    return path


async def _measure(
    process: asyncio.subprocess.Process,
    started_at: float,
    first: asyncio.Event,
    counts: dict[str, int],
    name: str,
    seconds: float,
) -> Footprint:
    await asyncio.wait_for(first.wait(), 30)
    startup_s = counts[name + "_first_at"] / 1e9 - started_at
    await asyncio.sleep(5.0)  # warm-up before the window (a measurement interval)
    before_cpu, before_n, t0 = _cpu_s(process.pid), counts[name], time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window itself
    cpu = (_cpu_s(process.pid) - before_cpu) / (time.monotonic() - t0) * 100
    rss, pss, uss = _smaps_mb(process.pid)
    return Footprint(
        rss, pss, uss, _peak_rss_mb(process.pid), cpu, startup_s, counts[name] - before_n
    )


async def _count(
    broker: BrokerAddress, counts: dict[str, int], firsts: dict[str, asyncio.Event]
) -> None:
    config = TransportConfig(address=broker, client_id="fp-viewer")
    topics = [(TOPICS.reading("h001"), 1), (TOPICS.reading("base"), 1)]
    async with Transport(config, subscriptions=topics) as viewer:
        await viewer.wait_connected()
        firsts["ready"].set()
        async for message in viewer.messages():
            name = "agent" if message.topic == TOPICS.reading("h001") else "base"
            counts[name] += 1
            if not firsts[name].is_set():
                counts[name + "_first_at"] = time.time_ns()
                firsts[name].set()


def _imported(importtime_log: str) -> set[str]:
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


async def _main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = MosquittoProcess(folder / "mosquitto")
        await broker.start()
        counts = {"agent": 0, "base": 0}
        firsts = {k: asyncio.Event() for k in ("agent", "base", "ready")}
        announcing = asyncio.Event()
        try:
            async with _dongle() as p1_port:
                viewer = asyncio.create_task(_count(broker.address, counts, firsts))
                operator = asyncio.create_task(_operator(broker.address, folder, announcing))
                await asyncio.wait_for(firsts["ready"].wait(), 10)
                await asyncio.wait_for(announcing.wait(), 10)
                config = _agent_config(folder, broker.address, p1_port)
                log = (folder / "agent.log").open("wb")
                t_agent = time.time()
                agent = await asyncio.create_subprocess_exec(
                    sys.executable, "-X", "importtime", "-m", "wattmesh.cli", "agent",
                    "--config", str(config), cwd=REPO, stderr=log,
                )  # fmt: skip
                # One start-up at a time: on two cores they would slow each other down.
                await asyncio.wait_for(firsts["agent"].wait(), 30)
                t_base = time.time()
                base = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", BASELINE, broker.address.host,
                    str(broker.address.port), TOPICS.announce, TOPICS.reading("base"),
                    TOPICS.order("base"),
                )  # fmt: skip
                try:
                    ours, baseline = await asyncio.gather(
                        _measure(agent, t_agent, firsts["agent"], counts, "agent", seconds),
                        _measure(base, t_base, firsts["base"], counts, "base", seconds),
                    )
                finally:
                    for process in (agent, base):
                        process.terminate()
                        await process.wait()
                    log.close()
                    for task in (viewer, operator):
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        finally:
            await broker.stop()
        stderr = (folder / "agent.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    heavy = _imported(stderr) & set(HEAVY)
    assert not heavy, f"the agent imported {sorted(heavy)}"
    print(machine_line())
    print(f"window {seconds:g} s after 5 s warm-up; one announcement (reading + order) per second")
    for name, f in (("wattmesh agent (P1 TCP)", ours), ("bare aiomqtt+cryptography", baseline)):
        print(
            f"{name:<27} RSS {f.rss_mb:5.1f} MB  PSS {f.pss_mb:5.1f} MB  USS {f.uss_mb:5.1f} MB"
            f"  peak RSS {f.peak_rss_mb:5.1f} MB  CPU {f.cpu_percent:4.2f} %"
            f"  start-up to first reading {f.startup_s:4.2f} s  readings {f.readings}"
        )
    print(f"agent import closure: {len(_imported(stderr))} top-level packages, none of {HEAVY}")
    print(f"targets: RSS <= 45 MB, CPU <= 2 %, start-up <= 2 s: RSS {_ok(ours.rss_mb <= 45)}, "
          f"CPU {_ok(ours.cpu_percent <= 2)}, start-up {_ok(ours.startup_s <= 2)}")  # fmt: skip


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(_main(args.seconds))


if __name__ == "__main__":
    main()
