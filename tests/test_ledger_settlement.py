"""Settlement in the ledger on real SQLite and PostgreSQL: postings, estimates for missing
readings, backfilled readings and their corrections, across a restart."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House, new_ledger
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.ledger.accounts import GRID_ACCOUNT, MARKET_ACCOUNT, Posting, household_account
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger


def _logged(ledger: Ledger, kind: str) -> list[dict[str, object]]:
    return [json.loads(e.data) for e in ledger.store.iter_entries() if e.kind == kind]


def _balances(ledger: Ledger) -> Counter[str]:
    totals: Counter[str] = Counter()
    for obj in _logged(ledger, "posting"):
        for line in Posting.from_json(obj).lines:
            totals[line.account] += line.amount_micro
    return totals


def test_missing_reading_is_estimated_then_corrected_by_the_backfill(db_url: str) -> None:
    operator = SigningKey.generate()
    a, b = House("h001"), House("h002")
    ledger = new_ledger(db_url, operator, [a, b])
    # Interval 0: a sells 500 Wh to b at the midpoint of 250k and 100k.
    ledger.open_interval(T0, TARIFF)
    for house in (a, b):
        ledger.ingest(house.reading(T0))
    ledger.ingest(a.order(T0, Side.SELL, 500, 100_000))
    ledger.ingest(b.order(T0, Side.BUY, 500, 250_000))
    assert ledger.close_interval().clearing.price_micro_per_kwh == 175_000
    # Delivery: a exports 800 Wh, b imports 450. b's reading closing interval 0 is signed
    # (its meter took it) but does not reach the ledger in time.
    a.meter(export_wh=800)
    b.meter(import_wh=450)
    held = b.reading(T0 + STEP)
    ledger.open_interval(T0 + STEP, TARIFF)
    ledger.ingest(a.reading(T0 + STEP))
    for house in (a, b):
        ledger.ingest(house.order(T0 + STEP, Side.BUY, 0, 250_000))
    second = ledger.close_interval()
    by_agent = {r.after.agent: r for r in second.revisions}
    assert by_agent["h001"].basis.value == "metered"
    estimate = by_agent["h002"]
    # No metered interval yet: b's traded position (bought 500) stands in for its meter.
    assert (estimate.basis.value, estimate.after.import_wh, estimate.after.grid_cost_micro) == (
        "estimated",
        500,
        0,
    )
    assert [s["basis"] for s in _logged(ledger, "settlement")] == ["metered", "estimated"]
    assert {p.cause.value for p in second.postings} == {"p2p_trade", "grid_sale"}

    # The ledger restarts before the backfill arrives.
    root, size = ledger.root, ledger.size
    ledger.store.close()
    ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    assert (ledger.root, ledger.size) == (root, size)

    b.meter(import_wh=100)
    ledger.open_interval(T0 + 2 * STEP, TARIFF)
    for house in (a, b):
        ledger.ingest(house.reading(T0 + 2 * STEP))
    # The backfill: an earlier seq and a closed interval, accepted because it fills a gap.
    ledger.ingest(held, topic_agent="h002")
    with pytest.raises(MessageError) as dup:
        ledger.ingest(held)
    assert dup.value.reason is RejectReason.DUPLICATE
    with pytest.raises(MessageError) as late:
        ledger.ingest(a.reading(T0 + STEP, seq=a.seq + 1))  # a has no gap there
    assert late.value.reason is RejectReason.LATE
    for house in (a, b):
        ledger.ingest(house.order(T0 + 2 * STEP, Side.BUY, 0, 250_000))
    third = ledger.close_interval()
    assert third.late_readings == 1
    revised = {(r.after.agent, r.after.interval, r.before is not None): r for r in third.revisions}
    correction = revised[("h002", T0, True)]
    assert correction.before == estimate.after  # the difference to what was settled
    assert (correction.basis.value, correction.after.import_wh) == ("metered", 450)
    assert correction.after.grid_sell_wh == 50  # bought 500, used 450
    assert [p.cause.value for p in third.postings if p.interval == T0] == ["correction"]
    # b's interval 1 settles metered from the backfilled reading: 100 Wh from the grid.
    assert revised[("h002", T0 + STEP, False)].after.grid_buy_wh == 100

    # Nothing was rewritten: the estimate is still in the log, next to its correction.
    settlements = _logged(ledger, "settlement")
    assert any(s["agent"] == "h002" and s["basis"] == "estimated" for s in settlements)
    (logged_correction,) = _logged(ledger, "correction")
    assert logged_correction["delta_grid_cost_micro"] == -4_000  # 50 Wh at feed-in
    totals = _balances(ledger)
    assert sum(totals.values()) == 0
    assert totals[MARKET_ACCOUNT] == 0  # both sides of the trade settled
    # b: 500 Wh at 0.175, -50 Wh at feed-in, 100 Wh at retail.
    assert totals[household_account("h002")] == 87_500 - 4_000 + 30_000
    # a: -500 Wh at 0.175, 300 Wh over-delivered at feed-in.
    assert totals[household_account("h001")] == -87_500 - 24_000
    assert totals[GRID_ACCOUNT] == 4_000 - 30_000 + 24_000
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    ledger.store.close()


def test_backfill_replay_with_another_message_is_refused(db_url: str) -> None:
    operator = SigningKey.generate()
    a = House("h001")
    ledger = new_ledger(db_url, operator, [a])
    ledger.open_interval(T0, TARIFF)
    ledger.ingest(a.reading(T0))
    ledger.close_interval()
    held = a.reading(T0 + STEP)  # seq 2, never delivered
    ledger.open_interval(T0 + STEP, TARIFF)
    ledger.ingest(a.order(T0 + STEP, Side.BUY, 0, 1))  # seq 3
    ledger.close_interval()
    ledger.open_interval(T0 + 2 * STEP, TARIFF)
    a.meter(import_wh=1)
    forged = a.reading(T0 + STEP, seq=3)  # an accepted seq with other content
    with pytest.raises(MessageError) as replay:
        ledger.ingest(forged)
    assert replay.value.reason is RejectReason.REPLAY
    ledger.ingest(held)
    assert ledger.close_interval().late_readings == 1
    ledger.store.close()


def test_verify_refuses_a_posting_that_does_not_balance(db_url: str) -> None:
    operator = SigningKey.generate()
    ledger = new_ledger(db_url, operator, [House("h001")])
    bad = {
        "kind": "posting",
        "interval": T0,
        "agent": "h001",
        "cause": "grid_purchase",
        "lines": [
            {"account": "household/h001", "amount_micro": 100},
            {"account": "grid", "amount_micro": -99},
        ],
    }
    data = json.dumps(bad, sort_keys=True, separators=(",", ":")).encode()
    ledger._append([NewEntry("posting", T0, "h001", None, data)], T0)  # a signed bad entry
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok
    assert (report.first_bad_entry, report.problem) == (
        1,
        "posting does not balance: posting lines sum to 1, not 0",
    )
    ledger.store.close()


def _eventful_run(
    db_url: str, operator: SigningKey, keys: dict[str, SigningKey], *, restart_each: bool
) -> tuple[bytes, int, Counter[str]]:
    """Eight intervals with missing readings, backfills, a gap that is never backfilled
    and a register that goes backwards; optionally restarting the ledger every interval."""
    houses = {agent: House(agent, key=key) for agent, key in keys.items()}
    a, b, c = houses["h001"], houses["h002"], houses["h003"]
    ledger = new_ledger(db_url, operator, houses.values())
    held: list[bytes] = []
    for k in range(8):
        t = T0 + k * STEP
        if restart_each and k:
            ledger.store.close()
            ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
        a.meter(import_wh=100 + 10 * k)
        b.meter(export_wh=300 + k)
        c.meter(import_wh=50)
        if k == 5:
            c.import_wh -= 60  # backwards: c's interval 4 is flagged
        ledger.open_interval(t, TARIFF)
        for house in (a, b, c):
            message = house.reading(t)
            if house is b and k in (2, 3):
                held.append(message)  # b misses two readings, backfilled in interval 5
            elif not (house is a and k in (4, 5)):  # a misses two, never backfilled
                ledger.ingest(message)
        if k == 5:
            for message in held:
                ledger.ingest(message)
        ledger.ingest(a.order(t, Side.BUY, 200, 250_000))
        ledger.ingest(b.order(t, Side.SELL, 250, 100_000))
        ledger.ingest(c.order(t, Side.BUY, 0, 100_000))
        ledger.close_interval()
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    result = ledger.root, ledger.size, _balances(ledger)
    kinds = Counter(e.kind for e in ledger.store.iter_entries())
    assert kinds["flag"] == 1 and kinds["correction"] >= 2
    ledger.store.close()
    return result


def test_restarting_every_interval_changes_nothing(db_url: str, tmp_path: Path) -> None:
    operator = SigningKey.generate()
    keys = {agent: SigningKey.generate() for agent in ("h001", "h002", "h003")}
    restarted = _eventful_run(db_url, operator, keys, restart_each=True)
    straight = _eventful_run(
        f"sqlite:///{tmp_path / 'straight.db'}", operator, keys, restart_each=False
    )
    assert restarted == straight
    totals = straight[2]
    assert sum(totals.values()) == 0
    assert totals[MARKET_ACCOUNT] == 0  # every trade's two sides were settled
    # a's six metered-or-estimated intervals 0..6 at 200 Wh bought each, b's sales likewise.
    assert totals[household_account("h001")] > 0 > totals[household_account("h002")]


@pytest.mark.parametrize(
    ("kind", "obj", "problem"),
    [
        ("settlement", {"agent": "h001", "interval": T0}, "settlement entry is malformed"),
        ("flag", {"agent": "h001", "interval": T0, "reason": "cosmic_rays"}, "flag entry is"),
        (
            "posting",
            {"agent": "h002", "interval": T0, "cause": "p2p_trade", "lines": []},
            "posting does not balance",
        ),
    ],
)
def test_verify_refuses_malformed_settlement_entries(
    db_url: str, kind: str, obj: dict[str, object], problem: str
) -> None:
    ledger = new_ledger(db_url, SigningKey.generate(), [House("h001")])
    data = json.dumps({"kind": kind, **obj}, sort_keys=True).encode()
    agent = str(obj["agent"])
    ledger._append([NewEntry(kind, T0, agent, None, data)], T0)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok and report.first_bad_entry == 1
    assert report.problem is not None and report.problem.startswith(problem), report.problem
    ledger.store.close()
