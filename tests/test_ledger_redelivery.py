"""The ledger's MQTT ingest acknowledges a redelivered message without a rejection."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from broker.keys import SigningKey
from broker.messages import RejectionBody, decode_message
from broker.topics import Topics
from broker.transport import BrokerAddress, Transport, TransportConfig
from ledger.clearing import GridTariff
from ledger.ledger import Ledger
from ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from ledger.store import LedgerStore
from tests.ledgerkit import T0, House

TIMEOUT_S = 10.0
TARIFF = GridTariff(retail_micro_per_kwh=300_000, feed_in_micro_per_kwh=80_000)


async def test_a_redelivered_reading_is_stored_once_and_not_rejected(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    market = f"m{uuid.uuid4().hex[:8]}"
    topics = Topics(market)
    house = House("h001")
    ledger = Ledger(
        LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}"),
        market_id=market,
        operator_key=SigningKey.generate(),
    )
    ledger.register({house.agent: house.key.verifying}, interval=T0)
    ledger.open_interval(T0, TARIFF)

    def config(name: str) -> TransportConfig:
        return TransportConfig(address=mosquitto, client_id=f"{name}-{market}")

    ingest = Transport(config("ledger"), subscriptions=ledger_subscriptions(topics))
    household = Transport(config("h001"), subscriptions=[(topics.error("h001"), 1)])
    service = LedgerService(
        ledger, OperatorConfig(topics), key=ledger.operator_key, transport=ingest
    )
    async with ingest, household:
        await asyncio.wait_for(
            asyncio.gather(ingest.wait_connected(), household.wait_connected()), TIMEOUT_S
        )
        running = asyncio.create_task(service.run_ingest())
        errors = household.messages()
        reading = house.reading(T0, market=market)
        second = house.reading(T0, market=market)  # a distinct second reading: an error
        for payload in (reading, reading, reading, second):
            await household.publish(topics.reading("h001"), payload, qos=1)
        # The only rejection is for the second reading: the redeliveries got none.
        message = await asyncio.wait_for(anext(errors), TIMEOUT_S)
        rejection = decode_message(message.payload).body
        assert isinstance(rejection, RejectionBody)
        assert rejection.ref_seq == 2
        assert rejection.reason.value == "duplicate"
        await ingest.aclose()
        await asyncio.wait_for(running, TIMEOUT_S)
    assert ledger.redeliveries == 2
    assert sum(ledger.rejections.values()) == 1
    outcome = ledger.close_interval()
    assert outcome.readings == 1  # stored once
    ledger.store.close()
