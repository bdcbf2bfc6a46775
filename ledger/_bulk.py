"""Bulk inserts of the log tables through a DBAPI cursor: the store's hot path.

Rows are plain tuples in the column order given. SQLite (``sqlite3``) gets one
``executemany``; PostgreSQL (psycopg 3) gets ``COPY ... FROM STDIN``, which streams the
rows in one round trip instead of one parameter set per row. Both run inside the
caller's transaction (the cursor's connection), so the interval stays atomic.
Only constant table and column names go into the SQL text, never values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

LOG_COLUMNS = ("idx", "interval", "kind", "agent", "agent_seq", "data", "leaf_hash")
NODE_COLUMNS = ("level", "idx", "hash")
CHECKPOINT_COLUMNS = ("tree_size", "interval", "root", "kid", "signature")

BulkWriter = Callable[[Any, str, Sequence[str], Sequence[Sequence[object]]], None]


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def sqlite_executemany(
    cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """One ``executemany`` of ``rows`` into ``table`` (sqlite3 ``?`` placeholders)."""
    if rows:
        marks = ", ".join("?" for _ in columns)
        cursor.executemany(f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({marks})", rows)  # noqa: S608


def postgres_copy(
    cursor: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """``COPY table (columns) FROM STDIN`` of ``rows`` (psycopg 3 ``cursor.copy``)."""
    if rows:
        with cursor.copy(f"COPY {table} ({_quoted(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def bulk_writer(dialect: str) -> BulkWriter:
    """The bulk insert for a SQLAlchemy dialect name (``sqlite`` or ``postgresql``)."""
    if dialect == "postgresql":
        return postgres_copy
    return sqlite_executemany
