"""``Ledger.ingest_many`` (signatures checked first, in a batch, possibly on worker
processes) decides and logs exactly what ``Ledger.ingest`` one by one does."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ledgerkit import STEP, T0, TARIFF, House, new_ledger
from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side, SignedMessage
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.sigcheck import PoolVerifier, SignatureVerifier

OPERATOR = SigningKey.generate()
HOUSES = [House(f"h{i}") for i in range(4)]
STRANGER = House("h9")  # never registered


def _bad_signature(wire: bytes) -> bytes:
    """The same message with one signature character changed (still valid base64)."""
    at = wire.index(b'"sig":"') + 12
    return wire[:at] + (b"A" if wire[at : at + 1] != b"A" else b"B") + wire[at + 1 :]


def _candidates() -> list[tuple[bytes, str | None]]:
    """Payloads of every kind of decision, in an order where earlier ones matter."""
    out: list[tuple[bytes, str | None]] = []
    for n, house in enumerate(HOUSES):
        house.seq = 0
        order = house.order(T0, Side.BUY if n % 2 else Side.SELL, 100 + n, 100_000 + n)
        out += [
            (order, house.agent),
            (order, house.agent),  # a redelivery
            (house.reading(T0), house.agent),
            (house.order(T0, Side.BUY, 50, 90_000), house.agent),  # a second order
            (house.order(T0, Side.BUY, 50, 90_000, seq=1), house.agent),  # replayed seq
            (_bad_signature(house.order(T0, Side.SELL, 70, 90_000)), house.agent),
            (house.order(T0, Side.BUY, 10, 1, market="other"), house.agent),
            (house.order(T0 + STEP, Side.BUY, 10, 1), house.agent),  # not open yet
            (house.order(T0, Side.BUY, 10, 1), "h0" if n else "h1"),  # another's topic
        ]
    out += [(STRANGER.order(T0, Side.BUY, 10, 1), STRANGER.agent), (b"{not json", None)]
    return out


CANDIDATES = _candidates()


def _ledger(url: str) -> Ledger:
    ledger = new_ledger(url, OPERATOR, HOUSES)
    ledger.open_interval(T0, TARIFF)
    return ledger


def _outcome(result: SignedMessage | MessageError) -> tuple[str, str]:
    if isinstance(result, MessageError):
        return type(result).__name__, result.reason.value
    return "accepted", result.message_id


def _one_by_one(ledger: Ledger, items: Sequence[tuple[bytes, str | None]]) -> list[tuple[str, str]]:
    outcomes = []
    for payload, agent in items:
        try:
            outcomes.append(_outcome(ledger.ingest(payload, topic_agent=agent)))
        except MessageError as exc:
            outcomes.append(_outcome(exc))
    return outcomes


def _log(ledger: Ledger) -> list[tuple[str, bytes]]:
    return [(e.kind, e.data) for e in ledger.store.iter_entries()]


def _compare(
    url_a: str,
    url_b: str,
    items: Sequence[tuple[bytes, str | None]],
    verifier: SignatureVerifier | None,
    *,
    chunk: int = 1000,
) -> None:
    single, batch = _ledger(url_a), _ledger(url_b)
    try:
        expected = _one_by_one(single, items)
        got = [_outcome(r) for r in batch.ingest_many(items, verifier, chunk=chunk)]
        assert got == expected
        assert batch.rejections == single.rejections
        assert batch.redeliveries == single.redeliveries
        a, b = single.close_interval(), batch.close_interval()
        assert (a.orders, a.readings) == (b.orders, b.readings)
        assert _log(batch) == _log(single)
        assert batch.root == single.root
    finally:
        single.store.close()
        batch.store.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[PoolVerifier]:
    verifier = PoolVerifier(2, min_batch=1)
    try:
        yield verifier
    finally:
        verifier.close()


def test_mixed_batch_on_workers_matches_one_by_one(
    db_url: str, tmp_path: Path, pool: PoolVerifier
) -> None:
    probe = _ledger(f"sqlite:///{tmp_path / 'probe.db'}")
    outcomes = {_outcome(r)[1] for r in probe.ingest_many(CANDIDATES)}
    probe.store.close()
    # The batch covers acceptance and the rejection reasons it is meant to.
    assert {"bad_signature", "duplicate", "replay", "unknown_key", "wrong_market"} <= outcomes
    # In chunks of 7: later chunks are decoded while the workers check earlier ones.
    _compare(f"sqlite:///{tmp_path / 'single.db'}", db_url, CANDIDATES, pool, chunk=7)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CANDIDATES), max_size=30), st.integers(1, 40))
def test_any_batch_matches_one_by_one(items: list[tuple[bytes, str | None]], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        a, b = f"sqlite:///{Path(tmp) / 'a.db'}", f"sqlite:///{Path(tmp) / 'b.db'}"
        _compare(a, b, items, None, chunk=chunk)
