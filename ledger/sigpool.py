"""Check many ECDSA signatures, in order of log position, inline or on worker processes.

``cryptography`` holds the GIL while it verifies, so threads do not help; worker
processes (``spawn``, so nothing of the parent's state is inherited) take chunks of
``(position, key DER, signature, signed bytes)`` and return the first position whose
signature fails. The caller submits while it keeps checking the rest of the log and
asks, at the end or when it finds another problem, for the first failure before a
position.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache

from broker.keys import VerifyingKey

Job = tuple[int, bytes, bytes, bytes]
"""``(log position, DER SubjectPublicKeyInfo, DER signature, signed bytes)``."""

CHUNK = 512


@lru_cache(maxsize=65_536)
def _key(der: bytes) -> VerifyingKey:
    return VerifyingKey.from_der(der)


def first_bad_signature(jobs: Sequence[Job]) -> int | None:
    """The first position in ``jobs`` whose signature does not verify, or None."""
    for position, der, signature, signed in jobs:
        if not _key(der).verify(signature, signed):
            return position
    return None


class SignatureChecker:
    """Collects signature checks; ``workers <= 1`` checks each one at once, inline."""

    def __init__(self, workers: int) -> None:
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=context)
        self._jobs: list[Job] = []
        self._futures: deque[Future[int | None]] = deque()
        self._failure: int | None = None

    def add(self, position: int, der: bytes, signature: bytes, signed: bytes) -> int | None:
        """Queue one check; inline, return ``position`` at once if it fails, else None."""
        if self._pool is None:
            return None if _key(der).verify(signature, signed) else position
        self._jobs.append((position, der, signature, signed))
        if len(self._jobs) >= CHUNK:
            self._submit()
        return None

    def _submit(self) -> None:
        if self._jobs and self._pool is not None:
            self._futures.append(self._pool.submit(first_bad_signature, self._jobs))
            self._jobs = []

    def first_failure(self) -> int | None:
        """Wait for every queued check; the first failing position, or None."""
        self._submit()
        while self._futures:
            result = self._futures.popleft().result()
            if result is not None and (self._failure is None or result < self._failure):
                self._failure = result
        return self._failure

    def close(self) -> None:
        if self._pool is not None:
            for future in self._futures:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
