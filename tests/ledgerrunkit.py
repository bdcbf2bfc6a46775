"""``wattmesh ledger run`` as a process, and households the test drives over MQTT.

:class:`Households` answers each ``open`` announcement (checked against the operator's
key) with a signed reading and order per household, like agents with an outbox: an
interval announced again (a new leader reopening it) gets the very same bytes again.
:func:`household_agents` runs the real :class:`agents.agent.HouseholdAgent` for each
household instead (own connection and outbox), with :class:`StandInForecaster` in
the forecasting service's place. :class:`LedgerProcess` runs ``python -m
wattmesh.cli ledger run`` and hands its log lines to the test as they come (no
sleeps: the test waits for lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.outagekit import CountingMeter
from wattmesh.agents._outbox import Outbox
from wattmesh.agents._publisher import DurablePublisher
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.keys import SigningKey, VerifyingKey, write_key_pair
from wattmesh.broker.messages import (
    AnnouncementBody,
    ForecastBody,
    OrderBody,
    Phase,
    ReadingBody,
    Side,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.household_registry import Household, Registry, write_registry
from wattmesh.ledger.store import LedgerStore

ROOT = Path(__file__).resolve().parents[1]
INTERVAL_S = 2
MAX_POWER_W = 1_000_000  # every household's connection limit (registry and agents)
LINE_TIMEOUT_S = 30.0
SUMMARY = re.compile(
    r"interval (?P<interval>\d+) \(\S+\): orders (?P<orders>\d+)/(?P<households>\d+) "
    r"readings (?P<readings>\d+)/\d+ trades (?P<trades>\d+) volume_wh (?P<volume>\d+) "
    r"price_micro_per_kwh (?P<price>\S+) size (?P<size>\d+) root (?P<root>[0-9a-f]{16}) "
    r"gate_s \S+ close_s \S+ rejected (?P<rejected>\d+)(?: \((?P<reasons>[^)]*)\))? "
    r"redelivered (?P<redelivered>\d+) responses (?P<responses>\d+) limited (?P<limited>\d+) "
    r"dropped (?P<dropped>\d+) audit_ignored (?P<audit_ignored>\d+)"
    r"(?: skipped (?P<skipped>\d+))?$"
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


def write_market(
    folder: Path,
    *,
    db_url: str,
    broker: BrokerAddress,
    interval_s: int = INTERVAL_S,
    gate_timeout_s: float = 1.5,
    grace_s: float = 0.5,
    lease_poll_s: float = 1.0,
) -> Market:
    """Keys, registry and a ``ledger.toml`` for a fresh market (2 s intervals unless
    told otherwise)."""
    market_id = f"run-{uuid.uuid4().hex[:8]}"  # the broker is shared: own topics, session
    operator = write_key_pair(folder / "operator")
    keys = {agent: SigningKey.generate() for agent, *_ in BOOK}
    # Connections that carry the BOOK's orders in 2 s intervals (556 Wh at 1 MW).
    households = {a: Household(a, k.verifying, max_power_w=MAX_POWER_W) for a, k in keys.items()}
    write_registry(folder / "registry.json", Registry(households))
    config = folder / "ledger.toml"
    config.write_text(
        f'market_id = "{market_id}"\n'
        'operator_key_file = "operator/private_key.pem"\n'
        'registry_file = "registry.json"\n'
        f"interval_s = {interval_s}\n"
        f'[database]\nurl = "{db_url}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'client_id = "{market_id}-ledger"\n'
        f"[gate]\ntimeout_s = {gate_timeout_s}\ngrace_s = {grace_s}\n"
        '[mechanism]\nname = "uniform"\n'
        "[[tariffs]]\nstart_hour_utc = 0\n"
        "retail_micro_per_kwh = 300000\nfeed_in_micro_per_kwh = 80000\n"
        f"[lease]\npoll_s = {lease_poll_s}\n",
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


@dataclass
class StandInForecaster:
    """Answers each household's reading with a forecast of one interval that makes the
    household's order that of :data:`BOOK` (the forecasting service's part), except the
    first copy of ``held``'s reading in the second interval it sees: that reading is
    answered only when it comes again (``holding``: that interval, once it came)."""

    market: Market
    transport: Transport  # subscribed to every household's reading
    interval_s: int
    held: str
    holding: int | None = None
    key: SigningKey = field(default_factory=SigningKey.generate)
    _intervals: set[int] = field(default_factory=set)
    _seen: set[tuple[str, int]] = field(default_factory=set)
    _seq: int = 0

    async def run(self) -> None:
        async for message in self.transport.messages():
            reading = decode_message(message.payload)
            agent, interval = reading.header.agent, reading.header.interval
            self._intervals.add(interval)
            first_copy = (agent, interval) not in self._seen
            self._seen.add((agent, interval))
            if agent == self.held and first_copy and len(self._intervals) == 2:
                self.holding = interval
                continue
            _, side, quantity_wh, _ = next(row for row in BOOK if row[0] == agent)
            demand_wh, pv_wh = (quantity_wh, 0) if side is Side.BUY else (0, quantity_wh)
            body = ForecastBody(interval, self.interval_s, (demand_wh,), (pv_wh,), "book", None)
            self._seq += 1
            wire = sign_message(
                self.key,
                body,
                market=self.market.topics.market_id,
                interval=interval,
                agent="forecaster",
                seq=self._seq,
                expires=interval + self.interval_s,
            ).to_wire()
            await self.transport.publish(self.market.topics.forecast(agent), wire, qos=1)


@contextlib.asynccontextmanager
async def household_agents(
    market: Market, broker: BrokerAddress, state_dir: Path, forecaster: StandInForecaster
) -> AsyncIterator[dict[str, HouseholdAgent]]:
    """The real agent of each household in :data:`BOOK`, running (own MQTT connection,
    outbox in ``state_dir``, auditing the operator), beside ``forecaster``; both
    connected when this yields."""
    topics = market.topics
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(forecaster.transport)
        agents: dict[str, HouseholdAgent] = {}
        for agent_id, *_ in BOOK:
            config = AgentConfig(
                agent_id=agent_id,
                topics=topics,
                operator_key=market.operator.verifying,
                forecaster_key=forecaster.key.verifying,
                max_power_w=MAX_POWER_W,
                forecast_timeout_s=3600,  # orders wait for their forecast
            )
            base = TransportConfig(address=broker, client_id=f"{topics.market_id}-{agent_id}")
            status = StatusSigner(market.keys[agent_id], topics, agent_id)
            transport = await stack.enter_async_context(
                agent_transport(config, base, status=status)
            )
            outbox = Outbox(state_dir / f"{agent_id}.sqlite")
            stack.callback(outbox.close)
            publisher = await stack.enter_async_context(
                DurablePublisher(outbox, transport, commit_interval_s=0)
            )
            agents[agent_id] = HouseholdAgent(
                config,
                key=market.keys[agent_id],
                transport=transport,
                meter=CountingMeter(),
                publisher=publisher,
            )
        transports = [forecaster.transport, *(a.transport for a in agents.values())]
        await asyncio.wait_for(asyncio.gather(*(t.wait_connected() for t in transports)), 10)
        tasks = [asyncio.create_task(forecaster.run())]
        tasks += [asyncio.create_task(agent.run()) for agent in agents.values()]
        try:
            yield agents
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class LedgerProcess:
    """``wattmesh ledger run`` with its log lines (stderr) readable one by one."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    @classmethod
    async def start(
        cls, config: Path, *, module: Sequence[str] = ("wattmesh.cli",)
    ) -> LedgerProcess:
        """``python -m <module...> ledger run --config <config>`` (``module``: the CLI, or
        e.g. ``("tests.flushkill", agent)``, the CLI that dies at a chosen point)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *module,
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
            _, _, message = line.partition("wattmesh.ledger.operator: ")
            if message and (match := SUMMARY.fullmatch(message)):
                return match

    async def stop(self, timeout_s: float = LINE_TIMEOUT_S) -> str:
        """SIGTERM; everything it writes until it exits, which it must do with 0."""
        self.process.send_signal(signal.SIGTERM)
        log = await self.rest()
        assert await asyncio.wait_for(self.process.wait(), timeout_s) == 0
        return log

    async def rest(self) -> str:
        """Everything it writes until it exits."""
        assert self.process.stderr is not None
        tail = await asyncio.wait_for(self.process.stderr.read(), LINE_TIMEOUT_S)
        self.lines += tail.decode().splitlines()
        return "\n".join(self.lines)

    async def kill(self) -> None:
        """SIGKILL, to its whole session when it leads one (``forecast serve``'s forkserver
        and fitting processes hold its stderr: a killed service alone would leave them,
        and ``wait()`` waits for the pipe to close as well as for the exit)."""
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:  # not a session leader: the process alone
                self.process.kill()
            await self.process.wait()


def kept(db_url: str, interval: int) -> int:
    """Messages the ledger keeps in its intake for ``interval``."""
    store = LedgerStore(db_url)
    try:
        return len(store.intake(interval))
    finally:
        store.close()


async def poll_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``condition`` until it holds; TimeoutError after ``timeout_s``. For a state
    in another process's database, which no event here can follow."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (no event to wait on across processes)
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def answering_households(
    market: Market, broker: BrokerAddress, timeout_s: float = LINE_TIMEOUT_S
) -> AsyncIterator[Households]:
    """The market's :class:`Households`, answering every announcement on their own
    connection until the block ends."""
    transport = Transport(
        TransportConfig(address=broker, client_id=f"{market.topics.market_id}-households"),
        subscriptions=[(market.topics.announce, 1)],
    )
    async with transport:
        await asyncio.wait_for(transport.wait_connected(), timeout_s)
        houses = Households(market, transport)
        answering = asyncio.create_task(houses.run())
        try:
            yield houses
        finally:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)


async def assert_no_rejection(
    link: Transport, topic: str, timeout_s: float = LINE_TIMEOUT_S
) -> None:
    """``link`` (subscribed to a household's error ``topic``) has received nothing there
    so far: a marker published now is the first message it gets. A rejection would have
    been published before the ledger's summary line that preceded this check."""
    await link.publish(topic, b"marker", qos=1)
    first = await asyncio.wait_for(anext(link.messages()), timeout_s)
    assert first.payload == b"marker"
