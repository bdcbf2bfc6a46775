"""Plausibility in the ledger (issue 11, finding 5): a signed reading whose meter clock
says 2**53 - 1 cannot widen the connection's bound; its interval is flagged, the log
verifies, and a restart from the snapshot keeps the same state."""

from __future__ import annotations

from tests.ledgerkit import MARKET, TARIFF, House
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import ReadingBody, Side, sign_message
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.settlement import Basis, FlagReason
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

STEP = 20
T = 1_750_000_000


def _reading(house: House, interval: int, *, meter_time: int, import_wh: int) -> bytes:
    body = ReadingBody(meter_time, import_wh, 0, 0, 0)
    return sign_message(
        house.key,
        body,
        market=MARKET,
        interval=interval,
        agent=house.agent,
        seq=house.next_seq(),
        expires=interval + 7 * 86_400,
    ).to_wire()


def _interval(ledger: Ledger, at: int, readings: list[tuple[House, int, int]]) -> None:
    """Open ``at``, admit each household's reading (meter time, import register) and a
    no-trade order."""
    ledger.open_interval(at, TARIFF, interval_s=STEP)
    for house, meter_time, import_wh in readings:
        wire = _reading(house, at, meter_time=meter_time, import_wh=import_wh)
        ledger.ingest(wire, topic_agent=house.agent)
        ledger.ingest(house.order(at, Side.BUY, 0, 200_000, expires=at + STEP))


def test_a_far_future_meter_clock_is_flagged_not_settled(db_url: str) -> None:
    operator = SigningKey.generate()
    house, honest = House("h001"), House("h002")
    ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    ledger.register({h.agent: h.key.verifying for h in (house, honest)}, interval=T)
    _interval(ledger, T, [(house, T, 0), (honest, T, 0)])
    ledger.close_interval()
    # 997 kWh in 20 s, the meter's clock claiming 2**53 - 1 s since 1970; the honest
    # household exactly at the bound: 96 Wh in 20 s at 17,250 W.
    _interval(ledger, T + STEP, [(house, 2**53 - 1, 997_000), (honest, T + STEP, 96)])
    outcome = ledger.close_interval()
    assert [(f.agent, f.interval, f.reason, f.elapsed_s, f.limit_wh) for f in outcome.flags] == [
        ("h001", T, FlagReason.BEYOND_LIMIT, STEP, 96)
    ]
    assert [(r.after.agent, r.basis, r.after.import_wh) for r in outcome.revisions] == [
        ("h002", Basis.METERED, 96)
    ]
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    state = ledger.state().metering.to_state()
    ledger.store.close()
    restarted = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    assert restarted.state().metering.to_state() == state
    restarted.store.close()
