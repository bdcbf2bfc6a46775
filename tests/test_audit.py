"""The household audit's pure checks, the receipt and checkpoint schemas, and the
saved checkpoint across a restart."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.auditkit import StepMeter
from tests.ledgerkit import T0
from wattmesh.agents._audit import (
    Alarm,
    Auditor,
    CheckpointFile,
    MemoryCheckpointStore,
    Step,
    check_entry,
    entry_parties,
    judge_checkpoint,
)
from wattmesh.agents.agent import AgentConfig, HouseholdAgent
from wattmesh.agents.sequence import MemorySequence
from wattmesh.broker.audit_bodies import (
    MAX_RECEIPT_ENTRIES,
    CheckpointNoteBody,
    ReceiptBody,
    ReceiptEntry,
    message_leaf,
)
from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    OrderBody,
    Side,
    SignedMessage,
    TradeLine,
    TradesBody,
    decode_message,
    sign_message,
)
from wattmesh.broker.tlog import CheckpointBody
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig
from wattmesh.ledger._audit_messages import household_entries
from wattmesh.ledger._merkle import consistency_proof, inclusion_proof, root_hash
from wattmesh.ledger.checkpoint import checkpoint_note, sign_checkpoint
from wattmesh.ledger.entries import message_entry

ORIGIN = "wattmesh/m1"
OPERATOR = SigningKey.generate()
HOUSE = SigningKey.generate()


def _trade(buyer: str, seller: str, qty: int = 500, price: int = 150_000) -> bytes:
    obj = {
        "kind": "trade",
        "interval": T0,
        "buyer": buyer,
        "seller": seller,
        "quantity_wh": qty,
        "price_micro_per_kwh": price,
        "buy_order": "a" * 64,
        "sell_order": "b" * 64,
    }
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _order(seq: int, interval: int = T0, agent: str = "h001") -> SignedMessage:
    return sign_message(
        HOUSE,
        OrderBody(Side.BUY, 400, 200_000),
        market="m1",
        interval=interval,
        agent=agent,
        seq=seq,
        expires=interval + 900,
    )


class Log:
    """A growing log with signed notes, as the operator keeps it."""

    def __init__(self, key: SigningKey = OPERATOR, origin: str = ORIGIN) -> None:
        self.leaves: list[bytes] = []
        self.key = key
        self.origin = origin

    def note(self, size: int | None = None) -> str:
        size = len(self.leaves) if size is None else size
        cp = sign_checkpoint(
            self.key,
            origin=self.origin,
            tree_size=size,
            root=root_hash(self.leaves[:size]),
            interval=T0,
        )
        return checkpoint_note(cp, origin=self.origin)

    def checkpoint(self, old_size: int) -> CheckpointNoteBody:
        size = len(self.leaves)
        proof = consistency_proof(self.leaves, old_size) if 0 < old_size < size else []
        return CheckpointNoteBody(self.note(), old_size, tuple(proof))

    def receipt(self, indices: list[int], household: str = "h001") -> ReceiptBody:
        entries = tuple(
            ReceiptEntry(i, self.leaves[i], tuple(inclusion_proof(self.leaves, i))) for i in indices
        )
        return ReceiptBody(household, len(self.leaves), 1, 1, entries)


def _body(size: int, root: bytes) -> CheckpointBody:
    return CheckpointBody(ORIGIN, size, root)


def test_message_leaf_is_the_ledgers_entry() -> None:
    message = _order(7)
    assert decode_message(message.to_wire()).signed_bytes == message.signed_bytes
    assert message_leaf(message) == message_entry(message).data
    assert entry_parties(message_leaf(message)) == {"h001"}
    assert entry_parties(_trade("h001", "h002")) == {"h001", "h002"}
    assert entry_parties(b"not json") == frozenset()


def test_judge_checkpoint() -> None:
    leaves = [bytes([i]) * 10 for i in range(9)]
    r5, r9 = root_hash(leaves[:5]), root_hash(leaves)
    saved = _body(5, r5)
    proof = consistency_proof(leaves, 5)
    assert judge_checkpoint(None, _body(9, r9), 0, [], current=True).step is Step.ACCEPT
    assert judge_checkpoint(saved, _body(9, r9), 5, proof, current=True).step is Step.ACCEPT
    assert judge_checkpoint(saved, _body(5, r5), 0, [], current=True).step is Step.KEEP
    assert judge_checkpoint(saved, _body(9, r9), 4, proof, current=True).step is Step.REQUEST
    fork = judge_checkpoint(saved, _body(9, r9), 5, proof[:-1], current=True)
    assert fork.step is Step.ALARM and fork.finding is not None
    assert fork.finding.alarm is Alarm.FORK
    other = _body(5, root_hash(leaves[1:6]))
    same_size = judge_checkpoint(saved, other, 0, [], current=True).finding
    assert same_size is not None and same_size.alarm is Alarm.FORK
    older = _body(3, root_hash(leaves[:3]))
    stale = judge_checkpoint(saved, older, 0, [], current=True).finding
    assert stale is not None and stale.alarm is Alarm.STALE_CHECKPOINT
    assert judge_checkpoint(saved, older, 0, [], current=False).step is Step.KEEP


def test_check_entry() -> None:
    leaves = [_trade("h001", "h002"), _trade("h003", "h004"), b"x"]
    root = root_hash(leaves)
    good = ReceiptEntry(0, leaves[0], tuple(inclusion_proof(leaves, 0)))
    assert check_entry(good, agent="h002", tree_size=3, root=root) is None
    moved = ReceiptEntry(1, leaves[0], good.proof)
    finding = check_entry(moved, agent="h001", tree_size=3, root=root)
    assert finding is not None and finding.alarm is Alarm.BAD_PROOF
    other = ReceiptEntry(1, leaves[1], tuple(inclusion_proof(leaves, 1)))
    finding = check_entry(other, agent="h001", tree_size=3, root=root)
    assert finding is not None and "not about h001" in finding.detail


def test_receipt_and_checkpoint_bodies_round_trip_and_reject_bad_fields() -> None:
    log = Log()
    log.leaves = [b"a", b"b", b"c"]
    for body in (log.receipt([0, 2]), log.checkpoint(2)):
        wire = sign_message(
            OPERATOR, body, market="m1", interval=T0, agent="operator", seq=1, expires=T0
        ).to_wire()
        assert decode_message(wire).body == body
    ok = log.receipt([1]).to_json()
    bad_cases = [
        {**ok, "extra": 1},
        {**ok, "tree_size": 3.0},
        {**ok, "part": 2, "parts": 1},
        {**ok, "entries": [{**ok["entries"][0], "proof": ["AB" * 32]}]},
        {**ok, "entries": [{**ok["entries"][0], "data": "not base64!"}]},
        {**ok, "entries": [ok["entries"][0]] * (MAX_RECEIPT_ENTRIES + 1)},
    ]
    for bad in bad_cases:
        with pytest.raises(MessageError):
            ReceiptBody.from_json(bad)


def test_auditor_checks_receipts_trades_and_missing_entries() -> None:
    log = Log()
    audit = Auditor("h001", origin=ORIGIN, key=OPERATOR.verifying, store=MemoryCheckpointStore())
    sent, refused, lost = _order(1), _order(2), _order(3)
    for message in (sent, refused, lost):
        audit.expect(message)
    audit.refused(refused.message_id)
    log.leaves += [message_leaf(sent), _trade("h001", "h002"), b"other"]
    assert audit.on_checkpoint(log.checkpoint(0), current=True).findings == []
    # Receipt before the trades: checked when both are there.
    assert audit.on_receipt(T0, log.receipt([0, 1])) == []
    trades = TradesBody((TradeLine("h001", "h002", 500, 150_000), TradeLine("h3", "h4", 1, 1)))
    assert audit.on_trades(T0, trades) == []
    assert audit.receipts_checked == 1 and audit.entries_checked == 2
    # Next interval: a trade announced but not logged, and `lost` was never logged.
    nxt = _order(4, interval=T0 + 900)
    audit.expect(nxt)
    log.leaves += [message_leaf(nxt)]
    assert audit.on_checkpoint(log.checkpoint(3), current=True).findings == []
    found = audit.on_trades(T0 + 900, TradesBody((TradeLine("h002", "h001", 7, 9),)))
    assert found == []
    findings = audit.on_receipt(T0 + 900, log.receipt([3]))
    assert [f.alarm for f in findings] == [Alarm.MISSING_ENTRY, Alarm.MISSING_ENTRY]
    assert "seq 3" in findings[0].detail and "trade h002->h001" in findings[1].detail
    assert audit.alarms == {"missing_entry": 2}


def test_a_receipt_in_parts_is_checked_once_complete() -> None:
    log = Log()
    log.leaves = [message_leaf(_order(seq)) for seq in range(1, 4)]
    audit = Auditor("h001", origin=ORIGIN, key=OPERATOR.verifying, store=MemoryCheckpointStore())
    whole = log.receipt([0, 1, 2])
    first = ReceiptBody("h001", 3, 1, 2, whole.entries[:2])
    second = ReceiptBody("h001", 3, 2, 2, whole.entries[2:])
    assert audit.on_receipt(T0, second) == []  # no signed root yet, one part
    audit.on_checkpoint(log.checkpoint(0), current=True)
    assert audit.receipts_checked == 0
    assert audit.on_receipt(T0, first) == []
    assert audit.receipts_checked == 1 and audit.entries_checked == 3
    wrong = audit.on_receipt(T0, ReceiptBody("h002", 3, 1, 1, ()))
    assert [f.alarm for f in wrong] == [Alarm.BAD_PROOF]


def test_the_saved_checkpoint_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.note"
    log = Log()
    log.leaves = [b"a", b"b", b"c"]

    def auditor() -> Auditor:
        return Auditor("h001", origin=ORIGIN, key=OPERATOR.verifying, store=CheckpointFile(path))

    first = auditor()
    assert first.saved is None
    first.on_checkpoint(log.checkpoint(0), current=True)
    assert path.read_text(encoding="utf-8") == log.note()
    assert not path.with_name("checkpoint.note.tmp").exists()
    # After a restart the agent checks consistency from the saved size.
    again = auditor()
    assert again.saved == CheckpointBody(ORIGIN, 3, root_hash(log.leaves))
    log.leaves += [b"d", b"e"]
    assert again.on_checkpoint(log.checkpoint(3), current=True).findings == []
    assert again.saved is not None and again.saved.tree_size == 5
    # The same history rewritten (same size, other entries): a fork, also after a restart.
    forked = Log()
    forked.leaves = [b"a", b"b", b"c", b"X", b"Y", b"Z"]
    outcome = auditor().on_checkpoint(forked.checkpoint(5), current=True)
    assert [f.alarm for f in outcome.findings] == [Alarm.FORK]
    assert auditor().saved == CheckpointBody(ORIGIN, 5, root_hash(log.leaves))  # unchanged
    # A saved note that does not verify is an alarm, not a crash; the audit starts afresh.
    path.write_text(Log(SigningKey.generate()).note(), encoding="utf-8")
    broken = auditor()
    assert broken.saved is None and broken.alarms == {"bad_signature": 1}


async def test_an_operator_message_under_another_key_is_ignored_not_an_alarm(
    mosquitto: BrokerAddress,
) -> None:
    topics = Topics(f"u{uuid.uuid4().hex[:8]}")
    config = AgentConfig(agent_id="h001", topics=topics, operator_key=OPERATOR.verifying)
    async with Transport(TransportConfig(address=mosquitto, client_id="audit-unit")) as transport:
        agent = HouseholdAgent(
            config,
            key=HOUSE,
            transport=transport,
            meter=StepMeter(0, 0),
            sequence=MemorySequence(),
        )
        log = Log(origin=f"wattmesh/{topics.market_id}")
        log.leaves = [b"a"]
        forged = sign_message(
            SigningKey.generate(),
            log.checkpoint(0),
            market=topics.market_id,
            interval=T0,
            agent="operator",
            seq=1,
            expires=T0,
        ).to_wire()
        # Anyone on a broker without ACLs can publish this: it says nothing about the
        # operator's log, so it is counted among the ignored messages, never an alarm
        # (a flood of forgeries would otherwise be a flood of ERROR lines).
        for _ in range(50):
            assert not await agent.handle(Message(topics.checkpoint, forged, retain=True))
        assert agent.audit is not None
        assert agent.audit.alarms == {} and agent.audit.saved is None
        diagnostics = agent.diagnostics()
        assert diagnostics["audit"] == agent.audit.report()
        assert agent.ignored.counts == {"audit_unsigned": 50}
        await agent.go_offline(None)


def test_household_entries_names_both_trade_parties() -> None:
    from wattmesh.ledger.entries import NewEntry

    entries = [
        NewEntry("order", T0, "h001", 1, b"{}"),
        NewEntry("trade", T0, None, None, _trade("h001", "h002")),
        NewEntry("clearing", T0, None, None, b"{}"),
        NewEntry("posting", T0, "h002", None, b"{}"),
    ]
    assert household_entries(10, entries) == {"h001": [10, 11], "h002": [11, 13]}


def test_after_a_lost_connection_an_unseen_receipt_is_unverified_not_missing() -> None:
    log = Log()
    audit = Auditor("h001", origin=ORIGIN, key=OPERATOR.verifying, store=MemoryCheckpointStore())
    before, omitted = _order(1), _order(2, interval=T0 + 900)
    audit.expect(before)
    audit.reconnected()  # the receipt of T0 went out while the agent was away
    audit.expect(omitted)
    later = _order(3, interval=T0 + 1800)
    log.leaves = [b"x", message_leaf(later)]
    audit.on_checkpoint(log.checkpoint(0), current=True)
    assert audit.on_receipt(T0 + 900, log.receipt([1])) == []  # T0 + 900: omitted is absent
    assert audit.unverified == 1 and audit.alarms == {}
    findings = audit.on_receipt(T0 + 1800, log.receipt([1]))
    assert [f.alarm for f in findings] == [Alarm.MISSING_ENTRY]  # sent after the reconnect
    assert "seq 2" in findings[0].detail


def test_withheld_receipts_raise_missing_entry_at_a_later_checkpoint() -> None:
    log = Log()
    audit = Auditor("h001", origin=ORIGIN, key=OPERATOR.verifying, store=MemoryCheckpointStore())
    audit.expect(_order(1))  # logged by nobody; no receipt ever comes
    heads = []
    for n in range(3):
        old = len(log.leaves)
        log.leaves.append(b"clearing %d" % n)
        heads.append(audit.on_checkpoint(log.checkpoint(old), current=True, interval=T0 + n * 900))
    # Receipts of T0 were due before the head of T0 + 900; judged at the next head.
    assert [f.alarm for h in heads for f in h.findings] == [Alarm.MISSING_ENTRY]
    assert heads[2].findings and "seq 1" in heads[2].findings[0].detail
    assert audit.saved is not None and audit.saved.tree_size == 3
