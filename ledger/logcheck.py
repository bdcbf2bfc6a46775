"""The whole log checked in the background while the ledger runs (``ledger run``).

At start the ledger checks what its restore reads (:mod:`ledger.startcheck`); the rest
of the log, everything a snapshot spares the restart, is checked here with the full
``ledger verify`` machinery (:func:`ledger.verify.verify_ledger`) up to the size the
ledger started with, in a child process (spawned, niced, one core, inline checks) that
opens the database read-only (:meth:`ledger.store.LedgerStore.read_only`), so the
market keeps running meanwhile.

How the result gates appends: the child sets a shared flag (a multiprocessing event)
the moment it finds damage, before it sends its report. :meth:`LogCheck.check`
raises :class:`ledger.startcheck.LogDamaged` once the flag is set; the operator calls
it with its lease check (:meth:`LogCheck.gate`) before each interval opens and when
each gate closes, just before the interval is written, so no close is written after
the damage was found (a close already past that check when the flag is set, a few
milliseconds of writing, completes). The watcher task also sets the operator's stop
event, so an open gate closes at once and is refused rather than waiting for its
deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from ledger.startcheck import LogDamaged
from ledger.store import LedgerStore
from ledger.verify import verify_ledger

_LOG = logging.getLogger(__name__)
_NICE = 10


class DamageFound(LogDamaged):
    """What the background check found: its first bad entry, as ``ledger verify``'s."""


class Leadership(Protocol):
    def check(self) -> None: ...


@dataclass(frozen=True)
class LogCheckReport:
    """What the background check found: ``problem`` None when the log holds."""

    entries: int
    seconds: float
    first_bad_entry: int | None = None
    problem: str | None = None


def check_log(url: str, size: int) -> LogCheckReport:
    """The full check of the first ``size`` entries of the ledger at ``url``, read-only."""
    start = time.perf_counter()
    store = LedgerStore.read_only(url)
    try:
        report = verify_ledger(store, workers=1, size=size)
    finally:
        store.close()
    elapsed = time.perf_counter() - start
    if report.ok:
        return LogCheckReport(report.entries, elapsed)
    return LogCheckReport(report.entries, elapsed, report.first_bad_entry, report.problem)


def _child(url: str, size: int, found: multiprocessing.synchronize.Event, out: Connection) -> None:
    # The ledger ends this process (close): a SIGINT or SIGTERM meant for the ledger's
    # process group must not end it first, or the ledger would take the missing report
    # for a failed check and refuse its last close.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    try:
        report = check_log(url, size)
    except Exception as exc:  # any failure is reported: the ledger stops on it
        report = LogCheckReport(0, 0.0, None, f"the log check failed: {exc!r}"[:300])
    if report.problem is not None:
        found.set()  # first: the gate refuses the next close from now on
    out.send(report)
    out.close()


class LogCheck:
    """The background check of a ledger's first ``size`` entries (see the module doc)."""

    def __init__(self, url: str, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.size = size
        self._found = context.Event()
        self._reader, writer = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(url, size, self._found, writer), name="ledger-logcheck"
        )
        self._process.daemon = True
        self._process.start()
        writer.close()
        self.report: LogCheckReport | None = None

    def check(self) -> None:
        """LogDamaged once the check has found damage (or could not run)."""
        if not self._found.is_set():
            return
        report = self.report
        if report is None and self._reader.poll(10):
            report = self.report = self._reader.recv()
        if report is None:
            raise DamageFound(None, "the background log check found damage")
        raise DamageFound(report.first_bad_entry, f"{report.problem} (background check)")

    def gate(self, lease: Leadership) -> Leadership:
        """``lease`` checked after this check: what the operator calls before it opens
        an interval and before it writes one."""
        return _Gate(self, lease)

    async def wait(self) -> LogCheckReport:
        """The report, once the child sends it (a child that dies without one is a
        failed check)."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self._reader.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        if self.report is None:
            try:
                self.report = self._reader.recv()
            except EOFError:
                self.report = LogCheckReport(0, 0.0, None, "the log check ended without a report")
                self._found.set()
        return self.report

    async def watch(self, stop: asyncio.Event) -> LogCheckReport:
        """Wait for the report, log it; on damage set ``stop`` (the gate refuses the
        close it brings)."""
        report = await self.wait()
        if report.problem is None:
            _LOG.info(
                "log check: the %d entries before this start verify (%.1f s in the background)",
                report.entries,
                report.seconds,
            )
        else:
            stop.set()
        return report

    def close(self) -> None:
        """End the child if it still runs."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._reader.close()


@dataclass(frozen=True)
class _Gate:
    log_check: LogCheck
    lease: Leadership

    def check(self) -> None:
        self.log_check.check()
        self.lease.check()


def start_log_check(
    url: str, size: int, stop: asyncio.Event
) -> tuple[LogCheck, asyncio.Task[LogCheckReport]]:
    """Start checking the first ``size`` entries at ``url`` in the background; the
    check and the task that watches it (which sets ``stop`` on damage)."""
    log_check = LogCheck(url, size)
    _LOG.info("log check: checking the %d entries before this start in the background", size)
    return log_check, asyncio.create_task(log_check.watch(stop), name="ledger-logcheck")


def first_damage(url: str, found: LogDamaged) -> LogDamaged:
    """The first bad entry of the ledger at ``url`` by the full check (the start check
    stops at what it read first: a root that does not match names no entry), or
    ``found`` if the full check names none."""
    store = LedgerStore.read_only(url)
    try:
        report = verify_ledger(store)
    finally:
        store.close()
    if report.ok or report.problem is None:
        return found
    return LogDamaged(report.first_bad_entry, report.problem)
