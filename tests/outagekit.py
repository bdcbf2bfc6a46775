"""A household agent publishing through its outbox while Mosquitto is killed.

Shared by tests/test_agent_outbox.py (short run) and bench/bench_outbox_outage.py
(the full minute). The receiving side stands in for the ledger's ingest: a
persistent-session MQTT subscriber that records every (agent, seq) it gets.
"Exactly once and in order" there means: at-least-once delivery (the outbox keeps
every message until its PUBACK and the transport retries it) plus an idempotent
receiver. The first copies of the messages must be exactly seq 1..N in this order;
every further copy is a redelivery, counted, and must be byte-identical.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wattmesh.agents._outbox import Outbox
from wattmesh.agents._publisher import DurablePublisher
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.agents.meter import MeterReading
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import decode_message
from wattmesh.broker.mosquitto import MosquittoProcess, Persistence
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Session, Transport, TransportConfig

INTERVAL = 1_751_241_600  # the interval every reading is signed for (any start works)
TIMEOUT_S = 30.0


class CountingMeter:
    """A meter whose registers rise by 1 Wh per read; time from the system clock."""

    def __init__(self) -> None:
        self.reads = 0

    async def read(self) -> MeterReading:
        self.reads += 1
        return MeterReading(int(time.time()), self.reads, 0, 0, 100)


class Receiver:
    """Records (agent, seq) of every reading it receives; persistent MQTT session."""

    def __init__(
        self,
        address: BrokerAddress,
        topics: Topics,
        client_id: str,
        session: Session = Session.PERSISTENT,
    ) -> None:
        config = TransportConfig(
            address=address,
            client_id=client_id,
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
            session=session,
        )
        self.transport = Transport(config, subscriptions=[(topics.all_readings, 1)])
        self.firsts: list[tuple[str, int]] = []  # first copy of each (agent, seq), in order
        self.copies: Counter[tuple[str, int]] = Counter()
        self._payloads: dict[tuple[str, int], bytes] = {}
        self.mismatched = 0  # a redelivery whose bytes differ (must stay 0)
        self._progress = asyncio.Event()

    @property
    def redeliveries(self) -> int:
        return sum(self.copies.values()) - len(self.copies)

    async def run(self) -> None:
        async for message in self.transport.messages():
            decoded = decode_message(message.payload)
            key = (decoded.header.agent, decoded.header.seq)
            self.copies[key] += 1
            if key in self._payloads:
                self.mismatched += self._payloads[key] != message.payload
            else:
                self._payloads[key] = message.payload
                self.firsts.append(key)
            self._progress.set()

    async def wait_for(self, count: int, timeout_s: float = TIMEOUT_S) -> None:
        """Wait until ``count`` distinct messages have arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self.firsts) < count:
            self._progress.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                msg = f"received {len(self.firsts)} of {count} readings"
                raise TimeoutError(msg)
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                continue


@dataclass
class OutageReport:
    readings: int
    kills: int
    firsts: list[tuple[str, int]]
    redeliveries: int
    mismatched: int
    reconnects: int
    backlog_at_restart: list[int] = field(default_factory=list)  # outbox entries waiting
    dropped: int = 0
    commits: int = 0
    drain_s: float = 0.0  # from the last reading to the receiver having all


async def run_outage(
    workdir: Path,
    *,
    readings: int,
    kills: int,
    rate_hz: float = 10.0,
    outage_readings: int = 10,
    receiver_session: Session = Session.PERSISTENT,
) -> OutageReport:
    """Publish ``readings`` at ``rate_hz`` and SIGKILL Mosquitto ``kills`` times.

    Each outage lasts while ``outage_readings`` readings are taken; the broker then
    restarts on the same port with its persistence file. Kills are spread evenly.
    ``receiver_session=Session.CLEAN`` is the baseline: a clean-session receiver and
    a broker without persistence (it loses messages; the receiver then gives up
    waiting after 5 s and the report shows what arrived).
    """
    keeps = receiver_session is Session.PERSISTENT
    persistence = Persistence.ON if keeps else Persistence.OFF
    broker = MosquittoProcess(workdir / "mosquitto", persistence=persistence)
    await broker.start()
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    config = AgentConfig(agent_id="h001", topics=topics)
    base = TransportConfig(
        address=broker.address, client_id="agent-h001", backoff_initial_s=0.05, backoff_max_s=0.5
    )
    receiver = Receiver(broker.address, topics, "ledger-ingest", receiver_session)
    report = OutageReport(readings, kills, [], 0, 0, 0)
    taken = 0
    progress = asyncio.Event()
    try:
        async with receiver.transport:
            await asyncio.wait_for(receiver.transport.wait_connected(), TIMEOUT_S)
            receiving = asyncio.create_task(receiver.run())
            outbox = Outbox(workdir / "outbox.db")
            transport = agent_transport(config, base)
            async with transport, DurablePublisher(outbox, transport) as publisher:
                agent = HouseholdAgent(
                    config,
                    key=SigningKey.generate(),
                    transport=transport,
                    meter=CountingMeter(),
                    publisher=publisher,
                )

                async def produce() -> None:
                    nonlocal taken
                    loop = asyncio.get_running_loop()
                    start = loop.time()
                    for n in range(readings):
                        # Pacing the producer at rate_hz (a rate, not synchronisation).
                        await asyncio.sleep(max(0.0, start + n / rate_hz - loop.time()))
                        await agent.record_reading(INTERVAL)
                        taken += 1
                        progress.set()

                async def until_taken(count: int) -> None:
                    while taken < count:
                        progress.clear()
                        await asyncio.wait_for(progress.wait(), TIMEOUT_S)

                producer = asyncio.create_task(produce())
                for k in range(1, kills + 1):
                    await until_taken(k * readings // (kills + 1))
                    await broker.kill()
                    await asyncio.wait_for(transport.wait_disconnected(), TIMEOUT_S)
                    await until_taken(taken + outage_readings)
                    report.backlog_at_restart.append(outbox.pending)
                    await broker.start()
                await asyncio.wait_for(producer, readings / rate_hz + TIMEOUT_S)
                last_taken = time.monotonic()
                try:
                    await receiver.wait_for(readings, TIMEOUT_S if keeps else 5.0)
                except TimeoutError:
                    if keeps:
                        raise
                report.drain_s = time.monotonic() - last_taken
                assert await publisher.flush(TIMEOUT_S)
                report.reconnects = transport.reconnects
                report.dropped = outbox.dropped
                report.commits = outbox.commits
            outbox.close()
        await asyncio.wait_for(receiving, TIMEOUT_S)  # ends once its transport is closed
    finally:
        await broker.stop()
    report.firsts = receiver.firsts
    report.redeliveries = receiver.redeliveries
    report.mismatched = receiver.mismatched
    return report
