"""When the household agent reports its diagnostics, and sending them in the background.

:class:`ReportSchedule` is pure: it decides whether a report is due, at most once per
``interval_s`` unless the :class:`Verdict` (clock, outbox drops, audit alarms, the
forecast orders use) changed. :class:`DiagnosticsSender` publishes the report
(retained, QoS 1) once the transport is connected, one at a time: a report asked for
while another waits for the broker is sent after it, so the last change always goes
out. What the report says:
docs/protocol.md, "Diagnostics"; the agent builds it (:mod:`agents.agent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import NamedTuple

from wattmesh.broker.transport import Transport, TransportClosedError


class Verdict(NamedTuple):
    """What, when it changes, is reported at once."""

    clock_ok: bool
    outbox_dropped: int  # entries dropped by the outbox
    alarms: int  # audit alarms raised
    forecast: str | None = None  # what the last order's forecast was (None: no order yet)


class ReportSchedule:
    """Whether a report is due: the first, one ``interval_s`` (s) after the last, or
    one whose verdict differs from the last one reported."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.reported_at_s: float | None = None  # the caller's clock (s); None: never
        self.reported: Verdict | None = None

    def due(self, now_s: float, verdict: Verdict) -> bool:
        """Whether to report ``verdict`` at ``now_s``; when True, it counts as reported."""
        at = self.reported_at_s
        if at is not None and now_s - at < self.interval_s and verdict == self.reported:
            return False
        self.reported_at_s, self.reported = now_s, verdict
        return True


class DiagnosticsSender:
    """Publishes ``build()`` as JSON on ``topic`` (retained, QoS 1) in the background.

    At most one report waits for the broker; it is built when it can be sent, and one
    asked for meanwhile is sent after it (so the last change is reported).
    """

    def __init__(
        self, transport: Transport, topic: str, build: Callable[[], dict[str, object]]
    ) -> None:
        self._transport = transport
        self._topic = topic
        self._build = build
        self._task: asyncio.Task[None] | None = None
        self._again = False  # a report asked for while one was on its way

    def send(self) -> None:
        """Send a report once connected (in the running loop's background)."""
        if self._task is not None and not self._task.done():
            # One is on its way, built before what changed now: it sends another.
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._send())

    async def stop(self) -> None:
        """Cancel the report on its way, if any, and wait until it has stopped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _send(self) -> None:
        again = True
        while again:
            self._again = False
            with contextlib.suppress(TransportClosedError):
                await self._transport.wait_connected()
                payload = json.dumps(self._build(), sort_keys=True).encode()
                await self._transport.publish(self._topic, payload, qos=1, retain=True)
            again = self._again  # asked for again while this one was sent
