"""The household's signed online/offline status and its MQTT last will.

``online`` when its agent connects, ``offline`` as its MQTT last will and before a
clean shutdown (docs/protocol.md, "Status").

A status is a signed ``status`` message, so nobody but the household can say it is
offline. Its ``seq`` orders the household's statuses: the ledger ignores one that is
not above the last it accepted, so a replayed old ``offline`` changes nothing. Each
connection gets its own pair, built before it connects: ``online`` with seq N (sent
on connect) and the will ``offline`` with N + 1; a clean shutdown's ``offline`` takes
the next. The seqs are the wall clock in microseconds (or the last one plus 1 if
that is higher): rising across connections and restarts with nothing stored, and
apart from the seqs of readings and orders, which the outbox numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Presence, StatusBody, sign_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import ConnectMessages, Will

__all__ = ["StatusSigner"]


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class StatusSigner:
    """Signs one household's statuses with rising seqs."""

    key: SigningKey
    topics: Topics
    agent_id: str
    clock_us: Callable[[], int] = _now_us
    last_seq: int = field(default=0)

    @property
    def topic(self) -> str:
        return self.topics.status(self.agent_id)

    def sign(self, state: Presence) -> bytes:
        """A signed status with the next seq."""
        self.last_seq = max(self.last_seq + 1, self.clock_us())
        return sign_message(
            self.key,
            StatusBody(state),
            market=self.topics.market_id,
            interval=0,
            agent=self.agent_id,
            seq=self.last_seq,
            expires=0,
        ).to_wire()

    def connect_messages(self) -> ConnectMessages:
        """For one connection: ``online`` (seq N) published on connect, retained, and
        the last will ``offline`` (N + 1), retained."""
        online = self.sign(Presence.ONLINE)
        will = self.sign(Presence.OFFLINE)
        return ConnectMessages(
            will=Will(self.topic, will, qos=1, retain=True),
            publish=((self.topic, online, 1, True),),
        )
