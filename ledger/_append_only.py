"""Append-only log tables, enforced by the database: triggers refuse UPDATE and DELETE.

SQLite: ``BEFORE UPDATE`` / ``BEFORE DELETE`` triggers that ``RAISE(ABORT, ...)``.
PostgreSQL: one trigger function raising an exception, attached ``BEFORE UPDATE OR
DELETE`` per row and ``BEFORE TRUNCATE`` per statement. Installing is idempotent and
runs whenever a store opens the database, so tables created by an older version gain
the triggers too. The error message always contains ``append-only``.

This stops mistakes and anyone with ordinary write access; someone with the rights to
drop triggers can still rewrite rows, which ``wattmesh ledger verify`` then detects
against the signed checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

PG_FUNCTION = "wattmesh_append_only"
_PG_LOCK_KEY = 0x77617474  # advisory lock serialising concurrent installs ("watt")


def trigger_names(table: str) -> tuple[str, ...]:
    """Names of the append-only triggers on ``table`` (same names on both databases)."""
    return (f"{table}_no_update", f"{table}_no_delete", f"{table}_no_truncate")


def install_append_only_triggers(engine: Engine, tables: Sequence[str]) -> None:
    """Create (if missing) the triggers that make ``tables`` append-only."""
    with engine.begin() as conn:
        install_append_only_triggers_on(conn, tables)


def install_append_only_triggers_on(conn: Connection, tables: Sequence[str]) -> None:
    """:func:`install_append_only_triggers` in the transaction of ``conn`` (a migration's)."""
    if conn.dialect.name == "sqlite":
        _install_sqlite(conn, tables)
    elif conn.dialect.name == "postgresql":
        _install_postgres(conn, tables)
    else:  # pragma: no cover - make_engine accepts only these two
        raise ValueError(f"no append-only triggers for {conn.dialect.name}")


def _install_sqlite(conn: Connection, tables: Sequence[str]) -> None:
    for table in tables:
        no_update, no_delete, _ = trigger_names(table)
        for name, event in ((no_update, "UPDATE"), (no_delete, "DELETE")):
            conn.execute(
                text(
                    f'CREATE TRIGGER IF NOT EXISTS "{name}" BEFORE {event} ON "{table}" '
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {event} refused'); END"
                )
            )


def _install_postgres(conn: Connection, tables: Sequence[str]) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    conn.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {PG_FUNCTION}() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP "
            "USING ERRCODE = 'insufficient_privilege'; "
            "END $$"
        )
    )
    existing = {
        str(name)
        for (name,) in conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
    }
    for table in tables:
        no_update, no_delete, no_truncate = trigger_names(table)
        statements = {
            no_update: f'BEFORE UPDATE ON "{table}" FOR EACH ROW',
            no_delete: f'BEFORE DELETE ON "{table}" FOR EACH ROW',
            no_truncate: f'BEFORE TRUNCATE ON "{table}" FOR EACH STATEMENT',
        }
        for name, when in statements.items():
            if name not in existing:
                conn.execute(
                    text(f'CREATE TRIGGER "{name}" {when} EXECUTE FUNCTION {PG_FUNCTION}()')
                )
