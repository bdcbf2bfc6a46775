"""The agent sends its interval's messages again when the interval is opened again.

Over a real Mosquitto, so the RETAIN flag is the broker's: set on the retained copy
sent because the agent (re)subscribed, clear on a live publish. The agent publishes
through its real outbox and reaches the broker through an :class:`MqttTap` (to drop
its connection); a watcher records what the agent published, in broker order. Each
test ends by opening a new interval: the agent handles messages in order and its
outbox sends in order, so once that interval's reading is seen, everything the
earlier announcements caused has been seen too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.outagekit import CountingMeter
from tests.wirekit import MqttTap
from wattmesh.agents._outbox import Outbox
from wattmesh.agents._publisher import DurablePublisher
from wattmesh.agents.agent import AgentConfig, HouseholdAgent, agent_transport
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    ForecastBody,
    OrderBody,
    Phase,
    ReadingBody,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TIMEOUT_S = 10.0
STEP = 900
T = 1_751_241_600  # the interval the agent trades (any interval start works)
AGENT = "h001"
OPERATOR = SigningKey.generate()
FORECASTER = SigningKey.generate()


def _signed(key: SigningKey, body: Body, *, market: str, interval: int, seq: int) -> bytes:
    agent = "operator" if key is OPERATOR else "forecaster"
    return sign_message(
        key, body, market=market, interval=interval, agent=agent, seq=seq, expires=interval + STEP
    ).to_wire()


@dataclass
class Scene:
    """An agent behind a tap, the operator's connection and a watcher of the agent's
    readings and orders."""

    topics: Topics
    agent: HouseholdAgent
    agent_transport: Transport
    publisher: DurablePublisher
    tap: MqttTap
    operator: Transport
    seen: list[Message] = field(default_factory=list)
    more: asyncio.Event = field(default_factory=asyncio.Event)  # set on each one seen
    _seq: int = 0

    def announcement(self, interval: int, phase: Phase) -> bytes:
        """A signed announcement; each with the operator's next seq (so its own id)."""
        self._seq += 1
        body = AnnouncementBody(phase, STEP, 300_000, 80_000)
        return _signed(
            OPERATOR, body, market=self.topics.market_id, interval=interval, seq=self._seq
        )

    async def announce(self, wire: bytes) -> None:
        """Publish an announcement as the ledger does: retained."""
        await self.operator.publish(self.topics.announce, wire, qos=1, retain=True)

    async def forecast(self, interval: int) -> None:
        body = ForecastBody(interval, STEP, (500,), (0,), "zero", None)
        wire = _signed(FORECASTER, body, market=self.topics.market_id, interval=interval, seq=1)
        await self.operator.publish(self.topics.forecast(AGENT), wire, qos=1)

    async def until_seen(self, count: int) -> list[bytes]:
        """The agent's first ``count`` readings and orders, as the broker forwarded them."""
        async with asyncio.timeout(TIMEOUT_S):
            while len(self.seen) < count:
                self.more.clear()
                await self.more.wait()
        return [m.payload for m in self.seen[:count]]

    async def reconnect(self) -> None:
        """Wait until the agent's connection is lost and made again (resubscribed)."""
        await asyncio.wait_for(self.agent_transport.wait_disconnected(), TIMEOUT_S)
        await asyncio.wait_for(self.agent_transport.wait_connected(), TIMEOUT_S)


@contextlib.asynccontextmanager
async def scene(broker: BrokerAddress, tmp_path: Path) -> AsyncIterator[Scene]:
    topics = Topics(f"m{uuid.uuid4().hex[:8]}")
    config = AgentConfig(
        agent_id=AGENT,
        topics=topics,
        operator_key=OPERATOR.verifying,
        forecaster_key=FORECASTER.verifying,
        forecast_timeout_s=3600,
    )

    def client(name: str, address: BrokerAddress) -> TransportConfig:
        return TransportConfig(
            address=address,
            client_id=f"{name}-{topics.market_id}",
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
        )

    watcher = Transport(
        client("watch", broker),
        subscriptions=[(topics.reading(AGENT), 1), (topics.order(AGENT), 1)],
    )
    async with (
        MqttTap(broker) as tap,
        Transport(client("op", broker)) as operator,
        watcher,
    ):
        await asyncio.wait_for(
            asyncio.gather(operator.wait_connected(), watcher.wait_connected()), TIMEOUT_S
        )
        outbox = Outbox(tmp_path / "outbox.sqlite")
        transport = agent_transport(config, client("agent", tap.address))
        async with transport, DurablePublisher(outbox, transport, commit_interval_s=0) as pub:
            await asyncio.wait_for(transport.wait_connected(), TIMEOUT_S)
            agent = HouseholdAgent(
                config,
                key=SigningKey.generate(),
                transport=transport,
                meter=CountingMeter(),
                publisher=pub,
            )
            here = Scene(topics, agent, transport, pub, tap, operator)

            async def collect() -> None:
                async for message in watcher.messages():
                    here.seen.append(message)
                    here.more.set()

            tasks = [asyncio.create_task(agent.run()), asyncio.create_task(collect())]
            try:
                yield here
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await operator.publish(topics.announce, b"", qos=1, retain=True)
        outbox.close()


def _kinds(payloads: list[bytes]) -> list[tuple[str, int, int]]:
    """(kind, interval, seq) of each payload."""
    out = []
    for payload in payloads:
        message = decode_message(payload)
        kind = "reading" if isinstance(message.body, ReadingBody) else "order"
        assert isinstance(message.body, ReadingBody | OrderBody)
        out.append((kind, message.header.interval, message.header.seq))
    return out


async def test_a_live_repeated_open_resends_the_same_bytes_a_retained_copy_or_older_one_not(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    async with scene(mosquitto, tmp_path) as s:
        first_open = s.announcement(T, Phase.OPEN)
        await s.announce(first_open)
        (reading,) = await s.until_seen(1)
        await s.forecast(T)
        _, order = await s.until_seen(2)
        assert await s.publisher.flush(TIMEOUT_S)  # nothing in flight when the link drops

        # A reconnect: Mosquitto sends the retained open again, with RETAIN set.
        s.tap.cut()
        await s.reconnect()
        # An older interval's open, live.
        await s.operator.publish(s.topics.announce, s.announcement(T - STEP, Phase.OPEN), qos=1)
        # The very same open, live (the operator's publish retried, or anyone replaying
        # the genuine bytes): not a reopen.
        await s.operator.publish(s.topics.announce, first_open, qos=1)
        # A restarted ledger announces the interval open again, live, with a new id.
        await s.announce(s.announcement(T, Phase.OPEN))
        # Once cleared, an open of the interval changes nothing.
        await s.announce(s.announcement(T, Phase.CLEARED))
        await s.announce(s.announcement(T, Phase.OPEN))
        await s.announce(s.announcement(T + STEP, Phase.OPEN))

        wire = await s.until_seen(5)
        assert wire[:4] == [reading, order, reading, order]  # byte for byte, once
        assert _kinds(wire) == [
            ("reading", T, 1),
            ("order", T, 2),
            ("reading", T, 1),
            ("order", T, 2),
            ("reading", T + STEP, 5),  # seq 3 and 4 were taken by the copies' entries
        ]
        assert s.agent.resent == 2
        assert s.agent.diagnostics()["resent"] == 2
        assert s.agent.published == 3
        assert s.agent_transport.reconnects == 1


async def test_the_genuine_open_replayed_live_by_anyone_resends_nothing(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    """Anyone subscribed to the announcements holds the operator's genuine ``open`` and
    can publish it again, live, as often as it likes (no ACL needed to read it): each
    copy used to make the agent send its reading and order again, through its outbox
    (fsync, new seqs) and onto the ledger's ingest, with an INFO line each. Only an
    open with a new id (a genuine reopen) is resent, once; replays of either open,
    alternating, change nothing."""
    async with scene(mosquitto, tmp_path) as s:
        first_open = s.announcement(T, Phase.OPEN)
        await s.announce(first_open)
        (reading,) = await s.until_seen(1)
        await s.forecast(T)
        _, order = await s.until_seen(2)
        for _ in range(100):
            await s.operator.publish(s.topics.announce, first_open, qos=1)
        reopened = s.announcement(T, Phase.OPEN)  # a restarted ledger: a new id
        await s.operator.publish(s.topics.announce, reopened, qos=1)
        for _ in range(100):
            await s.operator.publish(s.topics.announce, first_open, qos=1)
            await s.operator.publish(s.topics.announce, reopened, qos=1)
        await s.announce(s.announcement(T + STEP, Phase.OPEN))

        wire = await s.until_seen(5)
        assert wire[:4] == [reading, order, reading, order]  # resent once, for the reopen
        assert _kinds(wire)[4][:2] == ("reading", T + STEP)
        assert s.agent.resent == 2
        assert s.agent.diagnostics()["resent"] == 2


async def test_an_open_before_the_order_was_sent_resends_the_reading_only(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    async with scene(mosquitto, tmp_path) as s:
        await s.announce(s.announcement(T, Phase.OPEN))
        (reading,) = await s.until_seen(1)
        await s.announce(s.announcement(T, Phase.OPEN))  # live, no forecast yet
        await s.forecast(T)  # the order goes out as usual, once
        await s.announce(s.announcement(T + STEP, Phase.OPEN))

        wire = await s.until_seen(4)
        assert wire[:2] == [reading, reading]
        assert _kinds(wire) == [
            ("reading", T, 1),
            ("reading", T, 1),
            ("order", T, 3),
            ("reading", T + STEP, 4),
        ]
        assert s.agent.resent == 1


async def test_an_open_announced_again_while_the_agent_was_away_is_resent_on_reconnect(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    async with scene(mosquitto, tmp_path) as s:
        await s.announce(s.announcement(T, Phase.OPEN))
        await s.until_seen(1)
        await s.forecast(T)
        reading, order = await s.until_seen(2)
        assert await s.publisher.flush(TIMEOUT_S)

        s.tap.refuse()
        s.tap.cut()
        await asyncio.wait_for(s.agent_transport.wait_disconnected(), TIMEOUT_S)
        # A new ledger reopens the interval while the agent cannot connect: the agent
        # gets only the retained copy, another announcement than the one it acted on.
        await s.announce(s.announcement(T, Phase.OPEN))
        await s.tap.listen()
        await asyncio.wait_for(s.agent_transport.wait_connected(), TIMEOUT_S)
        await s.announce(s.announcement(T + STEP, Phase.OPEN))

        wire = await s.until_seen(5)
        assert wire[:4] == [reading, order, reading, order]
        assert _kinds(wire)[4] == ("reading", T + STEP, 5)
        assert s.agent.resent == 2
