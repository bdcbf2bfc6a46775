"""Which households the gate stops waiting for: a household's signed ``offline`` counts
only until a message it sent after that status is accepted (issue 11, finding 3).

After a restart the ledger remembers no status seqs, so an old genuine ``offline``
left retained by an attacker is taken; the household is then back as soon as it sends.
A message that arrived before the ``offline`` (its last will after it sent) does not
bring it back. Batches of one and larger ones, where statuses are judged at once and
readings later, in their batch. The message source here is a
list: what is under test is the service's order of judgement, not MQTT (the real
broker path is tests/test_ledger_run_status.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from tests.ledgerkit import MARKET, T0, TARIFF, House, new_ledger
from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Presence, Side
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig
from wattmesh.ledger.service import LedgerService, OperatorConfig
from wattmesh.ledger.sigcheck import InlineVerifier

TOPICS = Topics(MARKET)
HOUSES = [House("h0"), House("h1")]


class _Batches:
    """A message source that hands over each list as one batch, then ends."""

    def __init__(self, *batches: list[Message]) -> None:
        self._batches = list(batches)
        self._rest: list[Message] = []

    async def messages(self) -> AsyncIterator[Message]:
        for batch in self._batches:
            first, *self._rest = batch
            yield first

    def buffered(self, limit: int) -> list[Message]:
        taken, self._rest = self._rest[:limit], self._rest[limit:]
        return taken


def _service(tmp_path: Path) -> LedgerService:
    ledger = new_ledger(f"sqlite:///{tmp_path / 'l.db'}", SigningKey.generate(), HOUSES)
    ledger.open_interval(T0, TARIFF)
    # Never connected: nothing here is published (no rejection is due).
    transport = Transport(TransportConfig(BrokerAddress("127.0.0.1", 9), "unused"))
    return LedgerService(
        ledger, OperatorConfig(TOPICS), key=ledger.operator_key, transport=transport
    )


def _status(house: House, state: Presence) -> Message:
    signer = StatusSigner(house.key, TOPICS, house.agent)
    return Message(TOPICS.status(house.agent), signer.sign(state), retain=False)


def _reading(house: House) -> Message:
    return Message(TOPICS.reading(house.agent), house.reading(T0), retain=False)


def _order(house: House) -> Message:
    return Message(TOPICS.order(house.agent), house.order(T0, Side.BUY, 10, 100_000), retain=False)


async def test_one_by_one_a_household_that_sends_after_its_offline_is_waited_for(
    tmp_path: Path,
) -> None:
    service = _service(tmp_path)
    h0, h1 = HOUSES
    one_by_one = [[_reading(h0)], [_status(h0, Presence.OFFLINE)], [_status(h1, Presence.OFFLINE)]]
    await service.run_ingest(source=_Batches(*one_by_one))
    assert service.offline == {"h0", "h1"}  # h0's reading came before its offline
    await service.run_ingest(source=_Batches([_order(h1)]))
    assert service.offline == {"h0"}  # h1 sends: the gate waits for its reading
    assert service.ledger.missing() - service.offline == {"h1"}


async def test_batched_only_what_arrived_after_the_offline_brings_a_household_back(
    tmp_path: Path,
) -> None:
    service = _service(tmp_path)
    h0, h1 = HOUSES
    first = [
        _reading(h0),
        _status(h0, Presence.OFFLINE),
        _status(h1, Presence.OFFLINE),
        _reading(h1),
    ]
    second = [_order(h0)]
    await service.run_ingest(InlineVerifier(), source=_Batches(first, second))
    assert service.ledger.open_orders == 1  # and both readings: only h1's order missing
    # h0's reading was before its offline, but its order after it; h1's reading after.
    assert service.offline == set()
    assert service.ledger.missing() == {"h1"}


async def test_batched_a_message_before_the_offline_keeps_the_household_offline(
    tmp_path: Path,
) -> None:
    service = _service(tmp_path)
    h0, _h1 = HOUSES
    batch = [_reading(h0), _order(h0), _status(h0, Presence.OFFLINE)]
    await service.run_ingest(InlineVerifier(), source=_Batches(batch))
    assert service.ledger.open_orders == 1 and "h0" not in service.ledger.missing()
    assert service.offline == {"h0"}
