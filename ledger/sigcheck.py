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


class PoolVerifier:
    """Checks signatures on ``workers`` processes; batches below ``min_batch`` inline
    (a round trip to the workers costs about a millisecond)."""

    def __init__(self, workers: int, *, min_batch: int = 64) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        context = multiprocessing.get_context("spawn")
        self._workers = workers
        self._min_batch = min_batch
        self._pool = ProcessPoolExecutor(workers, mp_context=context)

    def warm_up(self) -> None:
        """Start every worker now (spawning takes a fraction of a second each)."""
        list(self._pool.map(verify_jobs, [[] for _ in range(self._workers)]))

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
        """One chunk to the next free worker (small ones are checked inline)."""
        if len(jobs) < self._min_batch:
            done: Future[list[bool]] = Future()
            done.set_result(verify_jobs(jobs))
            return done
        return self._pool.submit(verify_jobs, list(jobs))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
