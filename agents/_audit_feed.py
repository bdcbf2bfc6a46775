"""Feeding the operator's log messages to the household's audit, over MQTT.

An :class:`AuditFeed` takes the checkpoint notes, receipts and trades the household
agent (:mod:`agents.agent`) receives, checks the operator's signature, tells the
:class:`~agents._audit.Auditor` when the connection was made again, asks the operator
for a consistency proof when the auditor needs one (``household/<agent>/audit``), and
logs each alarm (ERROR) before having it reported. The checks themselves are
:mod:`agents._audit`'s; the protocol is docs/protocol.md, "Audit".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from wattmesh.agents._audit import Auditor, CheckpointOutcome, CheckpointStore, Finding
from wattmesh.broker.audit_bodies import CheckpointNoteBody, ReceiptBody, log_origin
from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import SignedMessage, TradesBody
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Transport, TransportClosedError

_LOG = logging.getLogger(__name__)


class AuditFeed:
    """Audits the operator's log for household ``agent_id``: an :class:`Auditor`
    (``auditor``) that keeps its last verified checkpoint in ``checkpoints``, fed the
    operator's messages.

    ``audited`` is set after each message handled; ``on_alarm`` is called after a
    message that raised at least one alarm (the agent reports its diagnostics).
    A message whose envelope the operator did not sign is nobody's statement about the
    log: anyone on a broker without ACLs can publish one. It raises no alarm and is
    handed to ``on_unsigned(topic, detail)`` (the agent counts it among the messages it
    ignores), so a flood of forgeries cannot flood the log with alarms.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        topics: Topics,
        operator_key: VerifyingKey,
        checkpoints: CheckpointStore,
        transport: Transport,
        audited: asyncio.Event,
        on_alarm: Callable[[], None],
        on_unsigned: Callable[[str, str], None],
    ) -> None:
        self.auditor = auditor = Auditor(
            agent_id, origin=log_origin(topics.market_id), key=operator_key, store=checkpoints
        )
        self._agent_id = agent_id
        self._topics = topics
        self._key = operator_key
        self._transport = transport
        self._audited = audited
        self._on_alarm = on_alarm
        self._on_unsigned = on_unsigned
        self._link = transport.reconnects  # reconnections the audit knows of
        if auditor.last_alarm is not None:  # the saved checkpoint did not verify
            last = auditor.last_alarm
            _LOG.error("%s: AUDIT ALARM %s: %s", agent_id, last.alarm.value, last.detail)

    async def handle(self, topic: str, message: SignedMessage) -> None:
        """Feed the auditor an operator message received on ``topic``."""
        audit, topics, me = self.auditor, self._topics, self._agent_id
        body, interval = message.body, message.header.interval
        if isinstance(body, TradesBody) and all(me not in (t.buyer, t.seller) for t in body.trades):
            return  # nothing of this household to check: spare the signature check
        if self._transport.reconnects != self._link:
            self._link = self._transport.reconnects
            audit.reconnected()
        try:
            message.verify(self._key)
        except MessageError as exc:
            self._on_unsigned(topic, f"a {message.header.kind} not signed by the operator: {exc}")
            self._audited.set()
            return
        if isinstance(body, CheckpointNoteBody) and topic in (
            topics.checkpoint,
            topics.checkpoint_reply(me),
        ):
            outcome: CheckpointOutcome = audit.on_checkpoint(
                body, current=topic == topics.checkpoint, interval=interval
            )
            self._alarm(*outcome.findings)
            if outcome.request_from is not None:
                request = json.dumps({"from_size": outcome.request_from}).encode()
                with contextlib.suppress(TransportClosedError):
                    await self._transport.publish(topics.audit_request(me), request, qos=1)
        elif isinstance(body, ReceiptBody) and topic == topics.receipt(me):
            self._alarm(*audit.on_receipt(interval, body))
        elif isinstance(body, TradesBody) and topic == topics.trades:
            self._alarm(*audit.on_trades(interval, body))
        self._audited.set()

    def _alarm(self, *findings: Finding | None) -> None:
        for finding in findings:
            if finding is None:
                continue
            _LOG.error(
                "%s: AUDIT ALARM %s: %s", self._agent_id, finding.alarm.value, finding.detail
            )
        if any(findings):
            self._on_alarm()
