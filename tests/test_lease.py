"""Only one ledger process acts per database; a standby takes over when it dies."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from wattmesh.broker.errors import ConfigError
from wattmesh.ledger.lease import LeaderLease, LeaseLost, LeaseTimeout, lock_key

ROOT = Path(__file__).resolve().parents[1]

# A ledger-like process: takes the lease, says so, then holds it until killed.
_HOLDER = """
import sys
from wattmesh.ledger.lease import LeaderLease
lease = LeaderLease(sys.argv[1], name="m1")
lease.acquire(poll_s=0.05, on_wait=lambda: print("waiting", flush=True))
print("leader", flush=True)
lease.check()
sys.stdin.read()
"""


def test_lock_key_is_stable_and_signed_64_bit() -> None:
    assert lock_key("m1") == lock_key("m1") != lock_key("m2")
    assert -(2**63) <= lock_key("m1") < 2**63


def test_second_holder_is_refused_until_the_first_releases(db_url: str) -> None:
    with LeaderLease(db_url, name="m1") as first, LeaderLease(db_url, name="m1") as second:
        assert first.try_acquire()
        first.check()
        assert not second.try_acquire()
        with pytest.raises(LeaseTimeout, match="led by another process"):
            second.acquire(poll_s=0.01, timeout_s=0.05)
        with pytest.raises(LeaseLost):
            second.check()
        first.release()
        assert not first.held
        assert second.try_acquire()
        assert not first.try_acquire()


def test_leases_of_different_markets_do_not_conflict(db_url: str) -> None:
    with LeaderLease(db_url, name="m1") as a, LeaderLease(db_url, name="m2") as b:
        assert a.try_acquire() and b.try_acquire()


def test_in_memory_sqlite_is_refused() -> None:
    with LeaderLease("sqlite://", name="m1") as lease, pytest.raises(ConfigError, match="file"):
        lease.try_acquire()


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    return raw.decode().strip()


async def _start(db_url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        db_url,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_standby_process_takes_over_when_the_leader_is_killed(db_url: str) -> None:
    leader = await _start(db_url)
    standby: asyncio.subprocess.Process | None = None
    try:
        assert await _line(leader) == "leader"
        standby = await _start(db_url)
        # The standby tried, found the lease taken, and keeps waiting.
        assert await _line(standby) == "waiting"
        assert await _line(standby) == "waiting"
        leader.send_signal(signal.SIGKILL)
        await leader.wait()
        line = await _line(standby)
        while line == "waiting":
            line = await _line(standby)
        assert line == "leader"
    finally:
        for process in (leader, standby):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
