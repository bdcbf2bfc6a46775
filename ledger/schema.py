"""The ledger database's schema version, and its migrations (Alembic).

The version is the Alembic revision stamped in the table :data:`VERSION_TABLE`; the
revisions live in ``ledger/migrations/versions`` (shipped in the package; no
``alembic.ini``: :func:`run_migrations` drives Alembic with the open connection).
A database is in one of these states (:class:`SchemaState`):

- **empty** (none of the ledger's tables, no version): a new ledger. Opening it to
  write creates the schema at the head revision: no step is needed to start a market.
- **current** (stamped with the head revision): opens.
- **older** (stamped with an older known revision, or *unversioned*: the ledger tables
  without a version table, as every ledger before the schema had one): opening it to
  write is refused (:class:`SchemaVersionError`, exit 2) until ``wattmesh ledger
  migrate --db URL`` brings it to the head; read-only commands (``verify``, proofs,
  statements) read it as it is.
- **newer** (stamped with a revision this code does not know: a newer wattmesh wrote
  it): refused, to write and to read.

Migrations are explicit because a production operator wants to take a backup first
and to know when one runs; creating a new ledger is not a migration. On PostgreSQL the
check-and-create of a new ledger and every migration hold an advisory lock in their
transaction (a leader and a standby starting together create it once).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from wattmesh.ledger.store_errors import NoLedgerDatabase, SchemaVersionError
from wattmesh.ledger.store_open import (
    LEDGER_TABLES,
    check_sqlite_location,
    shown_url,
    sqlite_path,
    store_failures,
)

__all__ = [
    "VERSION_TABLE",
    "SchemaState",
    "check_readable",
    "head_revision",
    "migrate",
    "migrate_database",
    "open_for_writing",
    "schema_state",
]

VERSION_TABLE = "ledger_schema_version"
MIGRATIONS = Path(__file__).resolve().with_name("migrations")
_PG_LOCK_KEY = 0x77617475  # advisory lock serialising schema changes ("watu")
UNVERSIONED = "unversioned"


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    """The revision this code writes (the newest in ``ledger/migrations/versions``)."""
    head = _script().get_current_head()
    assert head is not None, "no ledger migrations shipped"
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in _script().walk_revisions())


@dataclass(frozen=True)
class SchemaState:
    """What a database holds: its stamped ``revision`` (None: no version table) and
    whether it has any of the ledger's tables."""

    revision: str | None
    has_ledger: bool

    @property
    def empty(self) -> bool:
        return self.revision is None and not self.has_ledger

    @property
    def shown(self) -> str:
        return self.revision or UNVERSIONED

    @property
    def described(self) -> str:
        if self.revision is None:
            return "has no version (a ledger from before the schema had one)"
        return f"is at revision {self.revision}"

    @property
    def current(self) -> bool:
        return self.revision == head_revision()

    @property
    def newer(self) -> bool:
        return self.revision is not None and self.revision not in known_revisions()


def schema_state(conn: Connection) -> SchemaState:
    tables = set(inspect(conn).get_table_names())
    revision = None
    if VERSION_TABLE in tables:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        revision = context.get_current_revision()
    return SchemaState(revision, bool(tables & LEDGER_TABLES))


def _too_new(url: str, state: SchemaState) -> SchemaVersionError:
    return SchemaVersionError(
        f"database {shown_url(url)}: its ledger schema is at revision {state.revision}, "
        f"which this wattmesh does not know (it knows up to {head_revision()}): a newer "
        "wattmesh wrote it; upgrade wattmesh"
    )


def _lock(conn: Connection) -> None:
    """Serialise schema changes: PostgreSQL's advisory lock for this transaction; on
    SQLite the write lock at once (``BEGIN IMMEDIATE``: the driver would otherwise run
    each DDL statement in a transaction of its own, one disk sync each)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def run_migrations(conn: Connection, target: str = "head") -> None:
    """Upgrade the database of ``conn`` to ``target`` in ``conn``'s transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, target)


def open_for_writing(engine: Engine, url: str) -> None:
    """Make a new ledger's schema in an empty database; let a current one be; refuse an
    older one (it needs ``ledger migrate``) or a newer one. Only the creation takes the
    lock: opening an existing ledger waits for no writer."""
    with engine.connect() as conn:
        state = schema_state(conn)
    if state.empty:
        with engine.begin() as conn:
            _lock(conn)
            state = schema_state(conn)  # another process may have made it meanwhile
            if state.empty:
                run_migrations(conn)
                return
    if state.current:
        return
    if state.newer:
        raise _too_new(url, state)
    raise SchemaVersionError(
        f"database {shown_url(url)}: its ledger schema {state.described}; this wattmesh "
        f"writes revision {head_revision()}: back the database up, then run "
        f"`wattmesh ledger migrate --db {shown_url(url)}`"
    )


def check_readable(engine: Engine, url: str) -> SchemaState:
    """The schema of a database opened read-only: the ledger's tables at any known
    revision (or none) are read as they are; no ledger, or a newer one, is refused."""
    with engine.connect() as conn:
        if not set(inspect(conn).get_table_names()) >= LEDGER_TABLES:
            raise NoLedgerDatabase(f"database {url} holds no ledger")
        state = schema_state(conn)
    if state.newer:
        raise _too_new(url, state)
    return state


def migrate_database(url: str) -> tuple[str, str]:
    """Bring the ledger at ``url`` to this code's schema revision (``wattmesh ledger
    migrate``): :func:`migrate` on a fresh engine; a missing SQLite file is
    :class:`NoLedgerDatabase` (nothing is created)."""
    from wattmesh.ledger.store import make_engine  # the store imports this module

    path = sqlite_path(url)
    if path is not None:
        if not path.exists():
            raise NoLedgerDatabase(f"no ledger database at {url}: no such file")
        check_sqlite_location(path, url)
    engine = make_engine(url)
    try:
        with store_failures(url):
            return migrate(engine, url)
    finally:
        engine.dispose()


def migrate(engine: Engine, url: str) -> tuple[str, str]:
    """Bring the ledger in ``engine``'s database up to the head revision, in one
    transaction; its revision before and after (``unversioned`` for a ledger from
    before the schema had a version)."""
    with engine.begin() as conn:
        _lock(conn)
        state = schema_state(conn)
        if state.empty:
            raise NoLedgerDatabase(
                f"database {shown_url(url)} holds no ledger to migrate (a new ledger's "
                "schema is made when `wattmesh ledger run` first opens it)"
            )
        if state.newer:
            raise _too_new(url, state)
        if not state.current:
            run_migrations(conn)
    return state.shown, head_revision()
