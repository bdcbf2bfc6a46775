"""Households' signed status: which ones the gate need not wait for.

And why a replayed old status changes nothing, also after a restart.

A household's status (``online``/``offline``, :class:`broker.messages.StatusBody`) is
signed by its key; its seqs rise across connections (docs/protocol.md, "Status").
:class:`Statuses` (pure) takes a status only if it decodes, names the topic's
household and this market, verifies with the household's key and its seq is above
the last one taken from that household (compared before the signature is checked);
a copy of the last one taken (the retained copy a resubscription brings, a
redelivery) is no news and no error. Each household's statuses are judged a few at a
time (a token bucket, before anything else): a flood on its status topic is dropped
undecoded (``status_limited``) instead of costing a decode and an ECDSA verify each
on the ingest's event loop, in line before the readings and orders.

Anyone can keep a genuine ``offline`` (every household's last will and clean
shutdown leave one retained on the broker) and publish it again later, retained, in
place of the household's ``online``. A running ledger refuses it by its seq; a
ledger that only remembered seqs in memory took it after its next restart, with
every household's, and closed each gate at once without them. So the last status
taken from each household is kept in the database (:class:`StatusStore`, table
``household_status``: not part of the log, like the intake), and a new process (a
restart, a standby taking over) takes those first: the floor holds across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Column, LargeBinary
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import Presence, SignedMessage, StatusBody, decode_message
from wattmesh.ledger._responder import TokenBuckets

STATUS_TABLE = "household_status"
# Statuses of one household judged: at most this many at once, then one per
# STATUS_CHECK_EVERY_S. A household sends two statuses per connection; a flood on its
# status topic (anyone can publish there; each status judged costs a decode and, naming
# the household's key id, an ECDSA verify on the ingest's event loop, in line before the
# readings and orders) gets this many judged and is otherwise dropped undecoded.
STATUS_CHECK_BURST: Final = 10
STATUS_CHECK_EVERY_S: Final = 10.0


class StatusRow(SQLModel, table=True):
    """The signed bytes of the last status the ledger took from a household."""

    __tablename__ = STATUS_TABLE

    agent: str = Field(primary_key=True, max_length=64)
    wire: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class StatusStore:
    """The ``household_status`` table of a ledger database (created if it lacks it)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[STATUS_TABLE]])

    def keep(self, agent: str, wire: bytes) -> None:
        """Keep ``wire`` as ``agent``'s last status taken, in place of the one before."""
        with Session(self.engine) as session:
            session.merge(StatusRow(agent=agent, wire=wire))
            session.commit()

    def kept(self) -> list[tuple[str, bytes]]:
        """``(agent, signed status)`` of each household with a status kept."""
        with Session(self.engine) as session:
            rows = session.exec(select(StatusRow).order_by(StatusRow.agent))
            return [(row.agent, bytes(row.wire)) for row in rows]


@dataclass
class Statuses:
    """The last status taken per household and the households it says are offline."""

    market_id: str
    offline: set[str] = field(default_factory=set)
    _last: dict[str, SignedMessage] = field(default_factory=dict)  # per registered household
    # Statuses judged per registered household (keys: households with a valid key).
    _checks: TokenBuckets = field(
        default_factory=lambda: TokenBuckets(STATUS_CHECK_BURST, 1.0 / STATUS_CHECK_EVERY_S)
    )

    def take(self, agent: str, payload: bytes, key: VerifyingKey | None, now_s: float) -> bool:
        """Take ``payload``, a status received on ``agent``'s topic at ``now_s``
        (monotonic s), checked with the household's valid key (None: it has none).
        True if taken; False for a copy of the last status taken (changes nothing);
        raise MessageError (with the reason to count) for anything else, which changes
        nothing either: also a status beyond the household's budget
        (``status_limited``: not even decoded), and a seq not above the last one taken
        (``replay``, whatever its signature: not verified)."""
        if key is None:
            raise MessageError(RejectReason.UNKNOWN_KEY, "no valid key for this household")
        if not self._checks.take(agent, now_s):
            raise MessageError(RejectReason.STATUS_LIMITED, "over its budget of statuses")
        message = decode_message(payload)
        body = message.body_as(StatusBody)
        header = message.header
        if header.agent != agent:
            raise MessageError(RejectReason.KEY_MISMATCH, "topic names another household")
        if header.market != self.market_id:
            raise MessageError(RejectReason.WRONG_MARKET, f"market {header.market!r}")
        last = self._last.get(agent)
        if last is not None and message.message_id == last.message_id:
            return False
        if last is not None and header.seq <= last.header.seq:
            raise MessageError(RejectReason.REPLAY, "status seq not above the last one")
        message.verify(key)
        self._last[agent] = message
        if body.state is Presence.OFFLINE:
            self.offline.add(agent)
        else:
            self.offline.discard(agent)
        return True
