"""One acting ledger per database: a leadership lease that dies with its process.

Two ledger processes may be started on one database (a standby for fail-over). Only
the holder of the lease acts; the other waits and takes over when the holder dies.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a dedicated
  connection. The server releases it when that connection ends, whether the process
  exited, was killed, or lost the network.
- SQLite: an exclusive ``flock`` on ``<database file>.<lock key hex>.lease``; the kernel
  releases it when the process dies.

The holder should call :meth:`LeaderLease.check` before each interval it writes: if
the PostgreSQL connection was lost, so was the lock, and another process may already
be acting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from wattmesh.broker.errors import ConfigError, FailureError, LedgerError
from wattmesh.ledger.store import make_engine

__all__ = ["LeaderLease", "LeaseLost"]


class LeaseLost(LedgerError, FailureError):
    """The lease is no longer held: stop acting at once."""


class LeaseTimeout(LedgerError, FailureError):
    """The lease was not acquired within the time allowed."""


def lock_key(name: str) -> int:
    """The 64-bit signed advisory lock key for a lease name (stable across versions)."""
    digest = hashlib.sha256(f"wattmesh-ledger-lease/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _sqlite_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise ConfigError("a leadership lease needs a SQLite file, not an in-memory database")
    return Path(database)


class LeaderLease:
    """Hold leadership of ledger ``name`` on the database at ``url``."""

    def __init__(self, url: str, *, name: str) -> None:
        self.name = name
        self._engine = make_engine(url)
        self._key = lock_key(name)
        self._conn: Connection | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lease if it is free; never blocks."""
        if self.held:
            return True
        if self._engine.dialect.name == "postgresql":
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
            if got:
                self._conn = conn
                return True
            conn.close()
            return False
        database = _sqlite_path(self._engine)
        path = database.with_name(f"{database.name}.{self._key & (2**64 - 1):016x}.lease")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def acquire(
        self,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        """Block until the lease is ours; ``on_wait`` runs after each failed try."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.try_acquire():
            if on_wait is not None:
                on_wait()
            if deadline is not None and time.monotonic() >= deadline:
                raise LeaseTimeout(f"ledger {self.name!r} is led by another process")
            time.sleep(poll_s)

    def check(self) -> None:
        """Raise LeaseLost unless the lease is still held (PostgreSQL: session alive)."""
        if self._fd is not None:
            return
        if self._conn is None:
            raise LeaseLost(f"the lease on ledger {self.name!r} is not held")
        try:
            # The lock lives exactly as long as this session, and nothing else unlocks it.
            self._conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            self._drop_connection()
            raise LeaseLost(f"lost the database session holding ledger {self.name!r}") from exc

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):  # if the session is gone, so is the lock
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._drop_connection()
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def close(self) -> None:
        self.release()
        self._engine.dispose()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None

    def __enter__(self) -> LeaderLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
