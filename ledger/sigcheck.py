"""Batch decoding and signature checks for the ledger's ingest (inline or on workers).

A decode job ``(payload, key DER or None)`` gets the decoded message (or the
MessageError saying why it does not decode) and whether its signature verified against
that key (:func:`decode_and_verify`), so that the ledger's process neither parses nor
verifies. ``cryptography`` holds the GIL while it
verifies, so only processes help: :class:`PoolVerifier` splits a batch into one chunk
per worker (``spawn`` context, nothing of the parent is inherited; keys are parsed once
per worker and cached). The ledger's state is never touched here: the checks that depend
on it (keys valid now, sequence numbers, duplicates, timing) stay in the ledger, applied
in arrival order.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from wattmesh.broker.bodies import BODY_TYPES
from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import Header, SignedMessage, decode_message

__all__ = ["InlineVerifier", "PoolVerifier", "SignatureVerifier", "preload"]

DecodeJob = tuple[bytes, bytes | None]
"""``(payload, DER of the key to check its signature against, or None)``."""

Checked = tuple[SignedMessage | MessageError, bool]
"""A decode job's result: the message (or why it does not decode), and True when its
signature verified against the job's key (which has the key id the message names)."""

_R = TypeVar("_R")
_W = TypeVar("_W")


class SignatureVerifier(Protocol):
    def submit_decode(self, jobs: Sequence[DecodeJob]) -> Future[list[Checked]]:
        """:func:`decode_and_verify` of ``jobs``, started now; one result per job, in
        order, in the future (which may already be done)."""
        ...


@lru_cache(maxsize=65_536)
def _key(der: bytes) -> VerifyingKey:
    return VerifyingKey.from_der(der)


def decode_and_verify(jobs: Sequence[DecodeJob]) -> list[Checked]:
    """Decode each payload and, when the job has a key with the key id the message
    names, check the signature against it; in this process."""
    results: list[Checked] = []
    for payload, der in jobs:
        try:
            message = decode_message(payload)
        except MessageError as exc:
            results.append((exc, False))
            continue
        ok = False
        if der is not None:
            key = _key(der)
            ok = key.kid == message.header.kid and key.verify(
                message.signature, message.signed_bytes
            )
        results.append((message, ok))
    return results


Packed = MessageError | tuple[tuple[str, str, int, str, str, int, int], Any, bytes, bytes, bool]
"""A decode job's result as a worker sends it back: plain tuples, which pickle in a
fraction of the time of the message objects (header fields, body JSON, signature,
signed bytes, verified)."""


def decode_and_verify_packed(jobs: Sequence[DecodeJob]) -> list[Packed]:
    """:func:`decode_and_verify`, the results packed for the trip back."""
    packed: list[Packed] = []
    for message, ok in decode_and_verify(jobs):
        if isinstance(message, MessageError):
            packed.append(message)
        else:
            h = message.header
            fields = (h.kind, h.market, h.interval, h.agent, h.kid, h.seq, h.expires)
            packed.append(
                (fields, message.body.to_json(), message.signature, message.signed_bytes, ok)
            )
    return packed


def unpack(packed: Sequence[Packed]) -> list[Checked]:
    """The results :func:`decode_and_verify_packed` packed, as messages again."""
    results: list[Checked] = []
    for item in packed:
        if isinstance(item, MessageError):
            results.append((item, False))
            continue
        fields, body, signature, signed_bytes, ok = item
        header = Header(*fields)
        message = SignedMessage(
            header, BODY_TYPES[header.kind].from_json(body), signature, signed_bytes
        )
        results.append((message, ok))
    return results


def _done(result: _R) -> Future[_R]:
    done: Future[_R] = Future()
    done.set_result(result)
    return done


class InlineVerifier:
    """Checks every signature in the calling process."""

    def submit_decode(self, jobs: Sequence[DecodeJob]) -> Future[list[Checked]]:
        return _done(decode_and_verify(jobs))


def preload(ders: Sequence[bytes]) -> None:
    """Parse these keys now (each worker runs this as it starts): loading a key costs
    about as much as one verification, so a ledger hands over its registered keys
    rather than paying that in the first interval. Keys added later load on first use."""
    for der in ders:
        _key(der)


class PoolVerifier:
    """Checks signatures on ``workers`` processes; batches below ``min_batch`` inline
    (a round trip to the workers costs about a millisecond). ``keys``: DER encodings of
    the keys to load in every worker as it starts (see :func:`preload`)."""

    def __init__(self, workers: int, *, min_batch: int = 64, keys: Sequence[bytes] = ()) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        context = multiprocessing.get_context("spawn")
        self._workers = workers
        self._min_batch = min_batch
        self._pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=preload, initargs=(list(keys),)
        )

    def warm_up(self) -> None:
        """Start every worker now and wait until each has loaded its keys (spawning
        takes a fraction of a second each): one task per worker, each holding its
        worker until all have one, so none is left to start later."""
        with multiprocessing.get_context("spawn").Manager() as manager:
            barrier = manager.Barrier(self._workers)
            list(self._pool.map(_meet, [barrier] * self._workers))

    def submit_decode(self, jobs: Sequence[DecodeJob]) -> Future[list[Checked]]:
        """The batch split over the workers (small ones are decoded inline); the
        results, in order, once every part is back (packed for the trip, unpacked here)."""
        if len(jobs) < self._min_batch:
            return _done(decode_and_verify(jobs))
        step = -(-len(jobs) // self._workers)
        parts = [
            self._pool.submit(decode_and_verify_packed, list(jobs[i : i + step]))
            for i in range(0, len(jobs), step)
        ]
        return _all_of(parts, unpack)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _meet(barrier: threading.Barrier) -> None:
    barrier.wait(timeout=120)


def _all_of(
    parts: list[Future[list[_W]]], convert: Callable[[list[_W]], list[_R]]
) -> Future[list[_R]]:
    """One future for ``convert`` of the concatenated results of ``parts`` (or the first
    error)."""
    combined: Future[list[_R]] = Future()
    lock = threading.Lock()
    left = [len(parts)]

    def one_done(_part: Future[list[_W]]) -> None:
        with lock:
            left[0] -= 1
            if left[0] or combined.done():
                return
        try:
            results = convert([r for part in parts for r in part.result()])
        except Exception as exc:  # a failed or cancelled part: handed to whoever waits
            combined.set_exception(exc)
        else:
            combined.set_result(results)

    for part in parts:
        part.add_done_callback(one_done)
    return combined
