"""Key rotation and revocation on real SQLite and PostgreSQL: what the ledger accepts
before and after, what it logs, what ``ledger verify`` checks, and restarts."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from tests.ledgerkit import (
    MARKET,
    STEP,
    T0,
    TARIFF,
    TIMEOUT_S,
    House,
    new_ledger,
    rejection_reason,
    running_ingest,
)
from wattmesh.broker.errors import ConfigError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import RejectionBody, Side, decode_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress
from wattmesh.cli import main
from wattmesh.ledger.entries import (
    EntryKind,
    NewEntry,
    key_entry,
    key_revocation_entry,
    key_rotation_entry,
    message_entry,
)
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

T1, T2, T3 = T0 + STEP, T0 + 2 * STEP, T0 + 3 * STEP


def _interval(ledger: Ledger, interval: int, houses: list[House]) -> None:
    """One interval in which each of ``houses`` sends a reading and an order."""
    ledger.open_interval(interval, TARIFF)
    for house in houses:
        house.meter(import_wh=100)
        ledger.ingest(house.reading(interval), topic_agent=house.agent)
        ledger.ingest(house.order(interval, Side.BUY, 100, 200_000), topic_agent=house.agent)
    ledger.close_interval()


def _kinds(ledger: Ledger) -> list[str]:
    return [e.kind for e in ledger.store.iter_entries()]


def _logged_kids(ledger: Ledger, agent: str) -> list[str]:
    """The key id of each of ``agent``'s logged messages, in log order."""
    return [
        json.loads(e.data)["signed"]["kid"]
        for e in ledger.store.iter_entries()
        if e.agent == agent and e.kind in (EntryKind.READING, EntryKind.ORDER)
    ]


def test_rotation_mid_run_rejects_the_old_key_and_verifies_both_periods(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    a = houses["h001"]
    old = House("h001", key=a.key, seq=a.seq)  # what is still signed with the old key
    _interval(ledger, T0, list(houses.values()))
    a.key = SigningKey.generate()
    assert ledger.register({"h001": a.key.verifying}, interval=T1) == 1
    rotation = list(ledger.store.iter_entries())[-1]
    assert rotation.kind == EntryKind.KEY_ROTATION and rotation.agent == "h001"
    assert json.loads(rotation.data) == {
        "kind": "key_rotation",
        "agent": "h001",
        "old_kid": old.key.kid,
        "kid": a.key.kid,
        "public_key": json.loads(rotation.data)["public_key"],
    }
    ledger.open_interval(T1, TARIFF)
    old.seq = a.seq + 10  # a fresh seq: the key, not a replay, is what is refused
    assert rejection_reason(ledger, old.reading(T1)) is RejectReason.ROTATED_KEY
    assert ledger.rejections[RejectReason.ROTATED_KEY] == 1
    assert "h001" in ledger.missing()
    a.seq = old.seq
    ledger.ingest(a.reading(T1), topic_agent="h001")
    ledger.ingest(a.order(T1, Side.SELL, 50, 90_000), topic_agent="h001")
    for house in (houses["h002"], houses["h003"]):
        ledger.ingest(house.reading(T1))
        ledger.ingest(house.order(T1, Side.BUY, 0, 1))
    ledger.close_interval()
    assert _logged_kids(ledger, "h001") == [old.key.kid] * 2 + [a.key.kid] * 2
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    assert report.entries == ledger.size
    assert main(["ledger", "verify", "--db", db_url, "--operator-key-id", operator.kid]) == 0
    ledger.store.close()

    restarted = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    assert restarted.keys["h001"].kid == a.key.kid
    assert restarted.register({h.agent: h.key.verifying for h in houses.values()}, interval=T2) == 0
    restarted.open_interval(T2, TARIFF)
    old.seq = a.seq + 10
    assert rejection_reason(restarted, old.reading(T2)) is RejectReason.ROTATED_KEY
    restarted.ingest(a.reading(T2, seq=old.seq + 1))
    restarted.store.close()


def test_rotation_or_revocation_waits_for_the_open_interval_to_close(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    """A message accepted with the old key is logged at the close, after a rotation
    logged now would be: so the ledger refuses to rotate in the middle."""
    ledger = new_ledger(db_url, operator, houses.values())
    a = houses["h001"]
    ledger.open_interval(T0, TARIFF)
    ledger.ingest(a.reading(T0))
    size = ledger.size
    with pytest.raises(RuntimeError, match="between intervals"):
        ledger.register({"h001": SigningKey.generate().verifying}, interval=T0)
    with pytest.raises(RuntimeError, match="between intervals"):
        ledger.register({}, interval=T0, revoked={"h001": {a.key.kid: "lost"}})
    newcomer = House("h004")
    assert ledger.register({"h004": newcomer.key.verifying}, interval=T0) == 1  # a new one may
    assert ledger.size == size + 1
    ledger.close_interval()
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    ledger.store.close()


def test_revocation_rejects_the_key_counts_it_and_verify_passes(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    b, c = houses["h002"], houses["h003"]
    old_c = House("h003", key=c.key)
    _interval(ledger, T0, list(houses.values()))
    c.key = SigningKey.generate()  # h003 gets a new key; its old one was stolen
    keys = {h.agent: h.key.verifying for h in houses.values()}
    revoked = {"h002": {b.key.kid: "household left"}, "h003": {old_c.key.kid: "stolen"}}
    assert ledger.register(keys, interval=T1, revoked=revoked) == 3
    assert _kinds(ledger)[-3:] == ["key_revocation", "key_rotation", "key_revocation"]
    assert ledger.register(keys, interval=T1, revoked=revoked) == 0  # nothing new
    ledger.open_interval(T1, TARIFF)
    assert "h002" not in ledger.missing()  # the gate does not wait for a revoked key
    assert ledger.households == ("h001", "h002", "h003")  # ... who is still registered
    assert ledger.is_registered("h002") and "h002" not in ledger.keys
    assert rejection_reason(ledger, b.reading(T1)) is RejectReason.REVOKED_KEY
    old_c.seq = c.seq = 100
    # The old key is revoked, not just rotated out:
    assert rejection_reason(ledger, old_c.reading(T1)) is RejectReason.REVOKED_KEY
    assert ledger.rejections[RejectReason.REVOKED_KEY] == 2
    ledger.ingest(c.reading(T1))
    ledger.close_interval()
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert report.ok, report.problem
    ledger.store.close()

    restarted = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)
    restarted.open_interval(T2, TARIFF)
    assert rejection_reason(restarted, b.reading(T2)) is RejectReason.REVOKED_KEY
    assert restarted.missing() == {"h001", "h003"}
    with pytest.raises(ConfigError, match="revoked"):  # a revoked key cannot come back
        restarted.register({"h003": old_c.key.verifying}, interval=T2)
    with pytest.raises(ConfigError, match="not registered"):
        restarted.register({}, interval=T2, revoked={"h999": {b.key.kid: "x"}})
    restarted.close_interval()
    old_b = House("h002", key=b.key, seq=200)
    b.key, b.seq = SigningKey.generate(), 300  # h002 is back with a new key
    assert restarted.register({"h002": b.key.verifying}, interval=T3) == 1
    restarted.open_interval(T3, TARIFF)
    assert rejection_reason(restarted, old_b.reading(T3)) is RejectReason.REVOKED_KEY
    restarted.ingest(b.reading(T3))
    restarted.close_interval()
    report = verify_ledger(restarted.store, restarted.operator_key.verifying)
    assert report.ok, report.problem
    restarted.store.close()


def _sneak_in(ledger: Ledger, entries: list[NewEntry], interval: int) -> int:
    """What a ledger that skipped its checks (or an operator cheating with its own
    signing key) logs: entries under a validly signed checkpoint. Returns the index."""
    at = ledger.size
    ledger._append(entries, interval)
    return at


def test_verify_names_an_old_key_message_logged_after_the_revocation(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    b = houses["h002"]
    _interval(ledger, T0, list(houses.values()))
    ledger.register({}, interval=T1, revoked={"h002": {b.key.kid: "stolen"}})
    revocation_at = ledger.size - 1
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    forged = decode_message(b.reading(T1))
    bad = _sneak_in(ledger, [message_entry(forged)], T1)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok
    assert report.first_bad_entry == bad
    assert report.problem is not None
    assert f"revoked at entry {revocation_at}" in report.problem
    assert (
        main(["ledger", "verify", "--db", db_url, "--operator-key-id", ledger.operator_key.kid])
        == 1
    )
    ledger.store.close()


def test_verify_names_an_old_key_message_logged_after_the_rotation(
    db_url: str, operator: SigningKey, houses: dict[str, House]
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    a = houses["h001"]
    old = House("h001", key=a.key, seq=a.seq)
    ledger.register({"h001": SigningKey.generate().verifying}, interval=T0)
    bad = _sneak_in(ledger, [message_entry(decode_message(old.reading(T0)))], T0)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert (report.ok, report.first_bad_entry) == (False, bad)
    assert report.problem is not None and "rotated out at entry 3" in report.problem
    ledger.store.close()


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("second_key", "registered already"),
        ("rotation_from_another_key", "does not name h001's current key"),
        ("rotation_of_a_stranger", "not registered"),
        ("revocation_of_a_stranger", "not registered"),
        ("revoked_twice", "revoked already"),
        ("bad_kid", "is not a key id"),
    ],
)
def test_verify_refuses_key_entries_that_do_not_follow(
    db_url: str, operator: SigningKey, houses: dict[str, House], case: str, problem: str
) -> None:
    ledger = new_ledger(db_url, operator, houses.values())
    a, new = houses["h001"], SigningKey.generate().verifying
    entries = {
        "second_key": [key_entry(agent="h001", key=new, interval=T0)],
        "rotation_from_another_key": [
            key_rotation_entry(agent="h001", old_kid=new.kid, key=new, interval=T0)
        ],
        "rotation_of_a_stranger": [
            key_rotation_entry(agent="h009", old_kid=a.key.kid, key=new, interval=T0)
        ],
        "revocation_of_a_stranger": [
            key_revocation_entry(agent="h009", kid=a.key.kid, reason="x", interval=T0)
        ],
        "revoked_twice": [
            key_revocation_entry(agent="h001", kid=a.key.kid, reason="x", interval=T0),
            key_revocation_entry(agent="h001", kid=a.key.kid, reason="y", interval=T0),
        ],
        "bad_kid": [key_revocation_entry(agent="h001", kid="ab" * 31, reason="x", interval=T0)],
    }[case]
    at = _sneak_in(ledger, entries, T0) + len(entries) - 1
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert (report.ok, report.first_bad_entry) == (False, at)
    assert report.problem is not None and problem in report.problem
    ledger.store.close()


async def test_a_revoked_household_hears_its_rejection_and_the_service_runs_on(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    """Over real Mosquitto: the revoked household (which has no valid key left, so the
    gate does not wait for it) gets ``revoked_key`` on its error topic; the next
    household's message is still accepted."""
    market = f"m{uuid.uuid4().hex[:8]}"
    topics = Topics(market)
    a, b = House("h001"), House("h002")
    ledger = new_ledger(
        f"sqlite:///{tmp_path / 'ledger.db'}", SigningKey.generate(), (a, b), market=market
    )
    ledger.register({}, interval=T0, revoked={"h002": {b.key.kid: "stolen"}})
    ledger.open_interval(T0, TARIFF, trading=False)  # readings only

    async with running_ingest(ledger, mosquitto, listener="h002") as run:
        refused = b.reading(T0, market=market)
        await run.household.publish(topics.reading("h002"), refused, qos=1)
        message = await asyncio.wait_for(anext(run.errors), TIMEOUT_S)
        rejection = decode_message(message.payload).body
        assert isinstance(rejection, RejectionBody)
        assert (rejection.reason, rejection.ref) == (
            RejectReason.REVOKED_KEY,
            decode_message(refused).message_id,
        )
        assert "stolen" in rejection.detail
        await run.household.publish(topics.reading("h001"), a.reading(T0, market=market), qos=1)
        await asyncio.wait_for(run.service._wait_for_households(), TIMEOUT_S)
    assert ledger.rejections == {RejectReason.REVOKED_KEY: 1}
    assert ledger.close_interval().readings == 1
    ledger.store.close()
