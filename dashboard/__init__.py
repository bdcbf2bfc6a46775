"""The trade dashboard: an aiohttp application over the ledger's log and the MQTT bus.

It reads the ledger's database read-only and keeps its own query tables (the read
model) in a database of its own; live updates come from the bus and reach browsers
over WebSocket. It imports the wire contract (``broker/``) and the ledger's read side
only. Map: docs/ARCHITECTURE.md; how to run it: docs/dashboard.md.
"""

__all__ = ["app", "auth", "live", "metrics", "openapi", "queries", "readmodel"]
