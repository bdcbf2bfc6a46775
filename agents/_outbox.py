"""The agent's durable, bounded outbox and sequence counter, in one SQLite file.

Every message the agent signs gets the next sequence number from here and is
*staged*; :meth:`Outbox.commit` writes all staged messages and the counter in one
transaction (group commit), and only committed messages are handed out for
publishing (:meth:`Outbox.next_ready`). A message leaves the outbox when the broker
acknowledged it (:meth:`Outbox.ack`, QoS 1 PUBACK) or when the bound is reached and
it is the oldest (:meth:`Outbox.add` drops it, counts it in :attr:`Outbox.dropped`
and logs it). Deletions are written by the next commit, so an acknowledgement costs
no extra write of its own. A copy of a message sent before (a resend, see
:meth:`agents._publisher.DurablePublisher.resend`) is an entry like any other: it
takes the next number, which then no message carries (a gap in the agent's
sequence numbers), and keeps the seq it was signed with in its payload.

Live entries always form one contiguous run of sequence numbers
``[floor, last_seq]``: messages are published in order (several may be in flight,
see :meth:`Outbox.ready_after`), acknowledged in order, and both acknowledgements
and drops remove from the old end.

Layout: one table ``outbox(seq, topic, payload)``; the row with seq 0 holds the
counter and the drop count, so a steady-state commit changes a single page. A second
table, ``readings``, keeps the agent's meter readings of the last 7 days for its own
forecast (:mod:`agents._selfcast`): a ring of fixed slots, one per interval, each
overwritten in place a week later (:meth:`Outbox.keep_reading`), written by the same
commit as the reading's message, so it costs no fsync of its own and one more page.

Durability: WAL journal with ``synchronous=FULL``, so every commit is one fsync of
the WAL and a committed message and its number survive a power cut (a Raspberry Pi
is usually switched off by pulling the plug). With ``synchronous=NORMAL`` the last
commits could vanish on power loss and the counter would then hand out numbers the
ledger has seen already. Callers bound the commit rate (see
:class:`agents._publisher.DurablePublisher`), which bounds the fsyncs.

Standard library only (``sqlite3``): the agent must not import SQLAlchemy.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Final

from wattmesh.agents._selfcast import HISTORY_S, Registers, ring_slots

_LOG = logging.getLogger(__name__)

DEFAULT_CAPACITY: Final = 100_000
"""Entries kept at most: about 28 h of one reading per second, 60 MB of disk."""

# Row 0 of the one table holds the counter and the drop count (as JSON), so that in
# the steady state (a handful of live rows, all in the table's root page) a commit
# that inserts a message, deletes the acknowledged one and advances the counter
# changes one page: one WAL frame per commit (see BENCHMARKS.md). A separate state
# table would add a second page to every commit.
_STATE_SEQ: Final = 0
# 2 KiB pages: the root page then holds the counter row and two ~600-byte messages
# (the new one and the acknowledged one it replaces) without splitting; 1 KiB pages
# split, 4 KiB ones write twice the bytes per frame (figures in BENCHMARKS.md).
_PAGE_SIZE: Final = 2048
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS outbox ("
    " seq INTEGER PRIMARY KEY,"
    " topic TEXT NOT NULL,"
    " payload BLOB NOT NULL)"
)
_READINGS_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS readings ("
    " slot INTEGER PRIMARY KEY,"
    " interval INTEGER NOT NULL,"
    " import_wh INTEGER NOT NULL,"
    " export_wh INTEGER NOT NULL,"
    " pv_wh INTEGER NOT NULL,"
    " battery_in_wh INTEGER NOT NULL,"
    " battery_out_wh INTEGER NOT NULL)"
)


@dataclass(frozen=True)
class Entry:
    """One signed message waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    payload: bytes


class Outbox:
    """Durable FIFO of signed messages plus the agent's sequence counter.

    Not thread-safe; one process owns the file. ``capacity`` bounds the live
    (unacknowledged) entries. ``min_last_seq`` raises the counter on open, e.g. to
    continue above a sequence number kept elsewhere before (a legacy state file).
    """

    def __init__(
        self, path: Path, *, capacity: int = DEFAULT_CAPACITY, min_last_seq: int = 0
    ) -> None:
        if capacity < 1:
            msg = f"outbox capacity must be >= 1, got {capacity}"
            raise ValueError(msg)
        self.path = path
        self.capacity = capacity
        self._db = sqlite3.connect(path, isolation_level=None)  # explicit transactions
        self._db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")  # only for a new file
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute(_SCHEMA)
        self._db.execute(_READINGS_SCHEMA)
        # Readings a week older than the newest: left in slots no longer written (the
        # market's interval_s changed); a no-op, writing nothing, otherwise.
        self._db.execute(
            "DELETE FROM readings WHERE interval < (SELECT MAX(interval) FROM readings) - ?",
            (HISTORY_S,),
        )
        self._db.execute(
            "INSERT OR IGNORE INTO outbox VALUES (?, 'state', ?)", (_STATE_SEQ, _state(0, 0))
        )
        (raw,) = self._db.execute(
            "SELECT payload FROM outbox WHERE seq = ?", (_STATE_SEQ,)
        ).fetchone()
        last_seq, dropped = _parse_state(bytes(raw))
        (lowest,) = self._db.execute(
            "SELECT MIN(seq) FROM outbox WHERE seq > ?", (_STATE_SEQ,)
        ).fetchone()
        self._last_seq: int = max(last_seq, min_last_seq)
        self._durable_seq = self._last_seq  # everything up to here is on disk
        self._dropped: int = dropped
        self._floor: int = int(lowest) if lowest is not None else self._last_seq + 1
        self._stored_floor = self._floor
        self._staged: list[Entry] = []
        self._readings: dict[int, Registers] = {}  # by slot, to write with the next commit
        self._state_dirty = self._last_seq != last_seq
        # A drop must be on disk before anything newer is published: otherwise a
        # crash would bring the dropped entry back and send it after a newer one.
        self._drop_unsaved = False
        self._last_drop_logged = 0
        self.commits = 0

    # ------------------------------------------------------------------ state

    @property
    def last_seq(self) -> int:
        """The highest sequence number handed out (committed or staged)."""
        return self._last_seq

    @property
    def pending(self) -> int:
        """Live entries: staged or committed, not yet acknowledged nor dropped."""
        return self._last_seq - self._floor + 1

    @property
    def dropped(self) -> int:
        """Entries removed because the bound was reached, over the file's lifetime."""
        return self._dropped

    @property
    def dirty(self) -> bool:
        """True when a commit would write something."""
        if self._staged or self._readings:
            return True
        return self._floor != self._stored_floor or self._state_dirty

    # ------------------------------------------------------------------ writing

    def add(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Assign the next sequence number, stage ``build(seq)`` for ``topic``; return seq.

        Staged entries are written by the next :meth:`commit`. If the outbox is full,
        the oldest entries are dropped first (counted and logged).
        """
        seq = self._last_seq + 1
        payload = build(seq)
        self._last_seq = seq
        self._staged.append(Entry(seq, topic, payload))
        overflow = self.pending - self.capacity
        if overflow > 0:
            self._drop_oldest(overflow)
        return seq

    def _drop_oldest(self, count: int) -> None:
        self._floor += count
        self._dropped += count
        self._state_dirty = True
        self._drop_unsaved = True
        self._staged = [e for e in self._staged if e.seq >= self._floor]
        if self._last_drop_logged == 0 or self._dropped - self._last_drop_logged >= 1000:
            self._last_drop_logged = self._dropped
            _LOG.warning(
                "outbox full (%d entries): dropped the oldest, %d dropped so far; "
                "oldest kept is seq %d",
                self.capacity,
                self._dropped,
                self._floor,
            )

    def commit(self) -> None:
        """Write staged entries, deletions and the counter in one transaction (one fsync)."""
        if not self.dirty:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO outbox (seq, topic, payload) VALUES (?, ?, ?)",
                [(e.seq, e.topic, e.payload) for e in self._staged],
            )
            if self._floor != self._stored_floor:
                db.execute(
                    "DELETE FROM outbox WHERE seq > ? AND seq < ?", (_STATE_SEQ, self._floor)
                )
            db.executemany(
                "INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(slot, *astuple(r)) for slot, r in self._readings.items()],
            )
            if self._state_dirty or self._staged or self._floor != self._stored_floor:
                db.execute(
                    "UPDATE outbox SET payload = ? WHERE seq = ?",
                    (_state(self._last_seq, self._dropped), _STATE_SEQ),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._durable_seq = self._last_seq
        self._stored_floor = self._floor
        self._staged = []
        self._readings = {}
        self._state_dirty = False
        self._drop_unsaved = False
        self.commits += 1

    def keep_reading(self, reading: Registers, interval_s: int) -> None:
        """Stage ``reading`` for the readings ring, written by the next :meth:`commit`
        in the slot of its interval (one per interval of ``interval_s``; the one it
        takes held the reading of 7 days and one interval before)."""
        slot = reading.interval // interval_s % ring_slots(interval_s)
        self._readings[slot] = reading

    def kept_readings(self) -> list[Registers]:
        """The readings ring as committed, oldest first (any ``interval_s``: the
        caller's :class:`agents._selfcast.ReadingRing` keeps what it needs)."""
        rows = self._db.execute(
            "SELECT interval, import_wh, export_wh, pv_wh, battery_in_wh, battery_out_wh"
            " FROM readings ORDER BY interval"
        ).fetchall()
        return [Registers(*(int(v) for v in row)) for row in rows]

    # ------------------------------------------------------------------ reading

    def next_ready(self) -> Entry | None:
        """The oldest live entry if it is committed (safe to publish), else None.

        None also while a drop is not committed yet (see :meth:`add`).
        """
        ready = self.ready_after(self._floor - 1, 1)
        return ready[0] if ready else None

    def ready_after(self, seq: int, limit: int) -> list[Entry]:
        """Up to ``limit`` live, committed entries above ``seq``, in sequence order.

        For a sender with several messages in flight: ``seq`` is the last one it has
        started. Empty while a drop is not committed yet (see :meth:`add`).
        """
        low = max(seq + 1, self._floor)
        if low > self._durable_seq or self._drop_unsaved or limit < 1:
            return []
        high = min(self._durable_seq, low + limit - 1)
        rows = self._db.execute(
            "SELECT seq, topic, payload FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (low, high),
        ).fetchall()
        if len(rows) != high - low + 1:  # cannot happen while the file is ours
            msg = f"outbox {self.path} lost entries between seq {low} and {high}"
            raise RuntimeError(msg)
        return [Entry(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def ack(self, seq: int) -> None:
        """The broker acknowledged ``seq``: remove it (and anything older).

        An entry dropped for the bound while it was in flight and then acknowledged
        was delivered after all: it no longer counts as dropped.
        """
        if seq < self._floor:
            if self._dropped > 0:
                self._dropped -= 1
                self._state_dirty = True
            return
        self._floor = seq + 1

    def close(self) -> None:
        """Commit what is staged and close the file."""
        self.commit()
        self._db.close()


def _state(last_seq: int, dropped: int) -> bytes:
    return json.dumps({"dropped": dropped, "last_seq": last_seq}).encode()


def _parse_state(raw: bytes) -> tuple[int, int]:
    state = json.loads(raw)
    return int(state["last_seq"]), int(state["dropped"])
