"""What the operator sends back to households, bounded and off the ingest path.

A flood on a household's topics (junk on its order topic, audit requests) must not
make the ingest wait or the operator send without bound. Three parts:

- :class:`TokenBuckets` (pure, clock passed in): one bucket per household; each
  response takes a token; a bucket holds at most :data:`RESPONSE_BURST` tokens and
  refills :data:`RESPONSES_PER_S` a second. A response without a token is not sent
  (``limited``).
- :class:`FirstPerInterval` (pure): whether a (household, reason) is the first of its
  interval, so the log gets one line per (household, reason) and interval, and counts
  for the rest (the operator's summary line); at most :data:`LOGGED_KEYS_PER_INTERVAL`
  keys per interval, so many topics cannot make many lines either.
- :class:`Responder` (asyncio): a bounded queue of responses (``offer`` never waits:
  full means ``dropped``) and :meth:`Responder.running`, a background task that
  builds each response (e.g. an audit answer's proof) and publishes it, a window of
  them in flight at a time.

Counters (:class:`ResponseCounts`) only grow; the operator reports their increase in
each interval's summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from wattmesh.broker.errors import MessageError
from wattmesh.broker.messages import decode_message

_LOG = logging.getLogger(__name__)

RESPONSE_BURST = 20  # responses a household may get at once (its bucket's size)
RESPONSES_PER_S = 1.0  # ... and per second after that (the bucket's refill)
RESPONSE_QUEUE_SIZE = 1000  # responses waiting to be sent, all households together
RESPONSE_WINDOW = 64  # responses in flight (awaiting their PUBACK) at a time
LOGGED_KEYS_PER_INTERVAL = 100  # (household, reason) first lines per interval at most


@dataclass
class TokenBuckets:
    """A token bucket per key: ``take`` is True (and takes a token) while the key's
    bucket holds one. Keys are the households the operator answers (registered ones),
    so the buckets are as many as the registry's households."""

    capacity: int = RESPONSE_BURST
    refill_per_s: float = RESPONSES_PER_S
    _levels: dict[str, tuple[float, float]] = field(default_factory=dict)  # tokens, at_s

    def take(self, key: str, now_s: float) -> bool:
        tokens, at_s = self._levels.get(key, (float(self.capacity), now_s))
        tokens = min(float(self.capacity), tokens + max(0.0, now_s - at_s) * self.refill_per_s)
        if tokens < 1.0:
            self._levels[key] = (tokens, now_s)
            return False
        self._levels[key] = (tokens - 1.0, now_s)
        return True


@dataclass
class FirstPerInterval:
    """``first(key, interval)``: True for a key not seen yet in ``interval`` (any
    hashable window, e.g. the last closed interval), while fewer than ``max_keys``
    were; what was seen is forgotten when the interval changes."""

    max_keys: int = LOGGED_KEYS_PER_INTERVAL
    _interval: Hashable = None
    _seen: set[Hashable] = field(default_factory=set)

    def first(self, key: Hashable, interval: Hashable) -> bool:
        if interval != self._interval:
            self._interval = interval
            self._seen.clear()
        if key in self._seen or len(self._seen) >= self.max_keys:
            return False
        self._seen.add(key)
        return True


@dataclass
class ResponseCounts:
    """What happened to the operator's responses (rejections and audit answers) and to
    audit requests, since the start."""

    sent: int = 0  # published (PUBACK received)
    limited: int = 0  # not sent: the household's bucket was empty, or already answered
    dropped: int = 0  # not sent: the queue was full, or building or publishing failed
    audit_ignored: int = 0  # audit requests not answered: malformed, unknown household...

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.sent, self.limited, self.dropped, self.audit_ignored)


# A response, built when its turn comes (off the ingest path): the awaitable that
# signs and publishes it, or None when there is nothing to send after all.
Build = Callable[[], Awaitable[None] | None]


class Responder:
    """Rate-limited, queued responses to households (see the module doc)."""

    def __init__(
        self,
        *,
        buckets: TokenBuckets | None = None,
        clock: Callable[[], float] = time.monotonic,
        queue_size: int = RESPONSE_QUEUE_SIZE,
        window: int = RESPONSE_WINDOW,
    ) -> None:
        self.buckets = TokenBuckets() if buckets is None else buckets
        self.counts = ResponseCounts()
        self._clock = clock
        self._window = window
        self._queue: asyncio.Queue[Build] = asyncio.Queue(maxsize=queue_size)
        self._idle = asyncio.Event()  # nothing queued or in flight
        self._idle.set()

    def allowed(self, agent: str) -> bool:
        """Take one of ``agent``'s tokens; False (counted as ``limited``) if none."""
        if self.buckets.take(agent, self._clock()):
            return True
        self.counts.limited += 1
        return False

    def offer(self, build: Build) -> bool:
        """Queue a response without waiting; False (counted as ``dropped``) if full."""
        try:
            self._queue.put_nowait(build)
        except asyncio.QueueFull:
            self.counts.dropped += 1
            return False
        self._idle.clear()
        return True

    async def drained(self) -> None:
        """Return once nothing is queued or in flight (while :meth:`running`)."""
        await self._idle.wait()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Send queued responses in the background while the block runs (what is still
        queued when it ends is not sent)."""
        task = asyncio.create_task(self._run(), name="ledger-responses")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._window and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            sends: list[Awaitable[None]] = []
            for build in batch:
                try:
                    send = build()
                except Exception:
                    _LOG.exception("could not build a response; dropped")
                    self.counts.dropped += 1
                    continue
                if send is not None:
                    sends.append(send)
            results = await asyncio.gather(*sends, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    self.counts.dropped += 1
                    _LOG.debug("response not confirmed: %r", result)
                else:
                    self.counts.sent += 1
            if self._queue.empty():
                self._idle.set()


MAX_AUDIT_REQUEST_BYTES = 256  # {"from_size": N} is about 30 bytes


def audit_from_size(payload: bytes) -> int | None:
    """N of an audit request ``{"from_size": N}`` (an int), or None."""
    if len(payload) > MAX_AUDIT_REQUEST_BYTES:
        return None
    try:
        request = json.loads(payload)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON
        return None
    if not isinstance(request, dict) or request.keys() != {"from_size"}:
        return None
    from_size = request["from_size"]
    if not isinstance(from_size, int) or isinstance(from_size, bool):
        return None
    return from_size


def rejection_reference(payload: bytes) -> tuple[str, int | None]:
    """The message id and seq of a rejected payload, as far as it can be read."""
    try:
        message = decode_message(payload)
    except MessageError:
        return hashlib.sha256(payload).hexdigest(), None
    return message.message_id, message.header.seq
