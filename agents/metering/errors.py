"""The one exception meters raise."""

from __future__ import annotations

from wattmesh.broker.errors import AgentError

__all__ = ["MeterError"]


class MeterError(AgentError):
    """A meter that cannot be read right now (no data, bad data, connection lost)."""
