"""The dashboard's parts alone: the WebSocket hub, the metrics registry, the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from wattmesh.dashboard._hub import Hub, _Client
from wattmesh.dashboard.metrics import DashboardMetrics
from wattmesh.dashboard.openapi import openapi_document


@pytest.fixture
async def hub_client() -> AsyncIterator[tuple[Hub, TestClient[web.Request, web.Application]]]:
    hub = Hub(DashboardMetrics())
    app = web.Application()
    app.router.add_get("/ws", hub.serve)

    async def _close(_app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(_close)
    async with TestClient(TestServer(app)) as client:
        yield hub, client


async def _until(predicate: object, what: str) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded by the loop's own progress)."""
    for _ in range(10_000):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


async def test_every_client_gets_every_event_in_order(
    hub_client: tuple[Hub, TestClient[web.Request, web.Application]],
) -> None:
    hub, client = hub_client
    sockets = [await client.ws_connect("/ws") for _ in range(5)]
    await _until(lambda: hub.clients == 5, "five clients registered")
    for n in range(3):
        hub.broadcast(json.dumps({"type": "interval", "interval": n}))
    for socket in sockets:
        got = [json.loads((await socket.receive(timeout=5)).data)["interval"] for _ in range(3)]
        assert got == [0, 1, 2]
        await socket.close()
    await _until(lambda: hub.clients == 0, "clients gone")
    assert (hub.sent, hub.dropped) == (15, 0)


async def test_shutdown_closes_every_socket() -> None:
    hub = Hub(DashboardMetrics())
    app = web.Application()
    app.router.add_get("/ws", hub.serve)

    async def _close(_app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(_close)
    client = TestClient(TestServer(app))
    await client.start_server()
    sockets = [await client.ws_connect("/ws") for _ in range(3)]
    await _until(lambda: hub.clients == 3, "three clients registered")
    await client.close()
    for socket in sockets:
        message = await socket.receive(timeout=5)
        assert message.type in {WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING}


def test_a_full_queue_loses_its_oldest_event_and_counts_it() -> None:
    metrics = DashboardMetrics()
    hub = Hub(metrics, queue_size=3)
    stalled = _Client(web.WebSocketResponse(), asyncio.Queue(3))
    hub._clients.add(stalled)  # a client whose sender never drains
    for n in range(5):
        hub.broadcast(str(n))
    assert [stalled.queue.get_nowait() for _ in range(3)] == ["2", "3", "4"]
    assert hub.dropped == 2
    assert metrics.registry.get_sample_value("wattmesh_dashboard_ws_messages_dropped_total") == 2


def test_the_metrics_parse_and_are_the_dashboards_own() -> None:
    one, two = DashboardMetrics(), DashboardMetrics()
    one.http_requests.labels(route="/api/overview", status="200").inc()
    one.mqtt_rejected.labels(reason="bad_signature").inc(3)
    families = {f.name: f for f in text_string_to_metric_families(one.exposition().decode())}
    assert "wattmesh_dashboard_http_requests" in families
    assert (
        one.registry.get_sample_value(
            "wattmesh_dashboard_mqtt_rejected_total", {"reason": "bad_signature"}
        )
        == 3
    )
    assert (
        two.registry.get_sample_value(
            "wattmesh_dashboard_mqtt_rejected_total", {"reason": "bad_signature"}
        )
        is None
    )


def test_the_openapi_document_is_valid_3_1() -> None:
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)
    paths = set(document["paths"])
    assert {
        "/api/overview",
        "/api/market",
        "/api/market/intervals/{interval}",
        "/api/households",
        "/api/households/{household}",
        "/api/households/{household}/statement",
        "/api/households/{household}/statement.csv",
        "/api/ledger/checkpoints",
        "/api/ledger/trades",
        "/api/ledger/entries/{idx}/proof",
        "/api/health",
        "/api/login/challenge",
        "/api/login",
        "/api/login/operator",
        "/api/logout",
        "/api/session",
    } == paths
    json.dumps(document)  # serialisable as served


async def test_clients_beyond_the_limit_are_turned_away() -> None:
    hub = Hub(DashboardMetrics(), max_clients=2)
    app = web.Application()
    app.router.add_get("/ws", hub.serve)
    async with TestClient(TestServer(app)) as client:
        sockets = [await client.ws_connect("/ws") for _ in range(2)]
        await _until(lambda: hub.clients == 2, "two clients registered")
        refused = await client.get("/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        assert refused.status == 503
        await sockets[0].close()
        await _until(lambda: hub.clients == 1, "one left")
        sockets.append(await client.ws_connect("/ws"))  # room again
        for socket in sockets[1:]:
            await socket.close()
