"""The read model's writes: rows by primary key, bulk inserts, totals and sync state.

Rows are replaced by primary key, inserted through the driver's cursor, the households'
totals kept as the difference each batch makes, the sync state read and written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, select, tuple_
from sqlalchemy.engine import Connection

from wattmesh.dashboard import _tables as t

__all__ = ["APPLIED_SIZE"]

APPLIED_SIZE = "applied_size"


def _replace(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: tuple[str, ...],
    existing: Mapping[Any, Any] | None,
) -> None:
    """Write ``rows`` in place of the rows with their primary keys: delete those that
    exist (all when ``existing`` is None, else those whose key is in it), insert all."""
    if not rows:
        return

    def pk(row: Mapping[str, Any]) -> Any:
        return row[key[0]] if len(key) == 1 else tuple(row[k] for k in key)

    old = [pk(r) for r in rows if existing is None or pk(r) in existing]
    columns = [table.c[k] for k in key]
    for part in _chunks(old, 500):
        match = columns[0].in_(part) if len(key) == 1 else tuple_(*columns).in_(part)
        conn.execute(table.delete().where(match))
    _insert(conn, table, rows)


def _insert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` through the driver's cursor in the transaction of ``conn``:
    ``executemany`` of plain tuples on SQLite, ``COPY`` on PostgreSQL (psycopg's
    executemany costs a round of its pipeline per row; SQLAlchemy's per-row parameter
    processing costs more than SQLite's own work)."""
    if not rows:
        return
    names = [c.name for c in table.columns]
    defaults = [c.default.arg if c.default is not None else None for c in table.columns]  # type: ignore[attr-defined]
    values = [[row.get(n, d) for n, d in zip(names, defaults, strict=True)] for row in rows]
    quoted = ", ".join(f'"{n}"' for n in names)
    cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "postgresql":
            sql = f'COPY "{t.PG_SCHEMA}"."{table.name}" ({quoted}) FROM STDIN'
            with cursor.copy(sql) as copy:
                for value in values:
                    copy.write_row(value)
        else:
            marks = ", ".join("?" for _ in names)
            sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})'  # noqa: S608 (the table's own names)
            cursor.executemany(sql, values)
    finally:
        cursor.close()


def _add_totals(conn: Connection, deltas: Mapping[str, Mapping[str, int]]) -> None:
    if not deltas:
        return
    table = t.household_total
    current: dict[str, dict[str, Any]] = {}
    for part in _chunks(sorted(deltas), 500):
        for r in conn.execute(select(table).where(table.c.household.in_(part))).mappings():
            current[r["household"]] = dict(r)
    rows = []
    for household, delta in deltas.items():
        row = current.get(household) or {"household": household, **dict.fromkeys(delta, 0)}
        rows.append({**row, **{name: int(row[name]) + value for name, value in delta.items()}})
    _replace(conn, table, rows, ("household",), current)


def _claim(conn: Connection, size: int) -> bool:
    """Whether the read model still holds ``size`` folded entries (the row locked)."""
    table = t.sync_state
    query = select(table.c.value).where(table.c.key == APPLIED_SIZE).with_for_update()
    value = conn.execute(query).scalar_one_or_none()
    return int(value or 0) == size


def _get_state(conn: Connection, key: str) -> str | None:
    table = t.sync_state
    value = conn.execute(select(table.c.value).where(table.c.key == key)).scalar_one_or_none()
    return None if value is None else str(value)


def _set_state(conn: Connection, key: str, value: str) -> None:
    table = t.sync_state
    conn.execute(table.delete().where(table.c.key == key))
    conn.execute(table.insert().values(key=key, value=value))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
