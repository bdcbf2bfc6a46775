"""A household's message that arrives after one with a higher seq (docs/protocol.md,
"Replay"): admitted when it is for the open interval and fills a slot still empty, so
a reading a dying ledger acknowledged and never kept, sent again behind the order the
broker had queued, is not lost. What the replay rule guards stays refused: a seq
accepted or logged with other content, a message of an older interval that fills no
gap, a second message for a slot taken; the log verifies and a restart agrees.
"""

from __future__ import annotations

import json

import pytest

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House, households, new_ledger
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side, decode_message
from wattmesh.ledger._admission import Admission, OpenInterval, RedeliveredError
from wattmesh.ledger.keyring import KeyRing
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.metering import MeteringConfig
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

T1 = T0 + STEP


def _admission(
    houses: dict[str, House],
    *,
    logged: dict[tuple[str, int], str] | None = None,
    awaits: frozenset[tuple[str, int]] = frozenset(),
) -> Admission:
    """An admission for ``houses``; ``logged``: (agent, seq) -> id of logged messages;
    ``awaits``: the (agent, interval) gaps an estimate stands in for."""
    ring = KeyRing()
    entries = ring.plan({a: h.key.verifying for a, h in houses.items()}, {}, interval=T0)
    for at, entry in enumerate(entries):
        ring.apply(entry.kind, entry.agent, json.loads(entry.data), at=at)
    ids = logged or {}
    return Admission(
        MARKET,
        ring,
        lambda agent, interval: (agent, interval) in awaits,
        lambda agent, seq: ids.get((agent, seq)),
        MeteringConfig().limit_w,
    )


def _admit(admission: Admission, wire: bytes, op: OpenInterval | None) -> None:
    admission.admit(decode_message(wire), None, op, verified=None)


def _refused(admission: Admission, wire: bytes, op: OpenInterval | None) -> RejectReason:
    with pytest.raises(MessageError) as info:
        _admit(admission, wire, op)
    assert not isinstance(info.value, RedeliveredError)
    return info.value.reason


def _redelivered(admission: Admission, wire: bytes, op: OpenInterval | None) -> None:
    with pytest.raises(RedeliveredError):
        _admit(admission, wire, op)


@pytest.mark.parametrize("first", ["order", "reading"])
def test_the_open_intervals_message_with_the_lower_seq_is_admitted_after_the_higher(
    first: str,
) -> None:
    """Reading seq 1 and order seq 2 (or the other way round) arriving higher seq
    first: both admitted, the last seq stays the higher one, each again is a redelivery."""
    a = House("h001")
    admission = _admission({"h001": a})
    op = OpenInterval(T0, TARIFF, trading=True, interval_s=STEP)
    low, high = (
        (a.reading(T0, seq=1), a.order(T0, Side.BUY, 100, 200_000, seq=2))
        if first == "order"
        else (a.order(T0, Side.BUY, 100, 200_000, seq=1), a.reading(T0, seq=2))
    )
    _admit(admission, high, op)
    _admit(admission, low, op)
    assert set(op.readings) == set(op.orders) == {"h001"}
    assert admission.last_seqs == {"h001": 2}
    assert sum(admission.rejections.values()) == 0
    _redelivered(admission, low, op)
    _redelivered(admission, high, op)
    assert admission.redeliveries == 2


def test_a_lower_seq_for_a_slot_taken_or_accepted_with_other_content_is_a_replay() -> None:
    a = House("h001")
    admission = _admission({"h001": a})
    op = OpenInterval(T0, TARIFF, trading=True, interval_s=STEP)
    _admit(admission, a.reading(T0, seq=5), op)
    _admit(admission, a.order(T0, Side.BUY, 100, 200_000, seq=7), op)
    # A reading never accepted, seq below the last, for the open interval whose reading
    # slot is taken: a second reading, refused as the replay rule always did.
    assert _refused(admission, a.reading(T0, seq=3), op) is RejectReason.REPLAY
    # The very seq of the accepted reading with other content (here: an order).
    assert _refused(admission, a.order(T0, Side.SELL, 1, 1, seq=5), op) is RejectReason.REPLAY
    # A second different reading with a higher seq: a duplicate, as before.
    assert _refused(admission, a.reading(T0, seq=9), op) is RejectReason.DUPLICATE
    assert admission.rejections == {RejectReason.REPLAY: 2, RejectReason.DUPLICATE: 1}
    assert admission.last_seqs == {"h001": 7}


def test_an_older_intervals_message_is_still_a_replay_unless_it_fills_a_gap() -> None:
    """Interval T0 closed, T1 open. A reading and an order signed for T0 that the ledger
    never accepted, with seqs below the last: refused as replays; only the reading of
    a T0 whose reading an estimate stands in for is a backfill."""
    a, b = House("h001"), House("h002")
    admission = _admission({"h001": a, "h002": b}, awaits=frozenset({("h002", T0)}))
    old = {h.agent: (h.reading(T0, seq=1), h.order(T0, Side.BUY, 10, 1, seq=2)) for h in (a, b)}
    op = OpenInterval(T1, TARIFF, trading=True, interval_s=STEP)
    for house in (a, b):
        _admit(admission, house.reading(T1, seq=3), op)
    admission.interval_closed()
    assert _refused(admission, old["h001"][0], op) is RejectReason.REPLAY
    assert _refused(admission, old["h001"][1], op) is RejectReason.REPLAY
    assert _refused(admission, old["h002"][1], op) is RejectReason.REPLAY
    _admit(admission, old["h002"][0], op)  # the backfill
    assert set(op.late) == {("h002", T0)}
    # Without an interval open nothing is judged a slot to fill.
    assert _refused(admission, a.order(T1, Side.BUY, 10, 1, seq=2), None) is RejectReason.REPLAY


def test_a_seq_already_logged_is_refused_or_a_redelivery() -> None:
    """(h001, 1) is in the log (an older interval, no longer in memory): a message with
    that seq for the open interval's empty slot is a replay, the logged one a redelivery."""
    a = House("h001")
    logged_wire = a.reading(T0, seq=1)
    logged = {("h001", 1): decode_message(logged_wire).message_id}
    admission = _admission({"h001": a}, logged=logged)
    admission.restore_seq("h001", 2)
    op = OpenInterval(T1, TARIFF, trading=True, interval_s=STEP)
    assert _refused(admission, a.reading(T1, seq=1), op) is RejectReason.REPLAY
    assert _refused(admission, a.order(T1, Side.BUY, 1, 1, seq=1), op) is RejectReason.REPLAY
    _redelivered(admission, logged_wire, op)
    assert not op.readings and not op.orders
    _admit(admission, a.reading(T1, seq=3), op)  # a fresh seq is fine


def test_the_timing_and_slot_checks_still_judge_a_lower_seq_for_the_open_interval() -> None:
    a = House("h001")
    admission = _admission({"h001": a})
    op = OpenInterval(T1, TARIFF, trading=False, interval_s=STEP)  # the closing round
    _admit(admission, a.reading(T1, seq=5), op)
    expired = a.order(T1, Side.BUY, 1, 1, seq=2, expires=T0)
    assert _refused(admission, expired, op) is RejectReason.EXPIRED
    closed = a.order(T1, Side.BUY, 1, 1, seq=3)
    assert _refused(admission, closed, op) is RejectReason.WRONG_INTERVAL
    trading = OpenInterval(T1, TARIFF, trading=True, interval_s=STEP)
    beyond = a.order(T1, Side.BUY, 10_000, 1, seq=4)  # 17,250 W carry 4,313 Wh
    assert _refused(admission, beyond, trading) is RejectReason.BEYOND_CONNECTION
    assert admission.last_seqs == {"h001": 5}


def _restart(db_url: str, operator: SigningKey) -> Ledger:
    return Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "batch"])
def test_the_pair_out_of_order_is_logged_the_log_verifies_and_a_restart_agrees(
    db_url: str, operator: SigningKey, batched: bool
) -> None:
    """h001's order (seq 2) before its reading (seq 1), h002's reading (seq 2) before its
    order (seq 1): all logged in T0 (readings before orders, so h002's seqs fall in log
    order), ``ledger verify`` passes, and a ledger restarted from the snapshot has the
    higher seqs, takes the copies as redeliveries and another seq-1 message as a replay."""
    houses = households("h001", "h002")
    a, b = houses["h001"], houses["h002"]
    a_reading, a_order = a.reading(T0, seq=1), a.order(T0, Side.BUY, 100, 250_000, seq=2)
    b_order, b_reading = b.order(T0, Side.SELL, 100, 100_000, seq=1), b.reading(T0, seq=2)
    arrival = [(a_order, "h001"), (b_reading, "h002"), (a_reading, "h001"), (b_order, "h002")]
    ledger = new_ledger(db_url, operator, houses.values())
    try:
        ledger.open_interval(T0, TARIFF, interval_s=STEP)
        if batched:
            results = ledger.ingest_many(arrival)
            assert [type(r).__name__ for r in results] == ["SignedMessage"] * 4, results
        else:
            for wire, agent in arrival:
                ledger.ingest(wire, topic_agent=agent)
        assert ledger.missing() == set() and sum(ledger.rejections.values()) == 0
        ledger.flush_intake()
        outcome = ledger.close_interval()
        assert (outcome.readings, outcome.orders, outcome.clearing.volume_wh) == (2, 2, 100)
        logged = [(e.agent, e.kind, e.agent_seq) for e in outcome.entries if e.agent_seq]
        assert logged == [
            ("h001", "reading", 1),
            ("h002", "reading", 2),
            ("h001", "order", 2),
            ("h002", "order", 1),
        ]
        report = verify_ledger(ledger.store, ledger.operator_key.verifying)
        assert report.ok, report.problem
    finally:
        ledger.store.close()

    restarted = _restart(db_url, operator)
    try:
        assert dict(restarted.state().last_seqs) == {"h001": 2, "h002": 2}
        restarted.open_interval(T1, TARIFF, interval_s=STEP)
        for wire, agent in arrival:
            with pytest.raises(RedeliveredError):
                restarted.ingest(wire, topic_agent=agent)
        with pytest.raises(MessageError) as info:
            restarted.ingest(a.reading(T1, seq=1))
        assert info.value.reason is RejectReason.REPLAY
        restarted.ingest(a.reading(T1, seq=3))
    finally:
        restarted.store.close()
