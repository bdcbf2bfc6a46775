"""Small builders for ledger tests: households with real keys and signed messages, a
ledger with them registered, rejections, and the ledger's MQTT ingest over a real broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, ReadingBody, Side, sign_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig
from wattmesh.ledger._append_only import trigger_names
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.store import APPEND_ONLY_TABLES, LedgerStore

MARKET = "test"
T0 = 1_750_000_500 - 1_750_000_500 % 900  # an interval start
STEP = 900
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)
TIMEOUT_S = 10.0


@dataclass
class House:
    agent: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0
    import_wh: int = 0
    export_wh: int = 0
    pv_wh: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def reading(self, interval: int, *, market: str = MARKET, seq: int | None = None) -> bytes:
        body = ReadingBody(interval, self.import_wh, self.export_wh, self.pv_wh, 0)
        return sign_message(
            self.key,
            body,
            market=market,
            interval=interval,
            agent=self.agent,
            seq=self.next_seq() if seq is None else seq,
            expires=interval + 7 * 86_400,
        ).to_wire()

    def order(
        self,
        interval: int,
        side: Side,
        quantity_wh: int,
        price: int,
        *,
        market: str = MARKET,
        expires: int | None = None,
        seq: int | None = None,
    ) -> bytes:
        return sign_message(
            self.key,
            OrderBody(side, quantity_wh, price),
            market=market,
            interval=interval,
            agent=self.agent,
            seq=self.next_seq() if seq is None else seq,
            expires=interval + STEP if expires is None else expires,
        ).to_wire()

    def meter(self, *, import_wh: int = 0, export_wh: int = 0, pv_wh: int = 0) -> None:
        """Advance the registers by the given energy."""
        self.import_wh += import_wh
        self.export_wh += export_wh
        self.pv_wh += pv_wh


def drop_append_only_triggers(engine: Engine) -> None:
    """What an attacker with database admin rights does before rewriting log rows."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        for table in APPEND_ONLY_TABLES:
            for name in trigger_names(table):
                on = f' ON "{table}"' if postgres else ""
                conn.execute(sa.text(f'DROP TRIGGER IF EXISTS "{name}"{on}'))


def households(*agents: str) -> dict[str, House]:
    """A fresh :class:`House` (own new key) for each agent id, by id."""
    return {agent: House(agent) for agent in agents}


def new_ledger(
    db_url: str,
    operator: SigningKey,
    houses: Iterable[House],
    *,
    market: str = MARKET,
    mechanism: Mechanism | None = None,
) -> Ledger:
    """A ledger on ``db_url`` with the current key of each of ``houses`` registered at T0
    (``mechanism``: the ledger's default, uniform pricing, if None)."""
    ledger = Ledger(
        LedgerStore(db_url), market_id=market, operator_key=operator, mechanism=mechanism
    )
    ledger.register({h.agent: h.key.verifying for h in houses}, interval=T0)
    return ledger


def crossing_interval(
    db_url: str, operator: SigningKey, mechanism: Mechanism | None
) -> tuple[Ledger, dict[str, House]]:
    """T0 open with a book that crosses: a sells 500 Wh at 0.10, b buys 300 at 0.25, c
    buys 400 at 0.20 (and each household's reading); the ledger and its houses."""
    houses = households("a", "b", "c")
    ledger = new_ledger(db_url, operator, houses.values(), mechanism=mechanism)
    ledger.open_interval(T0, TARIFF)
    for house in houses.values():
        ledger.ingest(house.reading(T0))
    ledger.ingest(houses["a"].order(T0, Side.SELL, 500, 100_000))
    ledger.ingest(houses["b"].order(T0, Side.BUY, 300, 250_000))
    ledger.ingest(houses["c"].order(T0, Side.BUY, 400, 200_000))
    return ledger, houses


def rejection_reason(
    ledger: Ledger, payload: bytes, *, topic_agent: str | None = None
) -> RejectReason:
    """The reason ``ledger`` names when it refuses ``payload`` (fails if it accepts it)."""
    with pytest.raises(MessageError) as info:
        ledger.ingest(payload, topic_agent=topic_agent)
    return info.value.reason


@dataclass(frozen=True)
class IngestRun:
    """The ledger's MQTT ingest, running; ``errors`` is what ``household`` hears."""

    service: LedgerService
    household: Transport
    errors: AsyncIterator[Message]


@contextlib.asynccontextmanager
async def running_ingest(
    ledger: Ledger, broker: BrokerAddress, *, listener: str
) -> AsyncIterator[IngestRun]:
    """Run ``ledger``'s MQTT ingest (``LedgerService.run_ingest``) over ``broker``, with
    a connected transport for household ``listener`` subscribed to its error topic.

    Both transports are connected before the ingest starts. On leaving, the ingest
    transport is closed and the ingest must end within ``TIMEOUT_S``.
    """
    market = ledger.market_id
    topics = Topics(market)

    def config(name: str) -> TransportConfig:
        return TransportConfig(address=broker, client_id=f"{name}-{market}")

    ingest = Transport(config("ledger"), subscriptions=ledger_subscriptions(topics))
    household = Transport(config(listener), subscriptions=[(topics.error(listener), 1)])
    service = LedgerService(
        ledger, OperatorConfig(topics), key=ledger.operator_key, transport=ingest
    )
    async with ingest, household:
        await asyncio.wait_for(
            asyncio.gather(ingest.wait_connected(), household.wait_connected()), TIMEOUT_S
        )
        running = asyncio.create_task(service.run_ingest())
        try:
            yield IngestRun(service=service, household=household, errors=household.messages())
        except BaseException:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            raise
        await ingest.aclose()
        await asyncio.wait_for(running, TIMEOUT_S)
