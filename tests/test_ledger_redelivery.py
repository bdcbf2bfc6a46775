"""The ledger's MQTT ingest acknowledges a redelivered message without a rejection."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.ledgerkit import T0, TARIFF, TIMEOUT_S, House, new_ledger, running_ingest
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import RejectionBody, decode_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress


async def test_a_redelivered_reading_is_stored_once_and_not_rejected(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    market = f"m{uuid.uuid4().hex[:8]}"
    topics = Topics(market)
    house = House("h001")
    ledger = new_ledger(
        f"sqlite:///{tmp_path / 'ledger.db'}", SigningKey.generate(), [house], market=market
    )
    ledger.open_interval(T0, TARIFF)

    async with running_ingest(ledger, mosquitto, listener="h001") as run:
        reading = house.reading(T0, market=market)
        second = house.reading(T0, market=market)  # a distinct second reading: an error
        for payload in (reading, reading, reading, second):
            await run.household.publish(topics.reading("h001"), payload, qos=1)
        # The only rejection is for the second reading: the redeliveries got none.
        message = await asyncio.wait_for(anext(run.errors), TIMEOUT_S)
        rejection = decode_message(message.payload).body
        assert isinstance(rejection, RejectionBody)
        assert rejection.ref_seq == 2
        assert rejection.reason.value == "duplicate"
    assert ledger.redeliveries == 2
    assert sum(ledger.rejections.values()) == 1
    outcome = ledger.close_interval()
    assert outcome.readings == 1  # stored once
    ledger.store.close()
