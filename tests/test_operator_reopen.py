"""A ledger process that dies with an interval open leaves nothing of it in the log; the
next process opens it again. Its ``open`` must be a new message (another seq, another
id), even when the dead process died in the first interval it ever opened: agents tell
a reopening from the retained copy of the ``open`` they acted on by its message id."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.ledgerkit import T0, TARIFF, House, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import AnnouncementBody, Phase, SignedMessage, decode_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.service import LedgerService, OperatorConfig
from wattmesh.ledger.store import LedgerStore

TIMEOUT_S = 20.0


async def _announced_open(
    ledger: Ledger, topics: Topics, broker: BrokerAddress, listener: Transport
) -> SignedMessage:
    """Run the interval T0 until its ``open`` arrives at ``listener``; then the process
    'dies' (the run is cancelled before the gate closes)."""
    transport = Transport(TransportConfig(address=broker, client_id=f"op-{uuid.uuid4().hex}"))
    service = LedgerService(
        ledger,
        OperatorConfig(topics, gate_timeout_s=600),
        key=ledger.operator_key,
        transport=transport,
    )
    async with transport:
        await asyncio.wait_for(transport.wait_connected(), TIMEOUT_S)
        run = asyncio.create_task(service.run_interval(T0, TARIFF))
        inbox = listener.messages()
        try:
            message = decode_message((await asyncio.wait_for(anext(inbox), TIMEOUT_S)).payload)
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    return message


async def test_a_reopened_first_interval_is_announced_with_a_new_id(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    topics = Topics(f"reopen-{uuid.uuid4().hex[:8]}")
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    operator = SigningKey.generate()
    first = new_ledger(db, operator, [House("h1")], market=topics.market_id)
    listener = Transport(
        TransportConfig(address=mosquitto, client_id=f"listen-{uuid.uuid4().hex}"),
        subscriptions=[(topics.announce, 1)],
    )
    async with listener:
        await asyncio.wait_for(listener.wait_connected(), TIMEOUT_S)
        before = await _announced_open(first, topics, mosquitto, listener)
        first.store.close()
        restarted = Ledger(LedgerStore(db), market_id=topics.market_id, operator_key=operator)
        assert restarted.size == first.size  # nothing of the open interval was logged
        after = await _announced_open(restarted, topics, mosquitto, listener)
    for message in (before, after):
        assert message.header.interval == T0
        body = message.body_as(AnnouncementBody)
        assert body.phase is Phase.OPEN
        message.verify(operator.verifying)
    assert after.header.seq > before.header.seq
    assert after.message_id != before.message_id
