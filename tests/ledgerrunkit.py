"""``wattmesh ledger run`` as a process, and households the test drives over MQTT.

:class:`Households` answers each ``open`` announcement (checked against the operator's
key) with a signed reading and order per household, like agents with an outbox: an
interval announced again (a new leader reopening it) gets the very same bytes again.
:class:`LedgerProcess` runs ``python -m wattmesh.cli ledger run`` and hands its log
lines to the test as they come (no sleeps: the test waits for lines).
"""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from broker.keys import SigningKey, VerifyingKey, write_key_pair
from broker.messages import (
    AnnouncementBody,
    OrderBody,
    Phase,
    ReadingBody,
    Side,
    decode_message,
    sign_message,
)
from broker.topics import Topics
from broker.transport import BrokerAddress, Transport
from ledger.registry import write_registry

ROOT = Path(__file__).resolve().parents[1]
INTERVAL_S = 2
LINE_TIMEOUT_S = 30.0
SUMMARY = re.compile(
    r"interval (?P<interval>\d+) \(\S+\): orders (?P<orders>\d+)/(?P<households>\d+) "
    r"readings (?P<readings>\d+)/\d+ trades (?P<trades>\d+) volume_wh (?P<volume>\d+) "
    r"price_micro_per_kwh (?P<price>\S+) size (?P<size>\d+) root (?P<root>[0-9a-f]{16}) "
    r"gate_s \S+ close_s \S+ rejected (?P<rejected>\d+)(?: \((?P<reasons>[^)]*)\))? "
    r"redelivered \d+(?: skipped (?P<skipped>\d+))?$"
)
# (agent, side, quantity_wh, limit price): two buyers and a seller that cross.
BOOK = (
    ("h001", Side.BUY, 200, 250_000),
    ("h002", Side.SELL, 150, 100_000),
    ("h003", Side.BUY, 100, 200_000),
)


@dataclass
class Market:
    """A market's files: operator key, registry, ``ledger.toml``."""

    folder: Path
    topics: Topics
    operator: SigningKey
    keys: dict[str, SigningKey]
    config: Path


def write_market(folder: Path, *, db_url: str, broker: BrokerAddress) -> Market:
    """Keys, registry and a ``ledger.toml`` with 2 s intervals for a fresh market."""
    market_id = f"run-{uuid.uuid4().hex[:8]}"  # the broker is shared: own topics, session
    operator = write_key_pair(folder / "operator")
    keys = {agent: SigningKey.generate() for agent, *_ in BOOK}
    write_registry(folder / "registry.json", {a: k.verifying for a, k in keys.items()})
    config = folder / "ledger.toml"
    config.write_text(
        f'market_id = "{market_id}"\n'
        'operator_key_file = "operator/private_key.pem"\n'
        'registry_file = "registry.json"\n'
        f"interval_s = {INTERVAL_S}\n"
        f'[database]\nurl = "{db_url}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'client_id = "{market_id}-ledger"\n'
        "[gate]\ntimeout_s = 1.5\ngrace_s = 0.5\n"
        '[mechanism]\nname = "uniform"\n'
        "[[tariffs]]\nstart_hour_utc = 0\n"
        "retail_micro_per_kwh = 300000\nfeed_in_micro_per_kwh = 80000\n"
        "[lease]\npoll_s = 1.0\n",
        encoding="utf-8",
    )
    return Market(folder, Topics(market_id), operator, keys, config)


@dataclass
class Households:
    """Signed readings and orders in answer to the operator's announcements."""

    market: Market
    transport: Transport
    silent: set[str] = field(default_factory=set)
    forger: str | None = None  # this household's topic also gets a bad-signature order
    # interval -> (agent, topic, wire) sent for it
    answered: dict[int, list[tuple[str, str, bytes]]] = field(default_factory=dict)
    opened: asyncio.Queue[int] = field(default_factory=asyncio.Queue)  # after answering
    _seq: dict[str, int] = field(default_factory=dict)
    _registers: dict[str, int] = field(default_factory=dict)

    async def run(self) -> None:
        operator: VerifyingKey = self.market.operator.verifying
        async for message in self.transport.messages():
            if message.topic != self.market.topics.announce or not message.payload:
                continue
            signed = decode_message(message.payload)
            signed.verify(operator)
            body = signed.body_as(AnnouncementBody)
            interval = signed.header.interval
            if body.phase is Phase.OPEN:
                await self._answer(interval)
                self.opened.put_nowait(interval)

    async def _answer(self, interval: int) -> None:
        if interval not in self.answered:
            self.answered[interval] = [
                (agent, topic, wire)
                for agent, *_ in BOOK
                if agent not in self.silent
                for topic, wire in self._sign(agent, interval)
            ]
            if self.forger is not None:  # first, so it arrives while the gate is open
                order = OrderBody(Side.SELL, 1, 1)
                wire = sign_message(
                    self.market.keys[self.forger],
                    order,
                    market=self.market.topics.market_id,
                    interval=interval,
                    agent=self.forger,
                    seq=10**9 + interval % 10**6,
                    expires=interval + INTERVAL_S,
                ).to_wire()
                forged = wire.replace(b'"quantity_wh":1', b'"quantity_wh":9')  # signed as 1
                assert forged != wire
                topic = self.market.topics.order(self.forger)
                self.answered[interval].insert(0, (self.forger, topic, forged))
        for _agent, topic, wire in self.answered[interval]:  # again: byte for byte
            await self.transport.publish(topic, wire, qos=1)

    def _sign(self, agent: str, interval: int) -> list[tuple[str, bytes]]:
        _, side, quantity_wh, price = next(row for row in BOOK if row[0] == agent)
        registers = self._registers.get(agent, 0)
        # 5 Wh per 2 s interval: within a connection's 17,250 W, so nothing is flagged.
        self._registers[agent] = registers + 5
        import_wh, export_wh = (registers, 0) if side is Side.BUY else (0, registers)
        reading = ReadingBody(interval, import_wh, export_wh, 0, 0)
        order = OrderBody(side, quantity_wh, price)
        out = []
        topics = self.market.topics
        for topic, body in ((topics.reading(agent), reading), (topics.order(agent), order)):
            seq = self._seq[agent] = self._seq.get(agent, 0) + 1
            wire = sign_message(
                self.market.keys[agent],
                body,
                market=topics.market_id,
                interval=interval,
                agent=agent,
                seq=seq,
                expires=interval + INTERVAL_S,
            ).to_wire()
            out.append((topic, wire))
        return out


class LedgerProcess:
    """``wattmesh ledger run`` with its log lines (stderr) readable one by one."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @classmethod
    async def start(cls, config: Path) -> LedgerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wattmesh.cli",
            "ledger",
            "run",
            "--config",
            str(config),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def line(self) -> str:
        assert self.process.stderr is not None
        raw = await asyncio.wait_for(self.process.stderr.readline(), LINE_TIMEOUT_S)
        if not raw:
            raise AssertionError(f"the ledger process ended; its log: {self.lines[-20:]}")
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        return line

    async def until(self, needle: str) -> str:
        """The next line that contains ``needle``."""
        while needle not in (line := await self.line()):
            pass
        return line

    async def summary(self) -> re.Match[str]:
        """The next per-interval summary line, parsed."""
        while True:
            line = await self.line()
            _, _, message = line.partition("ledger.operator: ")
            if message and (match := SUMMARY.fullmatch(message)):
                return match

    async def rest(self) -> str:
        """Everything it writes until it exits."""
        assert self.process.stderr is not None
        tail = await asyncio.wait_for(self.process.stderr.read(), LINE_TIMEOUT_S)
        self.lines += tail.decode().splitlines()
        return "\n".join(self.lines)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
