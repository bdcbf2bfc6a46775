"""The interval the household agent trades, and whether it is opened again.

Pure state, no I/O. The agent (:mod:`agents.agent`) tells a :class:`TradedInterval`
which interval it acted on and the message ids of that interval's ``open``
announcements it acted on, which intervals were announced cleared, and the signed
bytes it published for the interval it trades. It answers whether an announcement
opens that interval once more (an ``open`` with a message id not acted on yet: a
reopen always has a new one) and, when one does, hands back the copies to send again.
A copy of an ``open`` acted on, live or retained (the operator's publish retried, or
anyone on the broker replaying the genuine bytes), opens nothing again. The rule is
part of the wire contract: docs/protocol.md, "A repeated open".
"""

from __future__ import annotations

from wattmesh.broker.messages import AnnouncementBody, Phase, SignedMessage

Copy = tuple[str, bytes]  # (topic, signed wire bytes) as published
# Ids of the traded interval's opens remembered at most (the oldest is forgotten
# first). With the operator's key only its own opens get here (an interval is reopened
# once per ledger restart); without one, anyone's, so the number is bounded.
MAX_OPENS_REMEMBERED = 16


class TradedInterval:
    """The interval being traded (its start, epoch s), the id of the announcement acted
    on, the latest interval announced cleared, and the copies kept for a resend."""

    def __init__(self) -> None:
        self.interval: int | None = None  # None: no interval opened yet
        self.announced_id: str | None = None  # message id of ``interval``'s announcement
        # ... and of every open of ``interval`` acted on (insertion-ordered, bounded).
        self._acted: dict[str, None] = {}
        self.cleared: int | None = None  # the latest interval announced cleared
        self._kept: list[Copy] = []

    @property
    def kept(self) -> tuple[Copy, ...]:
        """What was published for ``interval`` so far, in order: (topic, wire bytes)."""
        return tuple(self._kept)

    def begin(self, interval: int, message_id: str) -> bool:
        """Trade ``interval``, announced (open or closed) by message ``message_id``.

        False, and nothing changes, when ``interval`` is not after the one traded (an
        older interval's announcement, or a copy of the one acted on). Otherwise the
        copies kept for the previous interval are dropped.
        """
        if self.interval is not None and interval <= self.interval:
            return False
        self.interval, self.announced_id, self._kept = interval, message_id, []
        self._acted = {message_id: None}
        return True

    def clear(self, interval: int) -> None:
        """Note that ``interval`` was announced cleared."""
        self.cleared = interval if self.cleared is None else max(self.cleared, interval)

    def keep(self, interval: int, topic: str, wire: bytes) -> None:
        """Keep ``wire``, signed for ``interval`` and published on ``topic``, if
        ``interval`` is the one traded (a resend may follow); else drop it."""
        if interval == self.interval:
            self._kept.append((topic, wire))

    def opens_again(self, announcement: SignedMessage) -> bool:
        """Whether ``announcement`` (delivered live or as the retained copy: the same
        either way) opens the interval being traded once more.

        That is an ``open`` for this very interval, not yet announced cleared, whose
        message id is not one of the opens of the interval acted on: a ledger that opens
        the interval again (restart, fail-over) announces it with a new id, live or, to
        an agent that was disconnected, as the retained copy. A copy of an open acted
        on, live or retained, is not a reopen: the operator's publish retried, a
        reconnect's retained copy, or anyone on the broker replaying the genuine bytes
        (which must not make the agent send its messages again and again). Wire
        contract: docs/protocol.md, "A repeated open".
        """
        body, interval = announcement.body, announcement.header.interval
        return (
            isinstance(body, AnnouncementBody)
            and body.phase is Phase.OPEN
            and interval == self.interval
            and (self.cleared is None or self.cleared < interval)
            and announcement.message_id not in self._acted
        )

    def reopen(self, message_id: str) -> tuple[Copy, ...]:
        """Take the announcement ``message_id`` as the one acted on (a copy of it, or of
        an open acted on before, then opens nothing again) and return the copies to
        send again, in order."""
        self.announced_id = message_id
        self._acted[message_id] = None
        while len(self._acted) > MAX_OPENS_REMEMBERED:
            del self._acted[next(iter(self._acted))]
        return self.kept
