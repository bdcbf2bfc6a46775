"""Clock health: does the meter's clock agree with the system clock?

A Raspberry Pi has no battery-backed clock: until NTP answers it may run from a
stale saved time, and a meter's clock can be set wrong too. Readings are recorded
with the meter's time regardless (the ledger checks registers and their order), but
an order is a commitment for a market interval, so the agent refuses to sign one
while the two clocks disagree by more than a threshold or the system clock is
implausible. Pure functions; times in epoch seconds (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_DRIFT_S: Final = 300
EARLIEST_PLAUSIBLE_S: Final = 1_704_067_200  # 2024-01-01T00:00:00Z: older means unset


@dataclass(frozen=True)
class ClockHealth:
    """``drift_s`` = meter time - system time (s); ``ok`` False refuses orders."""

    drift_s: int
    ok: bool
    reason: str  # "" when ok


def assess_clock(*, meter_time_s: int, system_time_s: int, max_drift_s: int) -> ClockHealth:
    """Compare the meter's clock with the system clock (both epoch s, UTC)."""
    if max_drift_s < 0:
        msg = f"max_drift_s must be >= 0, got {max_drift_s}"
        raise ValueError(msg)
    drift_s = meter_time_s - system_time_s
    if system_time_s < EARLIEST_PLAUSIBLE_S:
        return ClockHealth(drift_s, ok=False, reason="system clock is not set")
    if abs(drift_s) > max_drift_s:
        return ClockHealth(
            drift_s, ok=False, reason=f"meter and system clocks differ by {drift_s} s"
        )
    return ClockHealth(drift_s, ok=True, reason="")
