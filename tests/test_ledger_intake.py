"""The intake: what the open interval accepted, kept in the store as it is accepted, so
that a ledger restarted mid-interval admits it again when it reopens the interval; the
close logs it and deletes it in one transaction. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.ledger.ledger import Ledger, RedeliveredError
from wattmesh.ledger.sigcheck import InlineVerifier
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

AGENTS = ("h1", "h2", "h3", "h4")


def _messages(houses: dict[str, House], interval: int) -> list[tuple[bytes, str]]:
    out: list[tuple[bytes, str]] = []
    for n, (agent, house) in enumerate(sorted(houses.items())):
        house.meter(import_wh=100 * (n + 1))
        side = Side.BUY if n % 2 else Side.SELL
        out.append((house.reading(interval), agent))
        out.append((house.order(interval, side, 200 + 10 * n, 150_000 + 1000 * n), agent))
    return out


def _ledger(db_url: str, operator: SigningKey, houses: dict[str, House]) -> Ledger:
    ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    if ledger.size == 0:
        ledger.register({a: h.key.verifying for a, h in houses.items()}, interval=T0)
    return ledger


def _intake_rows(ledger: Ledger, interval: int) -> int:
    return len(ledger.store.intake(interval))


def test_a_restart_mid_interval_admits_the_kept_messages_again(db_url: str, tmp_path: Path) -> None:
    operator = SigningKey.generate()
    houses = {a: House(a) for a in AGENTS}
    first = _ledger(db_url, operator, houses)
    first.open_interval(T0, TARIFF)
    early = _messages(houses, T0)
    for payload, agent in early[:3]:  # one by one: a reading, an order, a reading
        first.ingest(payload, topic_agent=agent)
    assert first.flush_intake() == 3
    first.ingest_many(early[3:6], InlineVerifier())  # a batch
    assert first.flush_intake() == 3
    payload, agent = early[6]
    first.ingest(payload, topic_agent=agent)  # accepted, never kept
    assert _intake_rows(first, T0) == 6
    first.store.close()  # the process dies here, before the gate closes

    restarted = _ledger(db_url, operator, houses)
    assert restarted.size == first.size  # nothing of the interval was logged
    restarted.open_interval(T0, TARIFF)
    assert restarted.open_orders == 3
    assert restarted.missing() == {"h4"}  # its reading was never kept, its order never sent
    # What agents send when the interval is reopened: copies of the kept messages are
    # redeliveries; the one the dead process never kept is admitted now.
    results = restarted.ingest_many(early, InlineVerifier())
    assert [isinstance(r, RedeliveredError) for r in results] == [True] * 6 + [False] * 2
    assert restarted.flush_intake() == 2
    assert sum(restarted.rejections.values()) == 0
    outcome = restarted.close_interval()
    assert (outcome.readings, outcome.orders) == (4, 4)
    assert _intake_rows(restarted, T0) == 0  # logged, so deleted with the log's append
    report = verify_ledger(restarted.store, restarted.operator_key.verifying)
    assert report.ok, report.problem

    # The same messages into a ledger that never stopped give the same log.
    calm = f"sqlite:///{tmp_path / 'uninterrupted.db'}"
    assert _same_run_uninterrupted(calm, operator, houses, early) == restarted.root
    restarted.store.close()


def _same_run_uninterrupted(
    db_url: str, operator: SigningKey, houses: dict[str, House], messages: list[tuple[bytes, str]]
) -> bytes:
    ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    ledger.register({a: h.key.verifying for a, h in houses.items()}, interval=T0)
    ledger.open_interval(T0, TARIFF)
    ledger.ingest_many(messages, InlineVerifier())
    ledger.close_interval()
    root = ledger.root
    ledger.store.close()
    return root


def test_the_intake_of_an_interval_never_closed_goes_with_the_next_close(db_url: str) -> None:
    operator = SigningKey.generate()
    houses = {a: House(a) for a in AGENTS}
    first = _ledger(db_url, operator, houses)
    first.open_interval(T0, TARIFF)
    for payload, agent in _messages(houses, T0)[:4]:
        first.ingest(payload, topic_agent=agent)
    first.flush_intake()
    first.store.close()

    # Restarted too late for T0 (beyond the grace): T0 is skipped, the next one opens.
    restarted = _ledger(db_url, operator, houses)
    later = T0 + STEP
    restarted.open_interval(later, TARIFF)
    assert restarted.open_orders == 0  # T0's kept messages are not T0 + STEP's
    for payload, agent in _messages(houses, later):
        restarted.ingest(payload, topic_agent=agent)
    restarted.flush_intake()
    outcome = restarted.close_interval()
    assert outcome.orders == len(AGENTS)
    assert _intake_rows(restarted, T0) == 0
    assert _intake_rows(restarted, later) == 0
    assert verify_ledger(restarted.store, restarted.operator_key.verifying).ok
    restarted.store.close()
