"""The agent's SQLite outbox: numbering, durability, order, the bound (real SQLite)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.agents._clock import EARLIEST_PLAUSIBLE_S, assess_clock
from wattmesh.agents._outbox import Entry, Outbox
from wattmesh.agents._selfcast import Registers, ring_slots

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = 1_764_547_200  # 2025-12-01 00:00 UTC


def _payload(seq: int) -> bytes:
    return f"message {seq}".encode()


def _drain(outbox: Outbox) -> list[int]:
    """Publish-and-acknowledge everything ready, as the sender does; the seqs in order."""
    sent = []
    while (entry := outbox.next_ready()) is not None:
        assert entry.payload == _payload(entry.seq)
        sent.append(entry.seq)
        outbox.ack(entry.seq)
    return sent


def test_numbers_rise_across_reopen_and_only_committed_entries_are_ready(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    assert outbox.add("t/a", _payload) == 1
    assert outbox.add("t/b", _payload) == 2
    assert outbox.next_ready() is None  # staged, not on disk: must not be published
    outbox.commit()
    assert outbox.next_ready() == Entry(1, "t/a", b"message 1")
    outbox.close()

    again = Outbox(path)
    assert again.last_seq == 2
    assert again.pending == 2
    assert _drain(again) == [1, 2]
    assert again.add("t/a", _payload) == 3
    again.close()


_CRASH = """
import os, sys
from pathlib import Path
from wattmesh.agents._outbox import Outbox

outbox = Outbox(Path(sys.argv[1]))
for _ in range(3):
    outbox.add("t", lambda seq: f"message {seq}".encode())
outbox.commit()
outbox.add("t", lambda seq: b"never committed")
os._exit(9)  # no close, no commit: like a crash or SIGKILL
"""


def test_a_crash_keeps_committed_entries_and_forgets_only_unpublished_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    child = subprocess.run(
        [sys.executable, "-c", _CRASH, str(path)], cwd=REPO_ROOT, check=False, timeout=30
    )
    assert child.returncode == 9
    outbox = Outbox(path)
    # Seq 4 was never committed, hence never published: handing it out again is safe.
    assert outbox.last_seq == 3
    assert _drain(outbox) == [1, 2, 3]
    assert outbox.add("t", _payload) == 4


def test_acknowledged_entries_come_back_unless_a_commit_wrote_their_deletion(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    for _ in range(3):
        outbox.add("t", _payload)
    outbox.commit()
    assert _drain(outbox) == [1, 2, 3]
    assert outbox.pending == 0
    assert outbox.dirty  # the deletions are not on disk yet
    outbox._db.close()  # gone without the trailing commit (a crash)

    again = Outbox(path)
    assert _drain(again) == [1, 2, 3]  # at-least-once: redelivered
    again.commit()
    again.close()
    assert Outbox(path).pending == 0


def test_the_bound_drops_the_oldest_counts_it_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, capacity=3)
    with caplog.at_level(logging.WARNING, logger="wattmesh.agents._outbox"):
        for _ in range(5):
            outbox.add("t", _payload)
    assert outbox.dropped == 2
    assert outbox.pending == 3
    # The first drop is logged at once, later ones every 1000 (the counter is exact).
    assert [r.getMessage() for r in caplog.records] == [
        "outbox full (3 entries): dropped the oldest, 1 dropped so far; oldest kept is seq 2"
    ]
    outbox.commit()
    outbox.close()
    again = Outbox(path, capacity=3)
    assert again.dropped == 2  # survives a restart
    assert _drain(again) == [3, 4, 5]


def test_an_entry_dropped_in_flight_and_then_acknowledged_is_not_counted_lost(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "outbox.db", capacity=2)
    outbox.add("t", _payload)
    outbox.add("t", _payload)
    outbox.commit()
    in_flight = outbox.next_ready()
    assert in_flight is not None
    assert in_flight.seq == 1
    outbox.add("t", _payload)  # full: drops seq 1 although it is being published
    assert outbox.dropped == 1
    outbox.ack(in_flight.seq)  # ... and the broker acknowledged it after all
    assert outbox.dropped == 0
    outbox.commit()
    assert _drain(outbox) == [2, 3]


def test_ready_after_hands_out_committed_entries_in_order_for_a_window(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", capacity=10)
    for _ in range(5):
        outbox.add("t", _payload)
    assert outbox.ready_after(0, 3) == []  # staged only
    outbox.commit()
    outbox.add("t", _payload)  # seq 6: staged, not ready
    assert [e.seq for e in outbox.ready_after(0, 3)] == [1, 2, 3]
    assert [e.seq for e in outbox.ready_after(3, 10)] == [4, 5]  # stops at the committed end
    assert outbox.ready_after(5, 10) == []
    assert outbox.ready_after(0, 0) == []
    outbox.ack(1)
    outbox.ack(2)
    assert [e.seq for e in outbox.ready_after(0, 10)] == [3, 4, 5]  # from the oldest live
    assert outbox.ready_after(4, 1) == [Entry(5, "t", b"message 5")]
    for _ in range(8):  # seq 7..14: full at 10 live entries, drops 3 and 4
        outbox.add("t", _payload)
    assert outbox.dropped == 2
    assert outbox.ready_after(0, 10) == []  # the drop is not on disk yet
    outbox.commit()
    assert [e.seq for e in outbox.ready_after(0, 3)] == [5, 6, 7]
    assert [e.seq for e in outbox.ready_after(3, 2)] == [5, 6]  # a dropped start is skipped
    outbox.close()


def test_continues_above_a_legacy_sequence_number(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", min_last_seq=41)
    assert outbox.add("t", _payload) == 42
    outbox.close()
    assert Outbox(tmp_path / "outbox.db", min_last_seq=7).add("t", _payload) == 43


def test_the_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    Outbox(path).close()
    outbox = Outbox(path)
    db = outbox._db
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert db.execute("PRAGMA page_size").fetchone() == (2048,)
    outbox.close()
    with pytest.raises(ValueError, match="capacity"):
        Outbox(tmp_path / "other.db", capacity=0)


# One operation of a random history: add n, commit, send+ack k, or reopen (no commit).
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 4)),
        st.tuples(st.just("commit"), st.just(0)),
        st.tuples(st.just("send"), st.integers(1, 4)),
        st.tuples(st.just("crash"), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=25, deadline=None)
@given(ops=_OPS, capacity=st.integers(1, 6))
def test_random_histories_keep_order_and_account_for_every_number(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]], capacity: int
) -> None:
    path = tmp_path_factory.mktemp("hist") / "outbox.db"
    outbox = Outbox(path, capacity=capacity)
    published: list[int] = []
    for op, n in ops:
        if op == "add":
            for _ in range(n):
                outbox.add("t", _payload)
        elif op == "commit":
            outbox.commit()
        elif op == "send":
            for _ in range(n):
                entry = outbox.next_ready()
                if entry is None:
                    break
                published.append(entry.seq)
                outbox.ack(entry.seq)
        else:
            outbox._db.close()
            outbox = Outbox(path, capacity=capacity)
    outbox.commit()
    published += _drain(outbox)
    # Delivery is in order; a number repeats only as a redelivery after a crash.
    firsts = list(dict.fromkeys(published))
    assert firsts == sorted(firsts)
    # Every number on disk was published or counted as dropped (a number published
    # before a crash may be dropped after it, hence >=); nothing else was published.
    assert set(published) <= set(range(1, outbox.last_seq + 1))
    assert len(set(published)) + outbox.dropped >= outbox.last_seq
    assert outbox.pending == 0
    outbox.close()
    rows = sqlite3.connect(path).execute("SELECT seq FROM outbox").fetchall()
    assert rows == [(0,)]  # only the counter row is left


# One operation of a windowed sender's history: add n, commit, start k publishes,
# k PUBACKs (oldest first), lose the connection (the window starts again at the
# oldest unacknowledged), or reopen (no commit).
_WINDOW_OPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["add", "start", "puback"]), st.integers(1, 5)),
        st.tuples(st.sampled_from(["commit", "lose", "crash"]), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(ops=_WINDOW_OPS, capacity=st.integers(1, 6))
def test_a_window_in_flight_keeps_first_copies_in_order_across_losses_and_crashes(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]], capacity: int
) -> None:
    path = tmp_path_factory.mktemp("window") / "outbox.db"
    outbox = Outbox(path, capacity=capacity)
    in_flight: list[Entry] = []
    published: list[int] = []

    def start(count: int) -> None:
        after = in_flight[-1].seq if in_flight else 0
        started = outbox.ready_after(after, count)
        in_flight.extend(started)
        published.extend(e.seq for e in started)

    for op, n in ops:
        if op == "add":
            for _ in range(n):
                outbox.add("t", _payload)
        elif op == "commit":
            outbox.commit()
        elif op == "start":
            start(n)
        elif op == "puback":
            for _ in range(min(n, len(in_flight))):
                outbox.ack(in_flight.pop(0).seq)
        elif op == "lose":
            in_flight.clear()
        else:
            outbox._db.close()
            outbox = Outbox(path, capacity=capacity)
            in_flight.clear()
    outbox.commit()
    while True:  # drain with a window of 3
        start(3 - len(in_flight))
        if not in_flight:
            break
        outbox.ack(in_flight.pop(0).seq)
    firsts = list(dict.fromkeys(published))
    assert firsts == sorted(firsts)  # never a lower number after a higher one
    assert len(set(published)) + outbox.dropped >= outbox.last_seq
    assert outbox.pending == 0
    outbox.commit()
    outbox.close()
    rows = sqlite3.connect(path).execute("SELECT seq FROM outbox").fetchall()
    assert rows == [(0,)]


# ------------------------------------------------------------------------ clock health


def test_clock_health_refuses_large_drift_and_an_unset_system_clock() -> None:
    now = EARLIEST_PLAUSIBLE_S + 10**8
    ok = assess_clock(meter_time_s=now - 299, system_time_s=now, max_drift_s=300)
    assert (ok.ok, ok.drift_s, ok.reason) == (True, -299, "")
    edge = assess_clock(meter_time_s=now + 300, system_time_s=now, max_drift_s=300)
    assert edge.ok
    fast = assess_clock(meter_time_s=now + 301, system_time_s=now, max_drift_s=300)
    assert (fast.ok, fast.drift_s) == (False, 301)
    assert "differ by 301 s" in fast.reason
    unset = assess_clock(meter_time_s=now, system_time_s=86_400, max_drift_s=300)
    assert not unset.ok
    assert unset.reason == "system clock is not set"
    with pytest.raises(ValueError, match="max_drift_s"):
        assess_clock(meter_time_s=now, system_time_s=now, max_drift_s=-1)


def test_the_readings_ring_rides_on_the_next_commit_and_keeps_a_week(tmp_path: Path) -> None:
    """Readings for the agent's own forecast: written by the commit that writes the
    reading's message (no commit of their own), kept across a reopen, and a week and
    an interval later each slot is overwritten in place (a fixed-size table)."""
    path = tmp_path / "outbox.db"
    step = 3_600
    outbox = Outbox(path)
    first = Registers(T0, 100, 7, 3)
    outbox.keep_reading(first, step)
    outbox.add("t/reading", _payload)
    assert outbox.kept_readings() == []  # staged only
    outbox.commit()
    assert outbox.commits == 1  # one transaction for the message and the reading
    outbox.close()

    again = Outbox(path)
    assert again.kept_readings() == [first]
    slots = ring_slots(step)  # 7 days of hours and one: 169
    for k in range(1, 2 * slots):
        again.keep_reading(Registers(T0 + k * step, 100 + k, 7), step)
        again.commit()
    kept = again.kept_readings()
    assert len(kept) == slots
    assert [r.interval for r in kept] == [T0 + k * step for k in range(slots, 2 * slots)]
    assert not again.dirty
    again.close()
    db = sqlite3.connect(path)
    try:
        (rows,) = db.execute("SELECT COUNT(*) FROM readings").fetchone()
    finally:
        db.close()
    assert rows == slots


def test_readings_left_by_another_interval_length_are_forgotten_on_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    old = T0 + 20 * 900  # a 15-minute market once: slot 179 of 673
    outbox.keep_reading(Registers(old, 1, 0), 900)
    outbox.commit()
    for k in range(8 * 24 + 1):  # then hourly, for 8 days: slots 0 to 168 only
        outbox.keep_reading(Registers(T0 + 6 * 3_600 + k * 3_600, 2 + k, 0), 3_600)
        outbox.commit()
    assert old in {r.interval for r in outbox.kept_readings()}  # its slot is not reused
    outbox.close()
    again = Outbox(path)
    kept = again.kept_readings()
    assert old not in {r.interval for r in kept}
    assert len(kept) == ring_slots(3_600)
    again.close()
