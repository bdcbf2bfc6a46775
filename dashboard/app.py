"""The dashboard's aiohttp application: settings, routes, headers, JSON errors, background tasks.

:func:`make_app` builds the application (routes in :mod:`dashboard._routes`); its
background tasks live in ``cleanup_ctx``: the log follower (:mod:`dashboard._runtime`)
and, when a broker is configured, the bus listener (:mod:`dashboard.live`).
Every response carries a strict Content Security Policy (scripts, styles and
connections from the dashboard itself only) and ``X-Content-Type-Options: nosniff``;
every error is JSON ``{"error": {"status", "reason", "message"}}``, never a traceback
(an unexpected exception is logged and answered 500). :func:`serve` runs it until
``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Transport, TransportConfig
from wattmesh.dashboard import queries
from wattmesh.dashboard._hub import Hub
from wattmesh.dashboard._routes import RUNTIME, HttpError, add_routes
from wattmesh.dashboard._runtime import Runtime, RuntimeConfig
from wattmesh.dashboard.auth import LoginRefused
from wattmesh.dashboard.live import Listener
from wattmesh.dashboard.metrics import CONTENT_TYPE, DashboardMetrics
from wattmesh.dashboard.queries import is_currency
from wattmesh.dashboard.readmodel import ReadModel

__all__ = ["CSP", "HUB", "METRICS", "SETTINGS", "STATIC", "DashboardSettings", "make_app", "serve"]

_LOG = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'"
)
STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class DashboardSettings:
    """What a dashboard serves and where (``dashboard.toml`` and the flags fill it)."""

    ledger_url: str
    read_model_url: str | None = None
    broker: TransportConfig | None = None
    market_id: str | None = None  # default: the ledger's meta market id
    operator_key: VerifyingKey | None = None  # default: the stored key (verify: not anchored)
    operator_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    sync_every_s: float = 1.0  # server-side log follow (no page polling)
    forecaster_key: VerifyingKey | None = None  # signs forecasts; default: the operator's
    currency: str = "EUR"  # ISO 4217 code of the micro-units the pages show money in
    operator_ticket: str | None = None  # logs the operator in once, within an hour of start
    verify_every_s: float = 3600.0  # verify the whole log at start and then so often; 0: never

    def __post_init__(self) -> None:
        if not is_currency(self.currency):
            raise ConfigError(f"currency must be an ISO 4217 code like EUR, not {self.currency!r}")
        if not 0 < self.sync_every_s <= 3600:
            raise ConfigError(f"sync_every_s must be in (0, 3600], not {self.sync_every_s}")
        if self.verify_every_s < 0:
            raise ConfigError(f"verify_every_s must be 0 (never) or more: {self.verify_every_s}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, not {self.port}")


SETTINGS = web.AppKey("settings", DashboardSettings)
METRICS = web.AppKey("metrics", DashboardMetrics)
HUB = web.AppKey("hub", Hub)


# ------------------------------------------------------------------ errors and headers


def error_response(status: int, reason: str, message: str) -> web.Response:
    """The JSON error every failed request gets."""
    body = {"error": {"status": status, "reason": reason, "message": message}}
    return web.json_response(body, status=status)


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


_MAPPED: tuple[tuple[type[Exception], int, str], ...] = (
    (queries.NotFound, 404, "not_found"),
    (queries.BadRequest, 400, "bad_request"),
    (LoginRefused, 401, "unauthorized"),
)


def _failed(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, HttpError):
        return error_response(exc.status, exc.reason, str(exc))
    for cls, status, reason in _MAPPED:
        if isinstance(exc, cls):
            return error_response(status, reason, str(exc))
    _LOG.error("%s %s failed", request.method, request.path, exc_info=exc)
    return error_response(500, "internal", "the dashboard failed to answer; see its log")


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: unknown path, wrong method...
        if exc.status < 400:
            raise
        words = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, words, f"{exc.reason}: {request.path}")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        return _failed(request, exc)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors for every failure, and the request counted by route and status."""
    status = 500
    try:
        response = await _answer(request, handler)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[METRICS]
        metrics.http_requests.labels(route=_route_of(request), status=str(status)).inc()


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")


# ------------------------------------------------------------------ other routes


async def _index(_request: web.Request) -> web.StreamResponse:
    index = STATIC / "index.html"
    if not index.is_file():
        raise HttpError(404, "not_found", "the dashboard's pages are not installed")
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _ws(request: web.Request) -> web.StreamResponse:
    return await request.app[HUB].serve(request)


# ------------------------------------------------------------------ background tasks


def _runtime_config(settings: DashboardSettings) -> RuntimeConfig:
    return RuntimeConfig(
        ledger_url=settings.ledger_url,
        read_model_url=settings.read_model_url or ReadModel.default_url(settings.ledger_url),
        broker=settings.broker,
        market_id=settings.market_id,
        operator_key=settings.operator_key,
        forecaster_key=settings.forecaster_key,
        operator_token=settings.operator_token,
        sync_every_s=settings.sync_every_s,
        currency=settings.currency,
        operator_ticket=settings.operator_ticket,
        verify_every_s=settings.verify_every_s,
    )


async def _live(rt: Runtime, config: TransportConfig) -> None:
    """Listen to the bus once the market id and the operator key are known."""
    await rt.ready.wait()
    if not rt.market_known.is_set():
        _LOG.warning("the bus listener waits for the ledger's market id and operator key")
        await rt.market_known.wait()
    assert rt.market_id is not None and rt.operator_key is not None
    listener = Listener(
        topics=Topics(rt.market_id),
        operator_key=rt.operator_key,
        forecaster_key=rt.config.forecaster_key,
        household_key=rt.keys.get,
        sink=rt.rm,
        writes=rt.writes,
        hub=rt.hub,
        metrics=rt.metrics,
        wake_sync=rt.wake.set,
        presence_counts=rt.presence_counts,
    )
    rt.listener = listener
    transport = Transport(config, subscriptions=listener.subscriptions())
    async with transport, asyncio.TaskGroup() as group:
        group.create_task(listener.run(transport), name="dashboard-bus")
        group.create_task(listener.watch_broker(transport), name="dashboard-broker-state")
        await transport.wait_connected()
        rt.on_bus.set()


async def _logged(task: Coroutine[Any, Any, None]) -> None:
    """Run a background task; if it fails, say so in the log (the server goes on)."""
    try:
        await task
    except Exception:
        _LOG.exception("a background task of the dashboard failed")


async def _background(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    config = _runtime_config(settings)
    rt = await asyncio.to_thread(Runtime, config, app[METRICS], app[HUB])
    app[RUNTIME] = rt
    tasks = [asyncio.create_task(_logged(rt.follow()), name="dashboard-follow")]
    if settings.broker is not None:
        live = _logged(_live(rt, settings.broker))
        tasks.append(asyncio.create_task(live, name="dashboard-live"))
    if settings.verify_every_s > 0:
        verify = _logged(rt.verify_every(settings.verify_every_s))
        tasks.append(asyncio.create_task(verify, name="dashboard-verify"))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await rt.writes.run(rt.close)


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close()


def make_app(settings: DashboardSettings) -> web.Application:
    """The dashboard as an aiohttp application (nothing is opened until it starts)."""
    metrics = DashboardMetrics()
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[HUB] = Hub(metrics)
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_background)
    add_routes(app)
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _ws)
    app.router.add_get("/metrics", _metrics)
    if STATIC.is_dir():
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
    return app


async def serve(
    settings: DashboardSettings,
    *,
    stop: asyncio.Event,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard on ``settings.host:port`` until ``stop`` is set; ``ready`` gets
    its URL once it listens (port 0: a free port)."""
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown}:{port}/")
        await stop.wait()
    finally:
        await runner.cleanup()
