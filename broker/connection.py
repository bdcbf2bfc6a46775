"""A household's grid connection: the most energy it can carry (docs/protocol.md).

One definition, shared by the ledger (an order's bound, a reading's plausibility:
:mod:`ledger._admission`, :mod:`ledger.settlement`) and the agent (its orders never go
beyond it: :mod:`agents._strategy`).
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_POWER_W", "MAX_POWER_LIMIT_W", "energy_limit_wh"]

# A 25 A three-phase connection at 230 V: 25 * 3 * 230 W.
DEFAULT_MAX_POWER_W = 17_250

MAX_POWER_LIMIT_W = 1_000_000
"""Largest connection limit a registry or an agent may give (the wire bound of ``power_w``)."""


def energy_limit_wh(max_power_w: int, elapsed_s: int) -> int:
    """Most energy (Wh, rounded up) a connection of ``max_power_w`` W carries in ``elapsed_s``."""
    return -(-max_power_w * elapsed_s // 3600)
