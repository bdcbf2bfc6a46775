"""``forecast serve``'s fitting processes: a process pool whose hung work cannot stall it.

Each call runs in one of ``workers`` processes (``forkserver``: no threads or sockets of
the service are inherited), at most :data:`FIT_TIMEOUT_S`. A call that takes longer (a
worker that hangs) raises :class:`TimeoutError`; the pool's processes are then killed and
the next call starts a new pool, so the other households keep being fitted.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

__all__ = ["FIT_TIMEOUT_S", "FitPool"]

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")
FIT_TIMEOUT_S = 300
"""The longest one call may take (one household's fit: Prophet takes about a second)."""


class FitPool:
    """See the module docstring."""

    def __init__(self, workers: int, *, timeout_s: float = FIT_TIMEOUT_S) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, got {workers}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.timeouts = 0
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, call: Callable[[], _T]) -> _T:
        """``call()`` (picklable) in a fitting process; TimeoutError after ``timeout_s``."""
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
        pool = self._pool
        try:
            return await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(pool, call), self.timeout_s
            )
        except TimeoutError:
            self.timeouts += 1
            _LOG.error(
                "a fit took over %.0f s: the fitting processes are restarted", self.timeout_s
            )
            if self._pool is pool:
                self._pool = None
                _kill(pool)
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._pool = None


def _kill(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` without waiting for its work: its processes are killed (a hung one
    would never take the shutdown request)."""
    processes = getattr(pool, "_processes", None) or {}  # CPython's; no public way in 3.11
    for process in list(processes.values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
