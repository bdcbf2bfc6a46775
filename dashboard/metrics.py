"""The dashboard's Prometheus counters, in a registry of its own (served at ``/metrics``).

The registry is not prometheus_client's global one, so two dashboards in one process
(tests, ``simulate --dashboard``) count apart and nothing else's metrics leak in.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "DashboardMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :meth:`DashboardMetrics.exposition` (text format 0.0.4)."""


class DashboardMetrics:
    """Every counter and gauge the dashboard keeps; ``exposition()`` is the text served."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "wattmesh_dashboard_http_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=r,
        )
        self.ws_clients = Gauge(
            "wattmesh_dashboard_ws_clients", "WebSocket clients connected", registry=r
        )
        self.ws_sent = Counter(
            "wattmesh_dashboard_ws_messages_sent", "WebSocket events sent to clients", registry=r
        )
        self.ws_dropped = Counter(
            "wattmesh_dashboard_ws_messages_dropped",
            "WebSocket events dropped for a client too slow to take them (oldest first)",
            registry=r,
        )
        self.mqtt_messages = Counter(
            "wattmesh_dashboard_mqtt_messages",
            "MQTT messages accepted from the bus, by kind",
            ["kind"],
            registry=r,
        )
        self.mqtt_rejected = Counter(
            "wattmesh_dashboard_mqtt_rejected",
            "MQTT messages dropped (unsigned, wrongly signed, malformed...), by reason",
            ["reason"],
            registry=r,
        )
        self.sync_entries = Counter(
            "wattmesh_dashboard_sync_entries_folded",
            "Log entries folded into the read model",
            registry=r,
        )
        self.sync_lag_entries = Gauge(
            "wattmesh_dashboard_sync_lag_entries",
            "Log entries not yet folded into the read model at the last sync",
            registry=r,
        )
        self.sync_lag_s = Gauge(
            "wattmesh_dashboard_sync_lag_seconds",
            "Seconds since the read model last caught up with the log",
            registry=r,
        )
        self.sync_failures = Counter(
            "wattmesh_dashboard_sync_failures",
            "Read-model syncs that failed (the ledger database unreachable...)",
            registry=r,
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
