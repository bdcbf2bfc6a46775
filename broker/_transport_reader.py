"""The inbound side of :class:`broker.transport.Transport`: reading aiomqtt's queue.

aiomqtt discards messages still in its queue when a connection drops, although
paho has already acknowledged them, and its message iterator drops one more when
it is cancelled just after taking it from that queue; the transport therefore
reads aiomqtt's queue itself (:func:`read_queue`) and, once the connection is over,
moves what is left into its own buffer (:func:`rescue_queued`), so an acknowledged
inbound message is never lost with the connection.

Both functions share ``carry``, a list of at most one converted message: the one
the reader has taken from aiomqtt and not yet put into the bounded buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import aiomqtt

_M = TypeVar("_M")


async def read_queue(
    client: aiomqtt.Client,
    inbound: asyncio.Queue[_M],
    carry: list[_M],
    convert: Callable[[aiomqtt.Message], _M],
) -> None:
    """Move messages from aiomqtt into the bounded ``inbound`` queue until cancelled.

    Takes them from aiomqtt's queue directly rather than through
    ``client.messages``: that iterator gets each message in a task of its own and,
    when cancelled after that task took a message but before the iterator
    resumed, cancels the finished task and drops the message, one paho has
    already acknowledged (the broker never sends it again). Cancelled in
    ``Queue.get``, a message stays in aiomqtt's queue for :func:`rescue_queued`;
    the message being put stays in ``carry`` until the put completed, so a
    cancellation while the buffer is full does not lose it either. A drop of the
    connection ends this by cancellation (the supervisor watches aiomqtt's
    disconnect future).
    """
    queue: asyncio.Queue[aiomqtt.Message] = client._queue
    while True:
        message = await queue.get()
        carry.append(convert(message))
        await inbound.put(carry[0])
        carry.clear()


async def rescue_queued(
    client: aiomqtt.Client,
    inbound: asyncio.Queue[_M],
    carry: list[_M],
    convert: Callable[[aiomqtt.Message], _M],
) -> None:
    """Move what the reader held and what aiomqtt still queues into ``inbound``.

    paho has already PUBACKed these messages, so the broker will not send them
    again. aiomqtt's iterator stops at a disconnect even when its queue holds
    messages, and offers no public way to drain it (aiomqtt 2.5, pinned <3).
    """
    queue: asyncio.Queue[aiomqtt.Message] = client._queue
    rescued = [*carry]
    carry.clear()
    while not queue.empty():
        rescued.append(convert(queue.get_nowait()))
    for message in rescued:
        await inbound.put(message)
