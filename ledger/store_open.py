"""Opening a ledger database, and its failures as one-line errors.

Which URLs are accepted, whether a SQLite path can hold one, a read-only engine, and
database failures as :class:`StoreError` (one line).

A SQLite file is checked before SQLite touches it: its folder must exist, and an
existing file must be a SQLite database (its 16-byte header) or empty. Read-only
commands open an existing database only: SQLite with ``mode=ro`` (no file is created;
SQLite may add its ``-wal``/``-shm`` files beside a WAL database, as any reader does),
PostgreSQL with ``default_transaction_read_only``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import QueuePool

from wattmesh.broker.errors import ConfigError
from wattmesh.ledger.store_errors import NoLedgerDatabase, StoreError

__all__ = [
    "LEDGER_TABLES",
    "check_sqlite_location",
    "failure_reason",
    "normalise_db_url",
    "pg_connect_args",
    "shown_url",
    "sqlite_path",
    "store_failures",
]

SQLITE_HEADER = b"SQLite format 3\x00"
LEDGER_TABLES = frozenset({"log_entry", "checkpoint", "merkle_node", "ledger_meta"})
"""The tables every ledger database has (the intake and snapshot came later)."""


def normalise_db_url(url: str) -> str:
    """Accept ``sqlite:///file``, ``postgresql://...``; pick the psycopg 3 driver."""
    if url.startswith(("postgresql://", "postgres://")):
        normalised = "postgresql+psycopg://" + url.split("://", 1)[1]
    elif url.startswith(("sqlite://", "postgresql+psycopg://")):
        normalised = url
    else:
        raise ConfigError(
            f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://..."
        )
    try:
        make_url(normalised)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"malformed database URL {shown_url(url)!r}: {exc}") from exc
    return normalised


PG_CONNECT_TIMEOUT_S = 10
"""How long a PostgreSQL connection attempt may take before it fails (a host that drops
packets would otherwise hold a command until the operating system gives up); a
``connect_timeout`` in the URL's query wins."""


def pg_connect_args(url: str) -> dict[str, object]:
    """The driver options every PostgreSQL engine gets: the connect timeout."""
    if "connect_timeout" in make_url(normalise_db_url(url)).query:
        return {}
    return {"connect_timeout": PG_CONNECT_TIMEOUT_S}


def shown_url(url: str) -> str:
    """A database URL without its password, for messages."""
    head, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{head}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory SQLite or another database."""
    parsed = make_url(normalise_db_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def check_sqlite_location(path: Path, url: str) -> None:
    """Raise :class:`NoLedgerDatabase` unless ``path`` can hold the database: its
    folder exists, and the file, if there is one, is a SQLite database or empty."""
    folder = path.parent
    if not folder.is_dir():
        raise NoLedgerDatabase(f"database {url}: no folder {folder}")
    if not path.exists():
        return
    if not path.is_file():
        raise NoLedgerDatabase(f"database {url}: {path} is not a file")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise NoLedgerDatabase(f"database {url}: cannot read {path}: {exc.strerror}") from exc
    if header and header != SQLITE_HEADER:
        raise NoLedgerDatabase(f"database {url}: {path} is not a SQLite database")


def read_only_engine(url: str) -> Engine:
    """An engine on an existing database that cannot write to it; raise
    :class:`NoLedgerDatabase` for a missing or non-SQLite file or an in-memory URL."""
    normalised = normalise_db_url(url)
    if make_url(normalised).get_backend_name() != "sqlite":
        options = {"options": "-c default_transaction_read_only=on", **pg_connect_args(url)}
        return create_engine(normalised, connect_args=options)
    path = sqlite_path(url)
    if path is None:
        raise NoLedgerDatabase(f"database {url}: a ledger is read from a SQLite file")
    if not path.exists():
        raise NoLedgerDatabase(f"no ledger database at {url}: no such file")
    check_sqlite_location(path, url)
    uri = path.resolve().as_uri() + "?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return create_engine(f"sqlite:///{path}", creator=connect, poolclass=QueuePool)


@contextlib.contextmanager
def store_failures(url: str) -> Iterator[None]:
    """Turn a failure of the database (cannot connect, disk I/O, a damaged file: the
    DB-API's OperationalError, SQLite's plain DatabaseError) raised inside into a
    :class:`StoreError` of one line naming the database; programming errors (integrity,
    SQL) pass unchanged."""
    try:
        yield
    except Exception as exc:
        reason = failure_reason(exc)
        if reason is None:
            raise
        raise StoreError(f"database {shown_url(url)}: {reason}") from exc


def failure_reason(exc: BaseException) -> str | None:
    """One line saying why the database failed, or None if ``exc`` is no such failure."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    psycopg = sys.modules.get("psycopg")
    failed = (
        isinstance(orig, sqlite3.OperationalError)
        or type(orig) is sqlite3.DatabaseError  # "file is not a database", "malformed"
        or (psycopg is not None and isinstance(orig, psycopg.OperationalError))
    )
    return " ".join(str(orig).split()) if failed else None
