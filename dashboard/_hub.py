"""WebSocket fan-out: one pre-serialised event to every browser, a bounded queue each.

:meth:`Hub.broadcast` never waits: it puts the event's JSON text on each client's
queue (:data:`QUEUE_SIZE` events); a client whose queue is full loses its oldest event
(counted), so one slow or stalled browser cannot hold up the rest or grow memory;
beyond :data:`MAX_CLIENTS` browsers a new one is turned away (HTTP 503).
Each client has a sender task that drains its queue into the socket. Browsers send
nothing the server reads; aiohttp's heartbeat (a ping every :data:`HEARTBEAT_S`)
closes a connection whose peer vanished. :meth:`Hub.close` closes every socket
(at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from wattmesh.dashboard.metrics import DashboardMetrics

__all__ = ["HEARTBEAT_S", "MAX_CLIENTS", "QUEUE_SIZE", "Hub"]

_LOG = logging.getLogger(__name__)

QUEUE_SIZE = 64
MAX_CLIENTS = 1000  # more browsers are turned away (503) rather than risk memory
HEARTBEAT_S = 20.0
_MAX_INBOUND_BYTES = 4096  # browsers only ever send control frames


@dataclass(eq=False)
class _Client:
    socket: web.WebSocketResponse
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class Hub:
    """The connected browsers and what is pushed to them."""

    def __init__(
        self,
        metrics: DashboardMetrics,
        *,
        queue_size: int = QUEUE_SIZE,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self._metrics = metrics
        self._queue_size = queue_size
        self._max_clients = max_clients
        self._clients: set[_Client] = set()
        self._closing = False
        self.sent = 0
        self.dropped = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    def broadcast(self, text: str) -> None:
        """Queue ``text`` (one JSON event) for every client; never blocks."""
        for client in self._clients:
            queue = client.queue
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
                self._metrics.ws_dropped.inc()
            queue.put_nowait(text)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """The ``/ws`` handler: register the browser and push events until it leaves."""
        if len(self._clients) >= self._max_clients:
            raise web.HTTPServiceUnavailable(reason="Too many live clients")
        socket = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=_MAX_INBOUND_BYTES)
        await socket.prepare(request)
        if self._closing:
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            return socket
        client = _Client(socket, asyncio.Queue(self._queue_size))
        self._clients.add(client)
        self._metrics.ws_clients.set(len(self._clients))
        sender = asyncio.create_task(self._send(client), name="dashboard-ws-sender")
        try:
            async for message in socket:  # control frames; anything else is ignored
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            self._metrics.ws_clients.set(len(self._clients))
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if not socket.closed:
                await socket.close()
        return socket

    async def _send(self, client: _Client) -> None:
        socket, queue = client.socket, client.queue
        while True:
            text = await queue.get()
            try:
                await socket.send_str(text)
            except ConnectionError:  # the peer went away; the handler's loop ends too
                _LOG.debug("a WebSocket client left while being sent an event")
                return
            self.sent += 1
            self._metrics.ws_sent.inc()

    async def close(self) -> None:
        """Close every client's socket (server shutdown); new ones are turned away."""
        self._closing = True
        sockets = [client.socket for client in self._clients]
        await asyncio.gather(
            *(
                s.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for s in sockets
            ),
            return_exceptions=True,
        )
