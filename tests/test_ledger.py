"""The ledger core on real SQLite and PostgreSQL: ingest, close, settle, restore, verify."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House, new_ledger, rejection_reason
from wattmesh.broker.errors import RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.ledger.ledger import Ledger, RedeliveredError
from wattmesh.ledger.settlement import FlagReason
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger


def _run_two_intervals(ledger: Ledger, houses: dict[str, House]) -> None:
    a, b, c = houses["h001"], houses["h002"], houses["h003"]
    ledger.open_interval(T0, TARIFF)
    for house in (a, b, c):
        ledger.ingest(house.reading(T0), topic_agent=house.agent)
    ledger.ingest(a.order(T0, Side.SELL, 500, 100_000))
    ledger.ingest(b.order(T0, Side.BUY, 300, 250_000))
    ledger.ingest(c.order(T0, Side.BUY, 400, 200_000))
    first = ledger.close_interval()
    assert first.clearing.volume_wh == 500
    assert first.clearing.price_micro_per_kwh == 150_000  # midpoint of 200k bid, 100k ask
    assert first.settlements == ()  # nothing to settle before the first interval ends
    # Delivery: a exported 450 (50 short), b imported 300, c imported 420.
    a.meter(export_wh=450, pv_wh=600)
    b.meter(import_wh=300)
    c.meter(import_wh=420)
    ledger.open_interval(T0 + STEP, TARIFF)
    for house in (a, b, c):
        ledger.ingest(house.reading(T0 + STEP))
        ledger.ingest(house.order(T0 + STEP, Side.BUY, 0, 250_000))
    second = ledger.close_interval()
    settled = {s.agent: s for s in second.settlements}
    assert set(settled) == {"h001", "h002", "h003"}
    # a sold 500 but exported only 450: buys the missing 50 Wh from the grid.
    assert (settled["h001"].sold_wh, settled["h001"].grid_buy_wh) == (500, 50)
    # c bought 200 of its 420 Wh on the market (b was served first), the rest from the grid.
    assert (settled["h003"].bought_wh, settled["h003"].grid_buy_wh) == (200, 220)
    assert sum(s.p2p_cost_micro for s in second.settlements) == 0


def test_interval_cycle_verifies_and_survives_restart(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    _run_two_intervals(ledger, houses)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    assert report.entries == ledger.size and report.root == ledger.root
    root, size = ledger.root, ledger.size
    ledger.store.close()

    restarted = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    assert (restarted.root, restarted.size) == (root, size)
    assert restarted.households == ("h001", "h002", "h003")
    a = houses["h001"]
    restarted.open_interval(T0 + 2 * STEP, TARIFF)
    assert rejection_reason(restarted, a.reading(T0 + 2 * STEP, seq=2)) is RejectReason.REPLAY
    restarted.ingest(a.reading(T0 + 2 * STEP))
    restarted.store.close()


def test_registering_the_same_keys_again_logs_nothing(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    size = ledger.size
    assert ledger.register({h.agent: h.key.verifying for h in houses.values()}, interval=T0) == 0
    assert ledger.size == size == 3
    ledger.store.close()


def _rejected(ledger: Ledger, payload: bytes, topic_agent: str | None = None) -> RejectReason:
    size = len(ledger.missing())
    reason = rejection_reason(ledger, payload, topic_agent=topic_agent)
    assert len(ledger.missing()) == size  # nothing was accepted
    return reason


def test_every_rejection_is_named_and_counted(
    operator: SigningKey, houses: dict[str, House], db_url: str
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    a = houses["h001"]
    stranger = House("h999")
    assert _rejected(ledger, a.order(T0, Side.BUY, 1, 1)) is RejectReason.LATE  # nothing open
    ledger.open_interval(T0, TARIFF)
    assert _rejected(ledger, b"{not json") is RejectReason.MALFORMED_JSON
    assert _rejected(ledger, b'{"signed": 1, "sig": ""}') is RejectReason.SCHEMA
    assert _rejected(ledger, stranger.order(T0, Side.BUY, 1, 1)) is RejectReason.UNKNOWN_KEY
    assert _rejected(ledger, a.order(T0, Side.BUY, 1, 1, market="other")) is (
        RejectReason.WRONG_MARKET
    )
    assert _rejected(ledger, a.order(T0, Side.BUY, 1, 1), topic_agent="h002") is (
        RejectReason.KEY_MISMATCH
    )
    forged = House("h002", key=a.key)  # h002's name, h001's key
    assert _rejected(ledger, forged.order(T0, Side.BUY, 1, 1)) is RejectReason.KEY_MISMATCH
    assert _rejected(ledger, a.order(T0 + STEP, Side.BUY, 1, 1)) is RejectReason.WRONG_INTERVAL
    assert _rejected(ledger, a.order(T0 - STEP, Side.BUY, 1, 1)) is RejectReason.LATE
    assert _rejected(ledger, a.order(T0, Side.BUY, 1, 1, expires=T0 - 1)) is RejectReason.EXPIRED
    accepted = a.order(T0, Side.BUY, 10, 200_000)
    ledger.ingest(accepted)
    assert _rejected(ledger, accepted) is RejectReason.DUPLICATE  # redelivery
    with pytest.raises(RedeliveredError):  # ... of its own kind: acknowledged, not rejected
        ledger.ingest(accepted)
    assert _rejected(ledger, a.order(T0, Side.BUY, 5, 1)) is RejectReason.DUPLICATE  # 2nd order
    assert _rejected(ledger, a.order(T0, Side.BUY, 5, 1, seq=1)) is RejectReason.REPLAY
    assert sum(ledger.rejections.values()) == 12  # redeliveries are not rejections
    assert ledger.rejections[RejectReason.DUPLICATE] == 1
    assert ledger.redeliveries == 2
    assert ledger.missing() == {"h001", "h002", "h003"}  # readings still missing
    ledger.store.close()


def test_registers_going_backwards_are_logged_flagged_and_not_settled(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    """The signed reading is evidence: it is logged, and the interval is flagged with its
    reason instead of settled (issue 4; before, the reading was refused)."""
    ledger = new_ledger(db_url, operator, houses.values())
    a = houses["h001"]
    a.meter(import_wh=1000)
    ledger.open_interval(T0, TARIFF)
    ledger.ingest(a.reading(T0))
    ledger.close_interval()
    a.import_wh -= 1
    ledger.open_interval(T0 + STEP, TARIFF)
    ledger.ingest(a.reading(T0 + STEP))
    outcome = ledger.close_interval()
    assert outcome.settlements == ()
    assert outcome.flagged == ("h001",)
    (flag,) = outcome.flags
    assert (flag.agent, flag.interval, flag.reason) == ("h001", T0, FlagReason.REGISTER_BACKWARDS)
    assert (flag.import_wh, flag.export_wh) == (-1, 0)
    kinds = [e.kind for e in ledger.store.iter_entries()]
    assert kinds.count("reading") == 2 and kinds.count("flag") == 1
    assert "settlement" not in kinds and "posting" not in kinds
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    ledger.store.close()


def test_the_database_refuses_a_second_entry_with_the_same_index(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    with ledger.store.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(
            sa.text(
                "INSERT INTO log_entry (idx, interval, kind, data, leaf_hash) "
                "VALUES (0, 0, 'key', :d, :h)"
            ),
            {"d": b"{}", "h": b"\0" * 32},
        )
    ledger.store.close()
