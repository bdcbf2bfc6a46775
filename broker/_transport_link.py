"""A handle on one connection of a :class:`broker.transport.Transport`.

:meth:`Transport.publish <broker.transport.Transport.publish>` retries a publish cut
off by a dropped connection on the next one, each call on its own, so several calls
in flight across a reconnect may reach the new connection in any order. A
:class:`Link` (from :meth:`Transport.link <broker.transport.Transport.link>`)
publishes on its connection only: publishes started in some order (tasks created in
that order) go out in that order, and once the connection is lost every unfinished
one returns False and none of them reaches a later connection (aiomqtt keeps its QoS
state in the client object, and the transport makes a new client per connection).
The caller resends, in its own order, on the next link: the agent's outbox
(:mod:`agents._publisher`) keeps a window of publishes in flight this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from wattmesh.broker._transport_config import _check_publish_topic, _check_qos

PublishOn = Callable[[str, bytes, int, bool], Awaitable[bool]]
"""One attempt on the link's connection: (topic, payload, qos, retain) -> acknowledged."""


class Link:
    """One connection; its publishes are never retried on another."""

    def __init__(self, lost: asyncio.Future[None], publish_on: PublishOn) -> None:
        self._lost = lost
        self._publish_on = publish_on

    @property
    def lost(self) -> bool:
        """True once this connection must no longer be used."""
        return self._lost.done()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> bool:
        """Publish on this connection; True once acknowledged (QoS 1/2) or written
        (QoS 0), False if the connection was lost first (the broker may have it)."""
        _check_publish_topic(topic)
        _check_qos(qos)
        if self.lost:
            return False
        return await self._publish_on(topic, payload, qos, retain)
