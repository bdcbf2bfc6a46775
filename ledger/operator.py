"""The market operator on the wall clock: one interval after another, while leader.

:class:`MarketOperator` drives a :class:`ledger.service.LedgerService` on a
:class:`ledger.schedule.Schedule`: it waits for each interval's start (an injectable
:class:`ledger.schedule.Clock`), checks the leadership lease, runs the interval (open,
gate, clear, log, checkpoint, audit messages) with the gate closing at the schedule's
deadline at the latest, and writes one log line per interval (:func:`summary_line`),
whose figures it also publishes, signed and retained, on ``market/summary``
(:meth:`ledger.service.LedgerService.publish_summary`).
The line's counts (rejections, redeliveries, responses) are everything since the
previous line, so what arrives between a close and the next open is counted in the
next interval's line.
The lease is checked before each interval opens and again when its gate closes, just
before it is written: a lost lease (:class:`ledger.lease.LeaseLost`) ends :meth:`run`
without writing.

Stopping (:meth:`MarketOperator.run`'s ``stop`` event, set on SIGTERM): between
intervals it returns at once; while an interval is open it closes the gate at once
with what has arrived, so that everything accepted is logged and announced, then
returns. No interval is ever left half-written (the close is one transaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from wattmesh.broker.errors import RejectReason
from wattmesh.ledger.ledger import IntervalOutcome
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.ledger.schedule import Clock, Schedule
from wattmesh.ledger.service import LedgerService

__all__ = ["IntervalSummary", "MarketOperator"]

_LOG = logging.getLogger(__name__)


class Leadership(Protocol):
    """What the operator needs of :class:`ledger.lease.LeaderLease`."""

    def check(self) -> None: ...


@dataclass(frozen=True)
class IntervalSummary:
    """One closed interval as the operator's log line reports it."""

    interval: int
    households: int  # registered with a valid key
    orders: int
    readings: int
    trades: int
    volume_wh: int
    price_micro_per_kwh: int | None
    tree_size: int
    root: bytes
    gate_s: float  # from opening until the gate closed
    close_s: float  # clearing, logging, checkpoint and audit messages
    # Since the previous summary (also between intervals):
    rejections: dict[str, int] = field(default_factory=dict)  # per reason
    redeliveries: int = 0
    skipped: int = 0  # interval starts passed unopened before this one
    responses: int = 0  # rejections and audit answers sent (ledger._responder)
    limited: int = 0  # ... not sent: over the household's rate limit
    dropped: int = 0  # ... not sent: the queue was full, or sending failed
    audit_ignored: int = 0  # audit requests not answered (malformed, unknown household)


def summary_line(s: IntervalSummary) -> str:
    """``interval 1796141700 (2026-12-01T16:15:00Z): orders 5/6 ...``: one line."""
    when = datetime.fromtimestamp(s.interval, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    price = "-" if s.price_micro_per_kwh is None else str(s.price_micro_per_kwh)
    rejected = sum(s.rejections.values())
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(s.rejections.items()))
    line = (
        f"interval {s.interval} ({when}): orders {s.orders}/{s.households} "
        f"readings {s.readings}/{s.households} trades {s.trades} volume_wh {s.volume_wh} "
        f"price_micro_per_kwh {price} size {s.tree_size} root {s.root.hex()[:16]} "
        f"gate_s {s.gate_s:.3f} close_s {s.close_s:.3f} rejected {rejected}"
    )
    if reasons:
        line += f" ({reasons})"
    line += f" redelivered {s.redeliveries}"
    line += (
        f" responses {s.responses} limited {s.limited} dropped {s.dropped}"
        f" audit_ignored {s.audit_ignored}"
    )
    if s.skipped:
        line += f" skipped {s.skipped}"
    return line


def summarize(
    outcome: IntervalOutcome,
    *,
    households: int,
    gate_s: float,
    close_s: float,
    rejections: Counter[RejectReason],
    redeliveries: int,
    skipped: int,
    responses: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> IntervalSummary:
    """``responses``: sent, limited, dropped, audit_ignored (as
    :meth:`ledger._responder.ResponseCounts.as_tuple`)."""
    sent, limited, dropped, audit_ignored = responses
    return IntervalSummary(
        interval=outcome.interval,
        households=households,
        orders=outcome.orders,
        readings=outcome.readings,
        trades=len(outcome.clearing.fills),
        volume_wh=outcome.clearing.volume_wh,
        price_micro_per_kwh=outcome.clearing.price_micro_per_kwh,
        tree_size=outcome.checkpoint.tree_size,
        root=outcome.checkpoint.root,
        gate_s=gate_s,
        close_s=close_s,
        rejections={str(r): n for r, n in rejections.items() if n > 0},
        redeliveries=redeliveries,
        skipped=skipped,
        responses=sent,
        limited=limited,
        dropped=dropped,
        audit_ignored=audit_ignored,
    )


@dataclass(frozen=True)
class _Counters:
    """The service's growing counters at one moment (the previous summary's)."""

    rejections: Counter[RejectReason]
    redeliveries: int
    responses: tuple[int, int, int, int]

    @classmethod
    def of(cls, service: LedgerService) -> _Counters:
        ledger = service.ledger
        return cls(
            Counter(ledger.rejections), ledger.redeliveries, service.responses.counts.as_tuple()
        )


class MarketOperator:
    """Runs ``service``'s market on ``schedule`` until stopped (see the module doc)."""

    def __init__(
        self,
        service: LedgerService,
        schedule: Schedule,
        tariffs: TariffSchedule,
        *,
        clock: Clock,
        lease: Leadership,
        on_interval: Callable[[IntervalSummary], None] | None = None,
    ) -> None:
        self.service = service
        self.schedule = schedule
        self.tariffs = tariffs
        self.clock = clock
        self.lease = lease
        self.on_interval = on_interval
        self.summaries: list[IntervalSummary] = []
        self._counted = _Counters.of(service)  # what the summaries so far reported

    async def run(self, stop: asyncio.Event) -> None:
        """Open, close and report intervals until ``stop`` is set; LeaseLost ends it."""
        ledger = self.service.ledger
        while not stop.is_set():
            last = ledger.last_closed_interval
            interval = self.schedule.next_interval(self.clock.now_s(), last)
            if not await self._wait_for(interval, stop):
                return
            self.lease.check()  # LeaseLost: another process may be acting (checked again
            # when the gate closes, before the interval is written)
            summary = await self._run_interval(
                interval, stop, skipped=self.schedule.skipped(last, interval)
            )
            self.summaries.append(summary)
            _LOG.info("%s", summary_line(summary))
            if self.on_interval is not None:
                self.on_interval(summary)

    async def _wait_for(self, interval: int, stop: asyncio.Event) -> bool:
        """Wait until ``interval`` starts; False if stopped first."""
        sleeper = asyncio.ensure_future(self.clock.sleep_until(interval))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopped):
                task.cancel()
            await asyncio.gather(sleeper, stopped, return_exceptions=True)
        return not stop.is_set()

    async def _run_interval(
        self, interval: int, stop: asyncio.Event, *, skipped: int
    ) -> IntervalSummary:
        service, ledger = self.service, self.service.ledger
        loop = asyncio.get_running_loop()
        households = len(ledger.keys)
        timeout_s = max(0.0, self.schedule.deadline(interval) - self.clock.now_s())
        opened = loop.time()
        gate_closed: list[float] = []

        def before_close() -> None:
            gate_closed.append(loop.time())
            self.lease.check()  # LeaseLost: the interval is not written

        task = asyncio.ensure_future(
            service.run_interval(
                interval,
                self.tariffs.at(interval),
                gate_timeout_s=timeout_s,
                on_gate_closed=before_close,
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                _LOG.info("stopping: closing the gate of interval %d now", interval)
                service.close_gate_now()
            outcome = await task
        finally:
            for pending in (task, stopped):
                pending.cancel()  # no-op when done; a close in progress is synchronous
            await asyncio.gather(task, stopped, return_exceptions=True)
        done = loop.time()
        closed_at = gate_closed[0] if gate_closed else done
        before, now = self._counted, _Counters.of(service)
        self._counted = now
        summary = summarize(
            outcome,
            households=households,
            gate_s=closed_at - opened,
            close_s=done - closed_at,
            rejections=now.rejections - before.rejections,
            redeliveries=now.redeliveries - before.redeliveries,
            skipped=skipped,
            responses=(
                now.responses[0] - before.responses[0],
                now.responses[1] - before.responses[1],
                now.responses[2] - before.responses[2],
                now.responses[3] - before.responses[3],
            ),
        )
        # The summary on the bus too (retained, signed: the dashboard's rejections).
        await service.publish_summary(
            outcome,
            households=households,
            rejections=summary.rejections,
            redeliveries=summary.redeliveries,
        )
        return summary
