"""The whole log checked in the background while the ledger runs (``ledger run``).

At start the ledger checks what its restore reads (:mod:`ledger.startcheck`); the rest
of the log, everything a snapshot spares the restart, is checked here with the full
``ledger verify`` machinery (:func:`ledger.verify.verify_ledger`) up to the size the
ledger started with, in a child process (spawned, niced, one core, inline checks) that
opens the database read-only (:meth:`ledger.store.LedgerStore.read_only`), so the
market keeps running meanwhile. When the log holds and the restore started from a
snapshot, the child also replays the log up to the snapshot's size and compares the
state with the snapshot's: a snapshot that disagrees with a log that verifies (its
tree matches, but what it says of seqs, meters, keys or the last clearing does not)
would make the ledger admit and settle on a state the log does not hold.

How the result gates appends: the child sets a shared flag (a multiprocessing event)
the moment it finds damage, before it sends its report. :meth:`LogCheck.check`
raises :class:`DamageFound` once the flag is set; the operator calls it with its lease
check (:meth:`LogCheck.gate`) before each interval opens and when each gate closes,
just before the interval is written, so no close is written after the damage was found
(a close already past that check when the flag is set, a few milliseconds of writing,
completes). The watcher task also sets the operator's stop event, so an open gate
closes at once and is refused rather than waiting for its deadline. A snapshot that
disagrees is deleted when the check is closed (after the operator stopped, so no close
writes another one from the same state after it), and the next start replays the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from wattmesh.broker.keys import VerifyingKey
from wattmesh.ledger._restore import replay_state, snapshot_state
from wattmesh.ledger._snapshot import SnapshotError, encode_snapshot
from wattmesh.ledger.metering import MeteringConfig
from wattmesh.ledger.startcheck import LogDamaged
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger

__all__ = ["DamageFound", "first_damage", "start_log_check"]

_LOG = logging.getLogger(__name__)
_NICE = 10


class DamageFound(LogDamaged):
    """What the background check found: its first bad entry, as ``ledger verify``'s, or
    a snapshot that disagrees with the log (``first_bad_entry`` None)."""


class SnapshotDisagrees(DamageFound):
    """The state snapshot the restore used is not what the log (which verifies) holds."""

    def __str__(self) -> str:
        return self.problem


class Leadership(Protocol):
    def check(self) -> None: ...


@dataclass(frozen=True)
class LogCheckReport:
    """What the background check found: ``problem`` None when the log holds;
    ``snapshot_size`` set when the problem is the snapshot of that size."""

    entries: int
    seconds: float
    first_bad_entry: int | None = None
    problem: str | None = None
    snapshot_size: int | None = None


def check_log(
    url: str,
    size: int,
    operator_key: VerifyingKey,
    *,
    snapshot: tuple[int, bytes] | None = None,
    metering: MeteringConfig | None = None,
) -> LogCheckReport:
    """The full check of the first ``size`` entries of the ledger at ``url``, read-only,
    against ``operator_key`` (the configured one, not the database's); then, if the log
    holds, ``snapshot`` (tree size, data; the one the restore used) against a replay of
    the log up to its size."""
    start = time.perf_counter()
    store = LedgerStore.read_only(url)
    try:
        report = verify_ledger(store, operator_key, workers=1, size=size)
        disagrees = None
        if report.ok and snapshot is not None:
            disagrees = _snapshot_problem(store, metering, snapshot)
    finally:
        store.close()
    elapsed = time.perf_counter() - start
    if not report.ok:
        return LogCheckReport(report.entries, elapsed, report.first_bad_entry, report.problem)
    if disagrees is not None and snapshot is not None:
        return LogCheckReport(report.entries, elapsed, None, disagrees, snapshot[0])
    return LogCheckReport(report.entries, elapsed)


def _snapshot_problem(
    store: LedgerStore, metering: MeteringConfig | None, snapshot: tuple[int, bytes]
) -> str | None:
    """What ``snapshot`` holds that a replay of the log up to its size does not, or None
    (also when the restore would not have used it: it replayed the log then)."""
    try:
        used = snapshot_state(store, metering, snapshot)
    except SnapshotError:
        return None
    replayed = replay_state(store, metering, snapshot[0])
    mine, log = json.loads(encode_snapshot(used)), json.loads(encode_snapshot(replayed))
    differ = sorted(k for k in mine.keys() | log.keys() if mine.get(k) != log.get(k))
    if not differ:
        return None
    return (
        f"the state snapshot at size {snapshot[0]} disagrees with the log it was taken "
        f"from ({', '.join(differ)})"
    )


@dataclass(frozen=True)
class _Job:
    url: str
    size: int
    operator_der: bytes
    snapshot: tuple[int, bytes] | None
    metering: MeteringConfig | None


def _child(job: _Job, found: multiprocessing.synchronize.Event, out: Connection) -> None:
    # The ledger ends this process (close): a SIGINT or SIGTERM meant for the ledger's
    # process group must not end it first, or the ledger would take the missing report
    # for a failed check and refuse its last close.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    try:
        key = VerifyingKey.from_der(job.operator_der)
        report = check_log(job.url, job.size, key, snapshot=job.snapshot, metering=job.metering)
    except Exception as exc:  # any failure is reported: the ledger stops on it
        report = LogCheckReport(0, 0.0, None, f"the log check failed: {exc!r}"[:300])
    if report.problem is not None:
        found.set()  # first: the gate refuses the next close from now on
    out.send(report)
    out.close()


class LogCheck:
    """The background check of a ledger's first ``size`` entries (see the module doc)."""

    def __init__(
        self,
        url: str,
        size: int,
        operator_key: VerifyingKey,
        *,
        snapshot: tuple[int, bytes] | None = None,
        metering: MeteringConfig | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.size = size
        self._found = context.Event()
        self._reader, writer = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(_Job(url, size, operator_key.der(), snapshot, metering), self._found, writer),
            name="ledger-logcheck",
        )
        self._process.daemon = True
        self._process.start()
        writer.close()
        self.report: LogCheckReport | None = None

    def check(self) -> None:
        """DamageFound once the check has found damage (or could not run)."""
        if not self._found.is_set():
            return
        report = self.report
        if report is None and self._reader.poll(10):
            report = self.report = self._reader.recv()
        if report is None:
            raise DamageFound(None, "the background log check found damage")
        if report.snapshot_size is not None:
            raise SnapshotDisagrees(
                None, f"{report.problem}: it is deleted, the next start replays the log"
            )
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
        """Wait for the report and log it; on damage set ``stop`` (the gate refuses the
        close it brings)."""
        report = await self.wait()
        if report.problem is None:
            _LOG.info(
                "log check: the %d entries before this start verify (%.1f s in the background)",
                report.entries,
                report.seconds,
            )
            return report
        stop.set()
        return report

    def close(self, store: LedgerStore) -> None:
        """End the child if it still runs; if it found that the snapshot disagrees with
        the log, delete ``store``'s snapshot (call it once nothing more is written)."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._reader.close()
        if self.report is not None and self.report.snapshot_size is not None:
            store.drop_snapshots()


@dataclass(frozen=True)
class _Gate:
    log_check: LogCheck
    lease: Leadership

    def check(self) -> None:
        self.log_check.check()
        self.lease.check()


def start_log_check(
    store: LedgerStore,
    url: str,
    stop: asyncio.Event,
    metering: MeteringConfig | None,
    operator_key: VerifyingKey,
) -> tuple[LogCheck, asyncio.Task[LogCheckReport]]:
    """Start checking, in the background, the log at ``url`` as ``store`` holds it now
    (its size, and the snapshot the restore just used) against ``operator_key``; the
    check and the task that watches it (which sets ``stop`` on damage)."""
    size = store.size()
    log_check = LogCheck(
        url, size, operator_key, snapshot=store.latest_snapshot(), metering=metering
    )
    _LOG.info("log check: checking the %d entries before this start in the background", size)
    task = asyncio.create_task(log_check.watch(stop), name="ledger-logcheck")
    return log_check, task


def first_damage(url: str, found: LogDamaged, operator_key: VerifyingKey) -> LogDamaged:
    """The first bad entry of the ledger at ``url`` by the full check against
    ``operator_key`` (the start check stops at what it read first: a root that does not
    match names no entry), or ``found`` if the full check names none."""
    store = LedgerStore.read_only(url)
    try:
        report = verify_ledger(store, operator_key)
    finally:
        store.close()
    if report.ok or report.problem is None:
        return found
    return LogDamaged(report.first_bad_entry, report.problem)
