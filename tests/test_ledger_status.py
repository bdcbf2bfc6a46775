"""The households' signed status on its own (ledger/_status.py): which statuses are
taken, and the last one taken kept in the database (SQLite and PostgreSQL), so a new
process refuses a replayed older one too. Over Mosquitto with ``ledger run``:
tests/test_ledger_run_status.py."""

from __future__ import annotations

import base64
import json

import pytest

from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Presence
from wattmesh.broker.topics import Topics
from wattmesh.ledger._status import STATUS_CHECK_BURST, STATUS_CHECK_EVERY_S, Statuses, StatusStore
from wattmesh.ledger.store import LedgerStore

TOPICS = Topics("m1")
KEY = SigningKey.generate()


def _signer() -> StatusSigner:
    return StatusSigner(KEY, TOPICS, "h001")


def test_a_newer_status_is_taken_a_copy_of_the_last_is_no_news_an_older_one_a_replay() -> None:
    signer = _signer()
    old_offline, online = signer.sign(Presence.OFFLINE), signer.sign(Presence.ONLINE)
    statuses = Statuses("m1")
    assert statuses.take("h001", old_offline, KEY.verifying, 0.0)
    assert statuses.offline == {"h001"}
    assert statuses.take("h001", online, KEY.verifying, 0.0)
    assert not statuses.take("h001", online, KEY.verifying, 0.0)  # the retained copy again
    with pytest.raises(MessageError) as refused:
        statuses.take("h001", old_offline, KEY.verifying, 0.0)
    assert refused.value.reason is RejectReason.REPLAY
    assert statuses.offline == set()


def test_what_is_not_the_households_own_status_is_refused_with_its_reason() -> None:
    wire = _signer().sign(Presence.OFFLINE)
    cases = [
        (RejectReason.KEY_MISMATCH, "h002", wire, KEY.verifying),  # another's topic
        (RejectReason.KEY_MISMATCH, "h001", wire, SigningKey.generate().verifying),
        (RejectReason.UNKNOWN_KEY, "h001", wire, None),
        (RejectReason.BAD_SIGNATURE, "h001", _forged(wire), KEY.verifying),
        (RejectReason.MALFORMED_JSON, "h001", b"offline", KEY.verifying),
    ]
    for reason, agent, payload, key in cases:
        statuses = Statuses("m1")
        with pytest.raises(MessageError) as refused:
            statuses.take(agent, payload, key, 0.0)
        assert refused.value.reason is reason
        assert statuses.offline == set()
    with pytest.raises(MessageError) as refused:
        Statuses("m2").take("h001", wire, KEY.verifying, 0.0)
    assert refused.value.reason is RejectReason.WRONG_MARKET


def test_the_last_status_kept_makes_a_new_process_refuse_an_older_one(db_url: str) -> None:
    signer = _signer()
    old_offline, online = signer.sign(Presence.OFFLINE), signer.sign(Presence.ONLINE)
    store = LedgerStore(db_url)
    try:
        kept = StatusStore(store.engine)
        kept.keep("h001", old_offline)
        kept.keep("h001", online)  # in its place
        kept.keep("h002", b"x")
        assert StatusStore(store.engine).kept() == [("h001", online), ("h002", b"x")]
    finally:
        store.close()
    store = LedgerStore(db_url)  # the next process
    try:
        statuses = Statuses("m1")
        for agent, wire in StatusStore(store.engine).kept():
            if agent == "h001":
                assert statuses.take(agent, wire, KEY.verifying, 0.0)
        assert not statuses.take("h001", online, KEY.verifying, 0.0)  # its retained copy
        with pytest.raises(MessageError) as refused:
            statuses.take("h001", old_offline, KEY.verifying, 0.0)
        assert refused.value.reason is RejectReason.REPLAY
        assert statuses.offline == set()
    finally:
        store.close()


def _forged(wire: bytes) -> bytes:
    """``wire`` with a signature that does not verify (its key id stays the household's)."""
    envelope = json.loads(wire)
    envelope["sig"] = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
    return json.dumps(envelope).encode()


def test_a_flood_on_a_status_topic_is_judged_a_few_at_a_time_per_household() -> None:
    signer = _signer()
    statuses = Statuses("m1")
    reasons = []
    for _ in range(STATUS_CHECK_BURST + 50):
        with pytest.raises(MessageError) as refused:
            statuses.take("h001", _forged(signer.sign(Presence.OFFLINE)), KEY.verifying, 5.0)
        reasons.append(refused.value.reason)
    assert (
        reasons
        == [RejectReason.BAD_SIGNATURE] * STATUS_CHECK_BURST + [RejectReason.STATUS_LIMITED] * 50
    )
    # A genuine status in the flood is dropped too (the household keeps its last state) ...
    online = signer.sign(Presence.ONLINE)
    with pytest.raises(MessageError) as refused:
        statuses.take("h001", online, KEY.verifying, 5.0)
    assert refused.value.reason is RejectReason.STATUS_LIMITED
    # ... and taken once the budget allows one again.
    assert statuses.take("h001", online, KEY.verifying, 5.0 + STATUS_CHECK_EVERY_S)
    # Anything on the topic counts against the budget, replays and junk too.
    older = StatusSigner(KEY, TOPICS, "h001", clock_us=lambda: 1)
    for _ in range(20):
        with pytest.raises(MessageError) as refused:
            statuses.take(
                "h001", older.sign(Presence.OFFLINE), KEY.verifying, 6.0 + STATUS_CHECK_EVERY_S
            )
        assert refused.value.reason is RejectReason.STATUS_LIMITED
    with pytest.raises(MessageError) as refused:
        statuses.take("h001", b"junk", KEY.verifying, 5.0 + 2 * STATUS_CHECK_EVERY_S)
    assert refused.value.reason is RejectReason.MALFORMED_JSON
    with pytest.raises(MessageError) as refused:
        statuses.take("h001", b"junk", KEY.verifying, 5.0 + 2 * STATUS_CHECK_EVERY_S)
    assert refused.value.reason is RejectReason.STATUS_LIMITED
    with pytest.raises(MessageError) as refused:
        statuses.take(
            "h001", older.sign(Presence.OFFLINE), KEY.verifying, 5.0 + 3 * STATUS_CHECK_EVERY_S
        )
    assert refused.value.reason is RejectReason.REPLAY
    # Other households have their own checks.
    other = StatusSigner(KEY, TOPICS, "h002").sign(Presence.OFFLINE)
    assert statuses.take("h002", other, KEY.verifying, 5.0)
    assert statuses.offline == {"h002"}
