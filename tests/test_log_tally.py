"""agents.inbound.LogTally (pure, injected clock): a flood of junk is a few log lines
with counts, not one line per message (issue 11, finding 6, the agent's side)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattmesh.agents._inbound import LogTally


def test_the_first_of_a_reason_is_logged_then_one_summary_per_period() -> None:
    tally = LogTally(period_s=60.0)
    first = tally.note("malformed", "t/forecast", "not JSON", now_s=100.0)
    assert first == (
        "malformed on t/forecast: not JSON (more of these are counted, one line per 60 s)"
    )
    lines = [tally.note("malformed", "t/forecast", "not JSON", now_s=100.0 + i) for i in range(59)]
    assert lines == [None] * 59  # within the period: counted, not logged
    line = tally.note("malformed", "t/error", "not JSON", now_s=160.0)
    assert line == "60 more malformed in 60 s (t/forecast x59, t/error x1; 61 in all)"
    assert tally.note("malformed", "t/error", "x", now_s=160.5) is None  # a new period
    assert tally.counts == {"malformed": 62}


def test_reasons_are_tallied_apart() -> None:
    tally = LogTally(period_s=10.0)
    assert tally.note("malformed", "a", "x", now_s=0.0) is not None
    assert tally.note("forecast_unsigned", "a", "y", now_s=1.0) is not None  # its own first
    assert tally.note("malformed", "a", "x", now_s=2.0) is None
    assert tally.note("forecast_unsigned", "b", "y", now_s=11.0) == (
        "1 more forecast_unsigned in 10 s (b x1; 2 in all)"
    )
    assert tally.counts == {"malformed": 2, "forecast_unsigned": 2}


def test_a_summary_names_the_three_busiest_topics() -> None:
    tally = LogTally(period_s=1.0)
    tally.note("unexpected", "a", "x", now_s=0.0)
    for topic, n in (("a", 5), ("b", 4), ("c", 3), ("d", 2), ("e", 1)):
        for _ in range(n):
            tally.note("unexpected", topic, "x", now_s=0.5)
    assert tally.note("unexpected", "a", "x", now_s=1.0) == (
        "16 more unexpected in 1 s (a x6, b x4, c x3 and 2 more topic(s); 17 in all)"
    )


def test_the_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="period_s must be positive"):
        LogTally(period_s=0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 10)), max_size=300))
def test_lines_are_bounded_by_reasons_and_elapsed_periods(notes: list[tuple[str, float]]) -> None:
    """Whatever arrives, at most one line per reason plus one per reason and period
    elapsed; every message is counted."""
    tally = LogTally(period_s=1.0)
    times = sorted(t for _, t in notes)
    lines = 0
    for (reason, _), now in zip(notes, times, strict=True):
        if tally.note(reason, "t", "d", now_s=now) is not None:
            lines += 1
    reasons = {r for r, _ in notes}
    span = (times[-1] - times[0]) if times else 0.0
    assert lines <= len(reasons) * (2 + int(span))
    assert sum(tally.counts.values()) == len(notes)
