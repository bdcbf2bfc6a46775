"""The operator's wall-clock schedule (pure) and its per-interval log line."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattmesh.ledger.operator import IntervalSummary, summary_line
from wattmesh.ledger.schedule import Schedule, SystemClock

S = Schedule(interval_s=900, gate_timeout_s=120, grace_s=30)
T = 1_796_140_800  # 2026-12-01T16:00:00Z, a multiple of 900


def test_intervals_are_aligned_to_multiples_of_interval_s() -> None:
    assert S.start_of(T) == T
    assert S.start_of(T + 899.9) == T
    assert S.start_of(T + 900) == T + 900
    assert S.deadline(T) == T + 120


def test_first_start_opens_the_current_interval_within_the_grace() -> None:
    assert S.next_interval(T + 10, None) == T
    assert S.next_interval(T + 30, None) == T
    assert S.next_interval(T + 30.5, None) == T + 900  # too late: wait for the next
    assert S.skipped(None, T + 900) == 0


def test_a_restart_reopens_the_interval_that_was_open_if_still_within_the_grace() -> None:
    last = T - 900  # closed before the crash; T was open when the process died
    assert S.next_interval(T + 5, last) == T
    assert S.skipped(last, T) == 0
    assert S.next_interval(T + 60, last) == T + 900
    assert S.skipped(last, T + 900) == 1


def test_an_interval_closed_already_is_never_opened_again() -> None:
    # A close that finished early (SIGTERM) and a restart within the same interval.
    assert S.next_interval(T + 5, T) == T + 900
    # A clock that stepped back behind the last closed interval: after it, not now.
    assert S.next_interval(T - 3 * 900 + 1, T) == T + 900


@given(
    now=st.floats(min_value=1e9, max_value=4e9, allow_nan=False),
    interval_s=st.integers(1, 3600),
    back=st.one_of(st.none(), st.integers(0, 50)),
)
def test_next_interval_is_aligned_after_the_last_and_not_older_than_the_grace(
    now: float, interval_s: int, back: int | None
) -> None:
    schedule = Schedule(interval_s, gate_timeout_s=interval_s, grace_s=interval_s / 4)
    last = None if back is None else schedule.start_of(now) - back * interval_s
    chosen = schedule.next_interval(now, last)
    assert chosen % interval_s == 0
    assert last is None or chosen > last
    assert chosen >= now - schedule.grace_s
    assert chosen <= schedule.start_of(now) + interval_s


@pytest.mark.parametrize(
    ("interval_s", "timeout_s", "grace_s", "match"),
    [(0, 1, 0, "interval_s"), (10, 11, 0, "gate_timeout_s"), (10, 5, 5, "grace_s")],
)
def test_inconsistent_schedules_are_refused(
    interval_s: int, timeout_s: float, grace_s: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Schedule(interval_s, timeout_s, grace_s)


async def test_the_system_clock_waits_until_the_given_wall_time() -> None:
    clock = SystemClock()
    target = clock.now_s() + 0.05
    await asyncio.wait_for(clock.sleep_until(target), 5)
    assert time.time() >= target
    await asyncio.wait_for(clock.sleep_until(target - 10), 5)  # the past: at once


def test_the_summary_line_names_every_figure_and_each_rejection_reason() -> None:
    line = summary_line(
        IntervalSummary(
            interval=T,
            households=6,
            orders=5,
            readings=6,
            trades=2,
            volume_wh=420,
            price_micro_per_kwh=190_000,
            tree_size=1234,
            root=bytes(range(32)),
            gate_s=1.25,
            close_s=0.05,
            rejections={"late": 1, "bad_signature": 2},
            redeliveries=3,
            skipped=1,
            responses=4,
            limited=5,
            dropped=6,
            audit_ignored=7,
        )
    )
    assert line == (
        "interval 1796140800 (2026-12-01T16:00:00Z): orders 5/6 readings 6/6 trades 2 "
        "volume_wh 420 price_micro_per_kwh 190000 size 1234 root 0001020304050607 "
        "gate_s 1.250 close_s 0.050 rejected 3 (bad_signature 2, late 1) "
        "redelivered 3 responses 4 limited 5 dropped 6 audit_ignored 7 skipped 1"
    )
