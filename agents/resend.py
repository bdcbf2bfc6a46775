"""The interval the household agent trades, and whether it is opened again.

Pure state, no I/O. The agent (:mod:`agents.agent`) tells a :class:`TradedInterval`
which interval it acted on and the message id of that interval's announcement, which
intervals were announced cleared, and the signed bytes it published for the interval
it trades. It answers whether an announcement opens that interval once more and, when
one does, hands back the copies to send again. The rule is part of the wire contract:
docs/protocol.md, "A repeated open".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.messages import AnnouncementBody, Phase, SignedMessage

if TYPE_CHECKING:
    from broker.transport import Message

Copy = tuple[str, bytes]  # (topic, signed wire bytes) as published


class TradedInterval:
    """The interval being traded (its start, epoch s), the id of the announcement acted
    on, the latest interval announced cleared, and the copies kept for a resend."""

    def __init__(self) -> None:
        self.interval: int | None = None  # None: no interval opened yet
        self.announced_id: str | None = None  # message id of ``interval``'s announcement
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
        return True

    def clear(self, interval: int) -> None:
        """Note that ``interval`` was announced cleared."""
        self.cleared = interval if self.cleared is None else max(self.cleared, interval)

    def keep(self, interval: int, topic: str, wire: bytes) -> None:
        """Keep ``wire``, signed for ``interval`` and published on ``topic``, if
        ``interval`` is the one traded (a resend may follow); else drop it."""
        if interval == self.interval:
            self._kept.append((topic, wire))

    def opens_again(self, announcement: SignedMessage, delivery: Message) -> bool:
        """Whether ``announcement`` (delivered as ``delivery``) opens the interval
        being traded once more.

        That is an ``open`` for this very interval, not yet announced cleared, that the
        broker forwarded live (MQTT sets the RETAIN flag only on a copy sent because a
        subscription was made: the retained one) or whose message id is not the one
        acted on (announced again while the agent was disconnected). Wire contract:
        docs/protocol.md, "A repeated open".
        """
        body, interval = announcement.body, announcement.header.interval
        return (
            isinstance(body, AnnouncementBody)
            and body.phase is Phase.OPEN
            and interval == self.interval
            and (self.cleared is None or self.cleared < interval)
            and (not delivery.retain or announcement.message_id != self.announced_id)
        )

    def reopen(self, message_id: str) -> tuple[Copy, ...]:
        """Take the announcement ``message_id`` as the one acted on (a retained copy of
        it then opens nothing again) and return the copies to send again, in order."""
        self.announced_id = message_id
        return self.kept
