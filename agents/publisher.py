"""How the agent's signed messages reach the broker.

:class:`DirectPublisher` publishes at once and waits for the PUBACK, with numbers
from a :class:`agents.sequence.Sequence` (simulations and tests: nothing survives
the process). :class:`DurablePublisher` is the real agent's: every message goes
through the SQLite :class:`agents.outbox.Outbox` first.

DurablePublisher runs two tasks. The *committer* writes staged messages in group
commits, at most one per ``commit_interval_s`` (one fsync each), so that a burst of
messages costs one commit; a message submitted after a quiet spell is committed at
once. The *sender* publishes committed messages strictly one at a time in sequence
order, waits for the broker's PUBACK (the transport retries across reconnects), and
acknowledges each in the outbox; the deletions ride on the next commit. So a
message is on disk before it is published, it is published in order, and after a
broker outage or a restart the backlog is sent oldest first. Redelivery is possible
(a PUBACK lost with the connection, or a restart before the deletion was committed):
receivers must treat (agent, seq) as idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from agents.outbox import Outbox
from agents.sequence import Sequence
from broker.transport import Transport, TransportClosedError

_LOG = logging.getLogger(__name__)

DEFAULT_COMMIT_INTERVAL_S = 1.0


class Publisher(Protocol):
    async def submit(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Give ``build`` the next sequence number and publish its bytes; return the seq."""
        ...


class DirectPublisher:
    """Publish at once (QoS 1) and wait for the PUBACK; nothing is stored."""

    def __init__(self, transport: Transport, sequence: Sequence) -> None:
        self._transport = transport
        self._sequence = sequence

    async def submit(self, topic: str, build: Callable[[int], bytes]) -> int:
        seq = self._sequence.next()
        await self._transport.publish(topic, build(seq), qos=1)
        return seq


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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if commit_interval_s < 0:
            msg = f"commit_interval_s must be >= 0, got {commit_interval_s}"
            raise ValueError(msg)
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
            entry = self.outbox.next_ready()
            if entry is None:
                if self.outbox.pending == 0:
                    self._drained.set()
                self._committed.clear()
                await self._committed.wait()
                continue
            await self._transport.publish(entry.topic, entry.payload, qos=1)
            self.outbox.ack(entry.seq)
            self.sent += 1
            self._dirty.set()
