"""Admission of household messages: which signed readings and orders the ledger accepts.

Pure state, no I/O. :class:`Admission` checks each decoded message against the ledger's
state, in this order: kind, market, topic, key and signature (unless a batch checked it
with this very key already), redelivery, replay, timing (late, wrong interval, expired;
backfilled readings for estimated intervals are let in), then one order or reading per
household and interval, and an order's quantity against what the household's connection
carries over the interval (:func:`broker.connection.energy_limit_wh` of its
``max_power_w`` and the open interval's length). It counts every rejection by its
reason and every redelivery, and keeps the last sequence number per household. A
message whose seq is not above it is a redelivery when a message with that seq and the
same message id was accepted, a replay when that seq was accepted with another id: the
ids accepted in the open and the last closed interval are kept here, older ones are
asked of the log (``logged_id``), so memory stays bounded by two intervals. A seq never
accepted is let on only into a slot still empty: a backfill, or the open interval's
reading or order of a household that has none there yet (sent before a message of a
higher seq that arrived first, e.g. across a ledger's crash); anything else below the
last seq is a replay. Accepted messages go into the :class:`OpenInterval`, which
the interval state machine (:class:`ledger.ledger.Ledger`) opens and closes.

The batch path (:meth:`ledger.ledger.Ledger.ingest_many`, the service's pipeline) pairs
each message with its household's key (:func:`ledger._batch.decode_jobs`), has it decoded
and its signature checked elsewhere (:mod:`ledger.sigcheck`); :meth:`Admission.admit_batch`
then applies every other check here, in arrival order, exactly as one by one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from wattmesh.broker.connection import energy_limit_wh
from wattmesh.broker.errors import LedgerError, MessageError, RejectReason
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import OrderBody, ReadingBody, SignedMessage
from wattmesh.ledger._batch import PreparedBatch
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.keyring import KeyRing


class RedeliveredError(LedgerError, MessageError):
    """The very message (same agent, seq and message id) was accepted already.

    An MQTT QoS 1 redelivery or an agent's outbox backfill: acknowledged and not
    stored again; not counted as a rejection (see :attr:`Admission.redeliveries`).
    """


@dataclass
class OpenInterval:
    """The interval accepting messages, and what it accepted so far."""

    interval: int
    tariff: GridTariff
    trading: bool  # False for the closing round, which only collects final readings
    interval_s: int | None = None  # its length; None: orders are not bounded by it
    readings: dict[str, SignedMessage] = field(default_factory=dict)
    orders: dict[str, SignedMessage] = field(default_factory=dict)
    late: dict[tuple[str, int], SignedMessage] = field(default_factory=dict)  # backfills

    def accept(self, message: SignedMessage) -> None:
        """Keep an admitted message: a reading of a closed interval is a backfill."""
        agent = message.header.agent
        if isinstance(message.body, ReadingBody) and message.header.interval < self.interval:
            self.late[(agent, message.header.interval)] = message
        else:
            target = self.readings if isinstance(message.body, ReadingBody) else self.orders
            target[agent] = message


class Admission:
    """Checks messages against the ledger's keys, sequence numbers and open interval.

    ``awaits(agent, interval)`` says whether a late reading of ``agent`` for the closed
    ``interval`` would fill a gap an estimate stands in for (the ledger's metering).
    ``logged_id(agent, seq)``: the message id of the logged message of ``agent`` with
    that seq, or None (asked only for a seq at or below the agent's last one that is not
    among the ids kept here). ``limit_w(agent)``: the household's connection limit (W),
    which bounds its orders over the open interval's ``interval_s``.
    """

    def __init__(
        self,
        market_id: str,
        keyring: KeyRing,
        awaits: Callable[[str, int], bool],
        logged_id: Callable[[str, int], str | None],
        limit_w: Callable[[str], int],
    ) -> None:
        self.market_id = market_id
        self._keyring = keyring
        self._awaits = awaits
        self._logged_id = logged_id
        self._limit_w = limit_w
        self.rejections: Counter[RejectReason] = Counter()
        self.redeliveries = 0  # messages received again after being accepted
        self._last_seq: dict[str, int] = {}
        # (agent, seq) -> message id of what was accepted since the last close, and in
        # the interval before it; older ones are in the log.
        self._recent: dict[tuple[str, int], str] = {}
        self._older: dict[tuple[str, int], str] = {}

    @property
    def last_seqs(self) -> Mapping[str, int]:
        """The highest seq accepted of each household."""
        return MappingProxyType(self._last_seq)

    @property
    def kept_ids(self) -> int:
        """How many message ids are held in memory (those of at most two intervals)."""
        return len(self._recent) + len(self._older)

    def restore_seq(self, agent: str, seq: int) -> None:
        """Replay one logged household message's seq (after a restart)."""
        self._last_seq[agent] = max(self._last_seq.get(agent, 0), seq)

    def interval_closed(self) -> None:
        """The open interval is logged: its ids move to the older generation, and those
        of the interval before are left to the log."""
        self._older, self._recent = self._recent, {}

    def _seen_id(self, agent: str, seq: int) -> str | None:
        key = (agent, seq)
        found = self._recent.get(key) or self._older.get(key)
        return self._logged_id(agent, seq) if found is None else found

    def refuse(self, error: MessageError) -> MessageError:
        """Count a message refused before it reached :meth:`admit` (e.g. undecodable)."""
        self.rejections[error.reason] += 1
        return error

    def admit_batch(
        self, batch: PreparedBatch, op: OpenInterval | None
    ) -> list[SignedMessage | MessageError]:
        """Step 2 of a batch: apply every other check to its decoded messages and accept,
        in arrival order. A message whose key changed since its batch's
        :func:`ledger._batch.decode_jobs`, or whose signature did not verify, is checked
        again inline, so the decision is always the one :meth:`admit` makes now."""
        results: list[SignedMessage | MessageError] = []
        verified = batch.verified
        for i, ((_payload, agent), item) in enumerate(zip(batch.items, batch.decoded, strict=True)):
            if isinstance(item, MessageError):
                results.append(self.refuse(item))
                continue
            try:
                results.append(self.admit(item, agent, op, verified=verified.get(i)))
            except MessageError as exc:
                results.append(exc)
        return results

    def admit(
        self,
        message: SignedMessage,
        topic_agent: str | None,
        op: OpenInterval | None,
        *,
        verified: VerifyingKey | None,
    ) -> SignedMessage:
        """Check a decoded message and accept it into ``op``; raise MessageError (counted)
        or :class:`RedeliveredError`. ``verified`` is the key its signature was already
        checked against, if any."""
        try:
            op = self._check(message, topic_agent, op, verified)
        except RedeliveredError:
            self.redeliveries += 1
            raise
        except MessageError as exc:
            self.rejections[exc.reason] += 1
            raise
        op.accept(message)
        agent = message.header.agent
        self._last_seq[agent] = max(self._last_seq.get(agent, 0), message.header.seq)
        self._recent[(agent, message.header.seq)] = message.message_id
        return message

    def _check(
        self,
        message: SignedMessage,
        topic_agent: str | None,
        op: OpenInterval | None,
        verified: VerifyingKey | None,
    ) -> OpenInterval:
        self._check_sender(message, topic_agent, op, verified)
        op = self._check_timing(message, op)
        if isinstance(message.body, OrderBody):
            if not op.trading:
                raise MessageError(RejectReason.WRONG_INTERVAL, "the market is closed")
            if message.header.agent in op.orders:
                raise MessageError(RejectReason.DUPLICATE, "one order per household and interval")
            self._check_quantity(message.header.agent, message.body, op)
        elif isinstance(message.body, ReadingBody):
            _check_reading(message, op)
        return op

    def _check_quantity(self, agent: str, order: OrderBody, op: OpenInterval) -> None:
        """An order may not buy or sell more than the household's connection carries over
        the interval (the plausibility bound of its readings, :mod:`ledger.settlement`)."""
        if op.interval_s is None:
            return
        limit_w = self._limit_w(agent)
        limit_wh = energy_limit_wh(limit_w, op.interval_s)
        if order.quantity_wh > limit_wh:
            raise MessageError(
                RejectReason.BEYOND_CONNECTION,
                f"{order.quantity_wh} Wh is above the {limit_wh} Wh a connection of "
                f"{limit_w} W carries in {op.interval_s} s",
            )

    def _check_sender(
        self,
        message: SignedMessage,
        topic_agent: str | None,
        op: OpenInterval | None,
        verified: VerifyingKey | None,
    ) -> None:
        """Kind, market, key and signature (unless already checked with this very key),
        then duplicates and replays."""
        header = message.header
        if header.kind not in (EntryKind.READING, EntryKind.ORDER):
            raise MessageError(RejectReason.SCHEMA, f"households may not send {header.kind}")
        if header.market != self.market_id:
            raise MessageError(RejectReason.WRONG_MARKET, f"this is market {self.market_id}")
        if topic_agent is not None and topic_agent != header.agent:
            raise MessageError(RejectReason.KEY_MISMATCH, "sent on another household's topic")
        key = self._keyring.key_for(header.agent, header.kid)
        if verified is not key:  # a batch may have checked it already
            message.verify(key)
        last = self._last_seq.get(header.agent, 0)
        if header.seq <= last:
            self._check_earlier_seq(message, op, last)

    def _check_earlier_seq(
        self, message: SignedMessage, op: OpenInterval | None, last: int
    ) -> None:
        """A seq at or below the household's last accepted one: the very message accepted
        already is a redelivery; that seq accepted with other content is a replay; a
        message never accepted passes on (to the timing and slot checks) only when it
        fills a slot still empty: a backfill, or the open interval's own reading or
        order. The latter is a message sent before one with a higher seq that was
        accepted first: e.g. a reading a dying ledger acknowledged and never kept, sent
        again when the interval was reopened, behind the order the broker had queued
        (docs/protocol.md, "Replay")."""
        header = message.header
        seen = self._seen_id(header.agent, header.seq)
        if seen == message.message_id:
            raise RedeliveredError(RejectReason.DUPLICATE, f"seq {header.seq} was accepted already")
        if seen is not None:
            raise MessageError(
                RejectReason.REPLAY, f"seq {header.seq} was accepted already with other content"
            )
        if not (self._is_backfill(message, op) or _fills_open_slot(message, op)):
            raise MessageError(
                RejectReason.REPLAY, f"seq {header.seq} is not above the last one ({last})"
            )

    def _is_backfill(self, message: SignedMessage, op: OpenInterval | None) -> bool:
        """A reading for a closed interval that fills a gap an estimate stands in for."""
        header = message.header
        return (
            header.kind == EntryKind.READING
            and op is not None
            and header.interval < op.interval
            and self._awaits(header.agent, header.interval)
        )

    def _check_timing(self, message: SignedMessage, op: OpenInterval | None) -> OpenInterval:
        header = message.header
        if op is None or (header.interval < op.interval and not self._is_backfill(message, op)):
            raise MessageError(RejectReason.LATE, f"interval {header.interval} is closed")
        if header.interval > op.interval:
            raise MessageError(RejectReason.WRONG_INTERVAL, f"open interval is {op.interval}")
        if header.expires < op.interval:
            raise MessageError(RejectReason.EXPIRED, f"expired at {header.expires}")
        return op


def _fills_open_slot(message: SignedMessage, op: OpenInterval | None) -> bool:
    """A reading or order for the open interval whose household has none there yet."""
    header = message.header
    if op is None or header.interval != op.interval:
        return False
    slot = op.readings if isinstance(message.body, ReadingBody) else op.orders
    return header.agent not in slot


def _check_reading(message: SignedMessage, op: OpenInterval) -> None:
    """One reading per household and interval. Registers that went backwards are
    accepted (the signed reading is evidence) and the interval is flagged unsettled."""
    agent, interval = message.header.agent, message.header.interval
    if agent in op.readings if interval == op.interval else (agent, interval) in op.late:
        raise MessageError(RejectReason.DUPLICATE, "one reading per household and interval")
