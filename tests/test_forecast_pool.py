"""forecast serve's fitting pool: a hung fit times out and the next fit runs in new processes."""

from __future__ import annotations

import functools
import os
import time

import pytest

from wattmesh.forecasting._pool import FitPool


async def test_a_hung_fit_times_out_and_the_next_runs_in_a_new_process() -> None:
    pool = FitPool(1, timeout_s=2)
    try:
        first = await pool.run(os.getpid)
        assert first != os.getpid()  # in a fitting process
        with pytest.raises(TimeoutError):
            await pool.run(functools.partial(time.sleep, 120))  # a worker that hangs
        assert pool.timeouts == 1
        second = await pool.run(os.getpid)  # not queued behind the hung one
        assert second not in (first, os.getpid())
        assert await pool.run(functools.partial(sum, [1, 2, 3])) == 6
    finally:
        pool.close()


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        FitPool(0)
