"""How the agent's signed messages reach the broker.

:class:`DirectPublisher` publishes at once and waits for the PUBACK, with numbers
from a :class:`agents.sequence.SeqSource` (simulations and tests: nothing survives
the process). :class:`DurablePublisher` is the real agent's: every message goes
through the SQLite :class:`agents._outbox.Outbox` first.

DurablePublisher runs two tasks. The *committer* writes staged messages in group
commits, at most one per ``commit_interval_s`` (one fsync each), so that a burst of
messages costs one commit; a message submitted after a quiet spell is committed at
once. The *sender* publishes committed messages in sequence order with up to
``max_in_flight`` of them awaiting the broker's PUBACK (a window, so that a backlog
costs one round trip per window rather than per message), and removes each from
the outbox on its own PUBACK, in order; the deletions ride on the next commit. When
the connection drops, the unacknowledged part of the window is resent in order on
the next connection (:class:`broker.transport.Link`: nothing is retried behind the
sender's back). So a message is on disk before it is published, the wire carries
first copies in sequence order, and after a broker outage or a restart the backlog
is sent oldest first, new messages behind it. Redelivery is possible (PUBACKs lost
with the connection, or a restart before the deletion was committed): receivers
must treat (agent, seq) as idempotent.

``resend`` queues bytes signed and sent before (same seq, same message id) once more,
behind everything queued: the agent does so when the ledger opens an interval again
(docs/protocol.md, "A repeated open").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

from wattmesh.agents._outbox import Entry, Outbox
from wattmesh.agents.sequence import SeqSource
from wattmesh.broker.transport import Link, Transport, TransportClosedError

_LOG = logging.getLogger(__name__)

DEFAULT_COMMIT_INTERVAL_S = 1.0
DEFAULT_MAX_IN_FLIGHT: Final = 64
"""Messages published and not yet acknowledged at most (the send window)."""


class Publisher(Protocol):
    async def submit(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Give ``build`` the next sequence number and publish its bytes; return the seq."""
        ...

    async def resend(self, topic: str, payload: bytes) -> None:
        """Publish ``payload``, a message submitted before, again, behind what is queued."""
        ...


class DirectPublisher:
    """Publish at once (QoS 1) and wait for the PUBACK; nothing is stored."""

    def __init__(self, transport: Transport, sequence: SeqSource) -> None:
        self._transport = transport
        self._sequence = sequence

    async def submit(self, topic: str, build: Callable[[int], bytes]) -> int:
        seq = self._sequence.next()
        await self._transport.publish(topic, build(seq), qos=1)
        return seq

    async def resend(self, topic: str, payload: bytes) -> None:
        await self._transport.publish(topic, payload, qos=1)


class DurablePublisher:
    """Store in the outbox, commit in groups, publish committed entries in order.

    Use as ``async with DurablePublisher(...)``; leaving stops the tasks and commits
    what is staged (call :meth:`flush` first to wait for the broker too).
    """

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        *,
        commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if commit_interval_s < 0:
            msg = f"commit_interval_s must be >= 0, got {commit_interval_s}"
            raise ValueError(msg)
        if max_in_flight < 1:
            msg = f"max_in_flight must be >= 1, got {max_in_flight}"
            raise ValueError(msg)
        self._max_in_flight = max_in_flight
        self.outbox = outbox
        self._transport = transport
        self._interval_s = commit_interval_s
        self._monotonic = monotonic
        self._last_commit = -float("inf")
        self._dirty = asyncio.Event()
        self._committed = asyncio.Event()
        self._drained = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        if outbox.dirty:
            self._dirty.set()
        self._committed.set()  # entries left over from a previous run are ready

    async def __aenter__(self) -> DurablePublisher:
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="outbox-committer"),
            asyncio.create_task(self._send_loop(), name="outbox-sender"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, TransportClosedError):
                await task
        self.outbox.commit()

    async def submit(self, topic: str, build: Callable[[int], bytes]) -> int:
        for task in self._tasks:  # a failed committer or sender must not go unnoticed
            if task.done() and not task.cancelled() and (error := task.exception()):
                raise error
        seq = self.outbox.add(topic, build)
        self._drained.clear()
        self._dirty.set()
        return seq

    async def resend(self, topic: str, payload: bytes) -> None:
        """Queue ``payload`` (signed before: it keeps its seq) as a new outbox entry.

        The entry takes the outbox's next number, which then no message carries: the
        agent's sequence numbers stay increasing, with a gap (the protocol allows
        gaps). So the copy is stored before it is sent and goes out in queue order,
        like every message.
        """
        await self.submit(topic, lambda _seq: payload)

    async def flush(self, timeout_s: float) -> bool:
        """Commit now and wait up to ``timeout_s`` until the broker acknowledged all.

        Returns True if the outbox is empty; False if entries remain (they stay on
        disk and are sent after the next start).
        """
        self._commit()
        if self.outbox.pending == 0:
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            self._commit()  # the last acknowledgements' deletions
        return True

    def _commit(self) -> None:
        self.outbox.commit()
        self._last_commit = self._monotonic()
        self._committed.set()

    async def _commit_loop(self) -> None:
        while True:
            await self._dirty.wait()
            wait_s = self._last_commit + self._interval_s - self._monotonic()
            if wait_s > 0:
                # Rate limit, not synchronisation: at most one fsync per interval.
                await asyncio.sleep(wait_s)
            self._dirty.clear()
            self._commit()

    async def _send_loop(self) -> None:
        while True:
            link = await self._transport.link()
            await self._send_on(link)

    async def _send_on(self, link: Link) -> None:
        """Publish committed entries on one connection until it is lost.

        Up to ``max_in_flight`` publishes are started in sequence order (tasks created
        in order reach the wire in order, see :mod:`broker._transport_link`); results
        are taken strictly in order, and an entry leaves the outbox on its own PUBACK.
        When the link is lost, this returns; the next link starts again at the oldest
        unacknowledged entry, so the wire order stays the sequence order, and entries
        the broker got without its PUBACK reaching us are sent again (redeliveries).
        """
        window: deque[tuple[Entry, asyncio.Task[bool]]] = deque()
        try:
            while True:
                room = self._max_in_flight - len(window)
                if room > 0:
                    after = window[-1][0].seq if window else 0  # 0: from the oldest
                    for entry in self.outbox.ready_after(after, room):
                        publish = link.publish(entry.topic, entry.payload, qos=1)
                        window.append((entry, asyncio.create_task(publish)))
                if not window:
                    if self.outbox.pending == 0:
                        self._drained.set()
                    self._committed.clear()
                    await self._committed.wait()
                    continue
                entry, head = window[0]
                if len(window) < self._max_in_flight and not head.done():
                    # Room in the window: also wake for entries committed meanwhile.
                    self._committed.clear()
                    more = asyncio.ensure_future(self._committed.wait())
                    try:
                        await asyncio.wait({head, more}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        more.cancel()
                    if not head.done():
                        continue
                if not await head:
                    return  # connection lost: the rest of the window is resent on the next
                window.popleft()
                self.outbox.ack(entry.seq)
                self.sent += 1
                self._dirty.set()
        finally:
            for _entry, task in window:
                task.cancel()
            await asyncio.gather(*(task for _entry, task in window), return_exceptions=True)
