"""Aggregated log lines for what the agent receives and does not act on (pure).

A flood of junk on an agent's topics must not become one log line per message.
:class:`LogTally` counts each message by a reason (``malformed``,
``forecast_unsigned``, a ledger rejection's reason, ...): the first of a reason is
logged in full, later ones only counted, and at most one summary line per reason and
``period_s`` reports how many came since, on which topics. The counts per reason are
kept for the agent's diagnostics. The clock is the caller's (seconds, monotonic), so
this is plain state and arithmetic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

DEFAULT_PERIOD_S = 60.0
_TOPICS_SHOWN = 3  # a summary names the busiest topics only


@dataclass
class _Reason:
    last_line_s: float  # when the last line of this reason was logged
    since: int = 0  # counted since that line
    topics: Counter[str] = field(default_factory=Counter)  # of those


class LogTally:
    """Counts messages per reason and says which log line (if any) each one calls for."""

    def __init__(self, period_s: float = DEFAULT_PERIOD_S) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.period_s = period_s
        self.counts: Counter[str] = Counter()  # every message noted, per reason
        self._reasons: dict[str, _Reason] = {}

    def note(self, reason: str, topic: str, detail: str, now_s: float) -> str | None:
        """Count one message of ``reason`` received on ``topic``; the line to log now,
        or None. The first of a reason gives ``detail``; later ones are summed up in one
        line once ``period_s`` has passed since the reason's last line."""
        self.counts[reason] += 1
        state = self._reasons.get(reason)
        if state is None:
            self._reasons[reason] = _Reason(now_s)
            return (
                f"{reason} on {topic}: {detail} (more of these are counted, "
                f"one line per {self.period_s:g} s)"
            )
        state.since += 1
        state.topics[topic] += 1
        if now_s - state.last_line_s < self.period_s:
            return None
        return self._summary(reason, state, now_s)

    def _summary(self, reason: str, state: _Reason, now_s: float) -> str:
        busiest = state.topics.most_common(_TOPICS_SHOWN)
        where = ", ".join(f"{topic} x{n}" for topic, n in busiest)
        others = len(state.topics) - len(busiest)
        if others > 0:
            where += f" and {others} more topic(s)"
        line = (
            f"{state.since} more {reason} in {now_s - state.last_line_s:.0f} s "
            f"({where}; {self.counts[reason]} in all)"
        )
        state.last_line_s, state.since = now_s, 0
        state.topics.clear()
        return line
