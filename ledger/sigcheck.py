"""Batch signature checks for :meth:`ledger.ledger.Ledger.ingest_many`, inline or on a
process pool.

A job is ``(key DER, DER signature, signed bytes)``; a verifier returns one bool per job,
in order. ``cryptography`` holds the GIL while it verifies, so only processes help:
:class:`PoolVerifier` splits a batch into one chunk per worker (``spawn`` context,
nothing of the parent is inherited; keys are parsed once per worker and cached). The
ledger's state is never touched here: the checks that depend on it (sequence numbers,
duplicates, timing) stay in the ledger, applied in arrival order.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache
from typing import Protocol

from broker.keys import VerifyingKey

SignatureJob = tuple[bytes, bytes, bytes]
"""``(public key DER, DER signature, signed bytes)``."""


class SignatureVerifier(Protocol):
    def verify_all(self, jobs: Sequence[SignatureJob]) -> list[bool]:
        """One verdict per job, in order: True when the signature verifies."""
        ...

    def submit(self, jobs: Sequence[SignatureJob]) -> Future[list[bool]]:
        """:meth:`verify_all` started now, its verdicts in the future (which may
        already be done), so the caller can prepare the next jobs meanwhile."""
        ...


@lru_cache(maxsize=65_536)
def _key(der: bytes) -> VerifyingKey:
    return VerifyingKey.from_der(der)


def verify_jobs(jobs: Sequence[SignatureJob]) -> list[bool]:
    """Check each job in this process."""
    return [_key(der).verify(sig, data) for der, sig, data in jobs]


class InlineVerifier:
    """Checks every signature in the calling process."""

    def verify_all(self, jobs: Sequence[SignatureJob]) -> list[bool]:
        return verify_jobs(jobs)

    def submit(self, jobs: Sequence[SignatureJob]) -> Future[list[bool]]:
        done: Future[list[bool]] = Future()
        done.set_result(verify_jobs(jobs))
        return done


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

    def verify_all(self, jobs: Sequence[SignatureJob]) -> list[bool]:
        if len(jobs) < self._min_batch:
            return verify_jobs(jobs)
        step = -(-len(jobs) // self._workers)
        chunks = [list(jobs[i : i + step]) for i in range(0, len(jobs), step)]
        verdicts: list[bool] = []
        for part in self._pool.map(verify_jobs, chunks):
            verdicts += part
        return verdicts

    def submit(self, jobs: Sequence[SignatureJob]) -> Future[list[bool]]:
        """The batch split over the workers (small ones are checked inline); the
        verdicts, in order, once every part is back."""
        if len(jobs) < self._min_batch:
            done: Future[list[bool]] = Future()
            done.set_result(verify_jobs(jobs))
            return done
        step = -(-len(jobs) // self._workers)
        parts = [
            self._pool.submit(verify_jobs, list(jobs[i : i + step]))
            for i in range(0, len(jobs), step)
        ]
        return _all_of(parts)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _meet(barrier: threading.Barrier) -> None:
    barrier.wait(timeout=120)


def _all_of(parts: list[Future[list[bool]]]) -> Future[list[bool]]:
    """One future for the concatenated results of ``parts`` (or the first error)."""
    combined: Future[list[bool]] = Future()
    lock = threading.Lock()
    left = [len(parts)]

    def one_done(_part: Future[list[bool]]) -> None:
        with lock:
            left[0] -= 1
            if left[0] or combined.done():
                return
        try:
            verdicts = [v for part in parts for v in part.result()]
        except Exception as exc:  # a failed or cancelled part: handed to whoever waits
            combined.set_exception(exc)
        else:
            combined.set_result(verdicts)

    for part in parts:
        part.add_done_callback(one_done)
    return combined
