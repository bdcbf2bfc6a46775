"""Households audit the operator's log over a real Mosquitto: receipts, checkpoints,
and the alarms for a fork, a missing or misplaced entry, and a bad note signature."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.auditkit import STEP, TARIFF, TIMEOUT_S, market, new_ledger, until
from tests.ledgerkit import T0
from wattmesh.agents._audit import Alarm, Auditor
from wattmesh.broker.audit_bodies import ReceiptEntry
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger._audit_messages import AuditMessages
from wattmesh.ledger.checkpoint import checkpoint_note
from wattmesh.ledger.ledger import IntervalOutcome
from wattmesh.ledger.service import LedgerService, OperatorConfig


def _alarms(audit: Auditor) -> dict[str, int]:
    return dict(audit.alarms)


async def test_households_verify_receipts_and_checkpoints_without_alarms(
    mosquitto: BrokerAddress, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wattmesh.ledger.service")
    async with market(mosquitto, tmp_path) as m:
        # Audit requests the operator must ignore (and keep running).
        request = m.topics.audit_request("h001")
        junks = (
            b"junk",
            b'{"from_size": 1000000}',
            b'{"from_size": true}',
            b"[]",
            b"[" * 100_000,
            b'{"from_size": 1, "x": 2}',
            b"\xff\xfe",
        )
        for junk in junks:
            await m.agents["h001"].transport.publish(request, junk, qos=1)
        await m.run_intervals(3)
        await m.until_all(lambda a: a.receipts_checked == 3)
        # Each counted; one log line (all came before the first close: one interval).
        assert m.service.responses.counts.audit_ignored == len(junks)
        assert caplog.text.count("ignored audit request from h001") == 1
        for agent_id, agent in m.agents.items():
            audit = agent.audit
            assert audit is not None
            assert audit.alarms == {}, (agent_id, audit.last_alarm)
            assert audit.saved is not None and audit.saved.tree_size == m.ledger.size
            assert audit.saved.root == m.ledger.root
            # reading, order, one trade each interval; settlements and postings from the 2nd
            assert audit.entries_checked >= 3 * 3 + 2 * 2
        saved = (tmp_path / "h001" / "checkpoint.note").read_text(encoding="utf-8")
        assert saved.splitlines()[1] == str(m.ledger.size)
    assert "AUDIT ALARM" not in caplog.text


async def test_a_restarted_agent_checks_consistency_from_its_saved_checkpoint(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    async with market(mosquitto, tmp_path) as m:
        await m.run_intervals(2)
        await m.until_all(lambda a: a.receipts_checked == 2)
        saved_size = m.ledger.size
        agent = await m.restart("h001")
        audit = agent.audit
        assert audit is not None and audit.saved is not None
        assert audit.saved.tree_size == saved_size  # read back from checkpoint.note
        await m.run_intervals(2)
        await m.until_all(lambda a: a.receipts_checked >= 2)
        assert audit.saved.tree_size == m.ledger.size > saved_size
        assert audit.alarms == {}
        other = m.agents["h002"].audit
        assert other is not None and other.alarms == {} and other.receipts_checked == 4


class _Tamper(LedgerService):
    """An operator that changes one household's receipt or the checkpoint of one interval."""

    victim = "h001"
    at_interval = 0
    change: str = ""

    def audit_messages(self, outcome: IntervalOutcome) -> AuditMessages:
        audit = super().audit_messages(outcome)
        if outcome.interval != self.at_interval:
            return audit
        if self.change == "bad_note":
            forged = dataclasses.replace(
                outcome.checkpoint, signature=SigningKey.generate().sign(b"something else")
            )
            note = checkpoint_note(forged, origin=self.ledger.origin)
            checkpoint = dataclasses.replace(audit.checkpoint, note=note)
            return AuditMessages(checkpoint, audit.receipts)
        (part,) = audit.receipts[self.victim]
        order = next(e for e in part.entries if b'"kind":"order"' in e.data)
        if self.change == "omit":
            entries = tuple(e for e in part.entries if e is not order)
        else:  # "misplace": the order's bytes and proof under the next index
            moved = ReceiptEntry(order.index + 1, order.data, order.proof)
            entries = tuple(moved if e is order else e for e in part.entries)
        receipts = {**audit.receipts, self.victim: (dataclasses.replace(part, entries=entries),)}
        return AuditMessages(audit.checkpoint, receipts)


def _tamper(change: str, at_interval: int) -> type[LedgerService]:
    return type("Tamper", (_Tamper,), {"change": change, "at_interval": at_interval})


async def test_an_omitted_order_raises_missing_entry(
    mosquitto: BrokerAddress, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with market(mosquitto, tmp_path, service_type=_tamper("omit", T0 + STEP)) as m:
        await m.run_intervals(3)
        victim, other = m.agents["h001"].audit, m.agents["h002"].audit
        assert victim is not None and other is not None
        await until(m.agents["h001"], lambda: victim.receipts_checked == 3)
        await until(m.agents["h002"], lambda: other.receipts_checked == 3)
        assert _alarms(victim) == {Alarm.MISSING_ENTRY.value: 1}
        assert victim.last_alarm is not None and "order" in victim.last_alarm.detail
        assert _alarms(other) == {}
    assert "AUDIT ALARM missing_entry" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_misplaced_order_raises_bad_proof_then_missing_entry(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    async with market(mosquitto, tmp_path, service_type=_tamper("misplace", T0)) as m:
        await m.run_intervals(2)
        victim = m.agents["h001"].audit
        assert victim is not None
        await until(m.agents["h001"], lambda: victim.receipts_checked == 2)
        assert _alarms(victim) == {Alarm.BAD_PROOF.value: 1, Alarm.MISSING_ENTRY.value: 1}
        # The alarm is in the retained diagnostics.
        diagnostics = await _retained(m.mosquitto, m.topics.diagnostics("h001"))
        audit = diagnostics["audit"]
        assert audit["alarms"] == {"bad_proof": 1, "missing_entry": 1}
        assert audit["checkpoint_size"] == m.ledger.size


async def test_a_bad_note_signature_raises_bad_signature_and_the_agent_recovers(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    async with market(mosquitto, tmp_path, service_type=_tamper("bad_note", T0 + STEP)) as m:
        await m.run_intervals(3)
        await m.until_all(lambda a: a.saved is not None and a.saved.tree_size == m.ledger.size)
        for agent in m.agents.values():
            audit = agent.audit
            assert audit is not None
            # The interval's receipt cannot be checked without a signed root, so its
            # reading and order count as missing.
            assert _alarms(audit) == {
                Alarm.BAD_SIGNATURE.value: 1,
                Alarm.MISSING_ENTRY.value: 2,
            }
            # The 3rd checkpoint's proof starts at the unverified 2nd: the agent asked
            # for one from its saved 1st and verified it.
            assert audit.saved is not None and audit.saved.root == m.ledger.root


async def test_a_forked_log_raises_fork(mosquitto: BrokerAddress, tmp_path: Path) -> None:
    operator = SigningKey.generate()
    keys = {a: SigningKey.generate() for a in ("h001", "h002")}
    async with market(mosquitto, tmp_path, operator=operator, keys=keys) as m:
        await m.run_intervals(2)
        await m.until_all(lambda a: a.receipts_checked == 2)
        # Another ledger with the same operator key and another, longer history: the
        # household registrations and empty intervals (one clearing entry each).
        fork = new_ledger(tmp_path / "fork.db", m.topics.market_id, operator, keys)
        for n in range(m.ledger.size + 1):
            fork.open_interval(m.interval - (100 - n) * STEP, TARIFF)
            fork.close_interval()
        assert fork.size > m.ledger.size
        forked = LedgerService(
            fork,
            OperatorConfig(m.topics, interval_s=STEP),
            key=operator,
            transport=m.service.transport,
        )
        m.service = forked
        m.tasks[0].cancel()  # the first ledger's ingest
        m.tasks.append(asyncio.create_task(forked.run_ingest()))
        await m.run_intervals(1)
        await m.until_all(lambda a: Alarm.FORK.value in a.alarms)
        for agent in m.agents.values():
            audit = agent.audit
            assert audit is not None
            assert audit.saved is not None and audit.saved.tree_size < fork.size
            assert audit.saved.root != fork.root
            assert Alarm.BAD_PROOF.value not in audit.alarms
        fork.store.close()


async def _retained(mosquitto: BrokerAddress, topic: str) -> dict[str, Any]:
    viewer = Transport(
        TransportConfig(address=mosquitto, client_id=f"view-{uuid.uuid4().hex[:8]}"),
        subscriptions=[(topic, 1)],
    )
    async with viewer:
        while True:
            message = await asyncio.wait_for(anext(viewer.messages()), TIMEOUT_S)
            report: dict[str, Any] = json.loads(message.payload)
            audit = report.get("audit")
            if isinstance(audit, dict) and audit.get("alarms"):
                return report
