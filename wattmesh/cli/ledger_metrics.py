"""``ledger run``'s Prometheus ``/metrics``: messages, rejections, intervals, gate and close times.

Optional (``[metrics] port`` in ``ledger.toml``). The figures are those of the
operator's log lines (:class:`ledger.operator.IntervalSummary`), added up as each line
is written, plus the messages received so far, read from the service when scraped.
They live in a :class:`prometheus_client.CollectorRegistry` of their own, served by a
small HTTP server on the event loop (:func:`serve_metrics`): a scrape never sees an
interval half counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from wattmesh.ledger.operator import IntervalSummary
from wattmesh.ledger.service import LedgerService

__all__ = ["LedgerMetrics", "serve_metrics"]

# Gate times run from milliseconds (everyone sent) to the gate timeout (minutes).
_GATE_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_CLOSE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_MAX_REQUEST_BYTES = 8192


class _Received(Collector):
    """Messages received on the household topics, read from the service when scraped."""

    def __init__(self, service: LedgerService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "wattmesh_ledger_messages_received",
            "Messages received on the market's household topics (readings, orders, "
            "statuses, audit requests, and anything on a bad topic).",
            value=self._service.received,
        )


class LedgerMetrics:
    """The operator's counters; :meth:`observe` adds one interval's log line."""

    def __init__(self, service: LedgerService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        registry.register(_Received(service))
        self.intervals = Counter(
            "wattmesh_ledger_intervals_closed", "Trading intervals closed.", registry=registry
        )
        self.rejections = Counter(
            "wattmesh_ledger_rejections",
            "Messages rejected or ignored, per reason (the log lines' counts).",
            ["reason"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "wattmesh_ledger_redeliveries", "Redelivered messages ignored.", registry=registry
        )
        self.orders = Counter("wattmesh_ledger_orders", "Orders logged.", registry=registry)
        self.readings = Counter("wattmesh_ledger_readings", "Readings logged.", registry=registry)
        self.trades = Counter("wattmesh_ledger_trades", "Trades logged.", registry=registry)
        self.volume_wh = Counter(
            "wattmesh_ledger_traded_volume_wh", "Energy traded, Wh.", registry=registry
        )
        self.gate_s = Histogram(
            "wattmesh_ledger_gate_seconds",
            "From an interval's opening until its gate closed.",
            buckets=_GATE_BUCKETS_S,
            registry=registry,
        )
        self.close_s = Histogram(
            "wattmesh_ledger_close_seconds",
            "Clearing, logging, checkpoint and audit messages of an interval.",
            buckets=_CLOSE_BUCKETS_S,
            registry=registry,
        )
        self.tree_size = Gauge(
            "wattmesh_ledger_tree_size", "Entries in the log (its tree size).", registry=registry
        )
        self.last_interval = Gauge(
            "wattmesh_ledger_last_closed_interval",
            "Start (epoch s) of the last interval closed.",
            registry=registry,
        )
        self.households = Gauge(
            "wattmesh_ledger_households",
            "Households registered with a valid key.",
            registry=registry,
        )

    def observe(self, summary: IntervalSummary) -> None:
        """Count one closed interval (as its log line says it)."""
        self.intervals.inc()
        for reason, count in summary.rejections.items():
            self.rejections.labels(reason=reason).inc(count)
        self.redeliveries.inc(summary.redeliveries)
        self.orders.inc(summary.orders)
        self.readings.inc(summary.readings)
        self.trades.inc(summary.trades)
        self.volume_wh.inc(summary.volume_wh)
        self.gate_s.observe(summary.gate_s)
        self.close_s.observe(summary.close_s)
        self.tree_size.set(summary.tree_size)
        self.last_interval.set(summary.interval)
        self.households.set(summary.households)

    def exposition(self) -> bytes:
        """The Prometheus text of every metric."""
        return generate_latest(self.registry)


@contextlib.asynccontextmanager
async def serve_metrics(metrics: LedgerMetrics, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``GET /metrics`` on ``host:port`` (0: any free port) while the block runs;
    yields the port. OSError when it cannot listen."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, _, rest = request[:_MAX_REQUEST_BYTES].partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
            elif path != b"/metrics":
                status, body, kind = b"404 Not Found", b"see /metrics\n", b"text/plain"
            else:
                status, body, kind = b"200 OK", metrics.exposition(), CONTENT_TYPE_LATEST.encode()
            head = (
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
            )  # fmt: skip
            writer.write(head if method == b"HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(answer, host, port, limit=_MAX_REQUEST_BYTES)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
