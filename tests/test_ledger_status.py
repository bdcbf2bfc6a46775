"""The households' signed status on its own (ledger/status.py): which statuses are
taken, and the last one taken kept in the database (SQLite and PostgreSQL), so a new
process refuses a replayed older one too. Over Mosquitto with ``ledger run``:
tests/test_ledger_run_status.py."""

from __future__ import annotations

import base64
import json

import pytest

from agents.presence import StatusSigner
from broker.errors import MessageError, RejectReason
from broker.keys import SigningKey
from broker.messages import Presence
from broker.topics import Topics
from ledger.status import Statuses, StatusStore
from ledger.store import LedgerStore

TOPICS = Topics("m1")
KEY = SigningKey.generate()


def _signer() -> StatusSigner:
    return StatusSigner(KEY, TOPICS, "h001")


def test_a_newer_status_is_taken_a_copy_of_the_last_is_no_news_an_older_one_a_replay() -> None:
    signer = _signer()
    old_offline, online = signer.sign(Presence.OFFLINE), signer.sign(Presence.ONLINE)
    statuses = Statuses("m1")
    assert statuses.take("h001", old_offline, KEY.verifying)
    assert statuses.offline == {"h001"}
    assert statuses.take("h001", online, KEY.verifying)
    assert not statuses.take("h001", online, KEY.verifying)  # the retained copy again
    with pytest.raises(MessageError) as refused:
        statuses.take("h001", old_offline, KEY.verifying)
    assert refused.value.reason is RejectReason.REPLAY
    assert statuses.offline == set()


def test_what_is_not_the_households_own_status_is_refused_with_its_reason() -> None:
    wire = _signer().sign(Presence.OFFLINE)
    envelope = json.loads(wire)
    envelope["sig"] = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
    cases = [
        (RejectReason.KEY_MISMATCH, "h002", wire, KEY.verifying),  # another's topic
        (RejectReason.KEY_MISMATCH, "h001", wire, SigningKey.generate().verifying),
        (RejectReason.UNKNOWN_KEY, "h001", wire, None),
        (RejectReason.BAD_SIGNATURE, "h001", json.dumps(envelope).encode(), KEY.verifying),
        (RejectReason.MALFORMED_JSON, "h001", b"offline", KEY.verifying),
    ]
    for reason, agent, payload, key in cases:
        statuses = Statuses("m1")
        with pytest.raises(MessageError) as refused:
            statuses.take(agent, payload, key)
        assert refused.value.reason is reason
        assert statuses.offline == set()
    with pytest.raises(MessageError) as refused:
        Statuses("m2").take("h001", wire, KEY.verifying)
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
                assert statuses.take(agent, wire, KEY.verifying)
        assert not statuses.take("h001", online, KEY.verifying)  # its retained copy
        with pytest.raises(MessageError) as refused:
            statuses.take("h001", old_offline, KEY.verifying)
        assert refused.value.reason is RejectReason.REPLAY
        assert statuses.offline == set()
    finally:
        store.close()
