"""The operator's wall-clock schedule: pure maths over epoch seconds, and a Clock.

Intervals are aligned to multiples of ``interval_s`` in UTC epoch seconds: interval
``t`` runs from ``t`` to ``t + interval_s``. The operator opens ``t`` at its start and
closes the gate when every registered household has sent (or is offline), at the
latest at ``t + gate_timeout_s``. An interval is opened late (after a start-up, a
restart, or a close that overran) only within ``grace_s`` of its start; later than
that it is skipped and the operator waits for the next one. So ``0 <= grace_s <
gate_timeout_s <= interval_s``: a late-opened interval still has time to collect.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Clock", "Schedule", "SystemClock"]


class Clock(Protocol):
    """Wall-clock time in epoch seconds (UTC), and waiting for a point of it."""

    def now_s(self) -> float: ...

    async def sleep_until(self, epoch_s: float) -> None: ...


class SystemClock:
    """The real clock: ``time.time()``; waits with the event loop's timer."""

    def now_s(self) -> float:
        return time.time()

    async def sleep_until(self, epoch_s: float) -> None:
        # The loop's timer is monotonic; re-check against the wall clock, so a step of
        # the system clock while we wait shortens or extends the wait accordingly.
        remaining = epoch_s - time.time()
        while remaining > 0:
            await asyncio.sleep(remaining)
            remaining = epoch_s - time.time()


@dataclass(frozen=True)
class Schedule:
    """When intervals open and when their gates close at the latest (seconds)."""

    interval_s: int
    gate_timeout_s: float
    grace_s: float

    def __post_init__(self) -> None:
        if self.interval_s < 1:
            raise ValueError(f"interval_s must be at least 1, got {self.interval_s}")
        if not 0 < self.gate_timeout_s <= self.interval_s:
            raise ValueError(
                f"gate_timeout_s must lie in (0, interval_s = {self.interval_s}], "
                f"got {self.gate_timeout_s}"
            )
        if not 0 <= self.grace_s < self.gate_timeout_s:
            raise ValueError(
                f"grace_s must lie in [0, gate_timeout_s = {self.gate_timeout_s}), "
                f"got {self.grace_s}"
            )

    def start_of(self, now_s: float) -> int:
        """The start of the interval that contains ``now_s``."""
        return int(now_s // self.interval_s) * self.interval_s

    def deadline(self, interval: int) -> float:
        """The latest gate closure of ``interval`` (epoch s)."""
        return interval + self.gate_timeout_s

    def next_interval(self, now_s: float, last_closed: int | None) -> int:
        """The interval to open next: the current one if it is later than
        ``last_closed`` and at most ``grace_s`` old at ``now_s``, else the next start
        after ``now_s`` (and after ``last_closed``). Pure; the caller waits until it."""
        current = self.start_of(now_s)
        after_last = None if last_closed is None else last_closed + self.interval_s
        if (after_last is None or current >= after_last) and now_s - current <= self.grace_s:
            return current
        upcoming = current + self.interval_s
        if after_last is not None and after_last > upcoming:
            return after_last
        return upcoming

    def skipped(self, last_closed: int | None, chosen: int) -> int:
        """How many interval starts between ``last_closed`` and ``chosen`` pass unopened
        (0 on the first start of a market)."""
        if last_closed is None:
            return 0
        return max(0, (chosen - last_closed) // self.interval_s - 1)
