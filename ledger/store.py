"""The ledger's append-only tables (SQLModel) and the adapter that reads and writes them.

SQLite by default (a file URL), PostgreSQL by URL. Each interval is appended in one
database transaction together with the checkpoint that covers it and the Merkle tree
nodes it completes, so every committed entry is covered by a signed checkpoint and
proofs read O(log n) rows (:class:`StoreHashSource`). The log tables are append-only in
the database itself: triggers refuse UPDATE and DELETE (``ledger/_append_only.py``).

Beside the log, the intake (:class:`IntakeRow`) keeps the household messages accepted
into the open interval as they are accepted, so a restarted ledger can admit them
again when it reopens the interval; the interval's close deletes them in the
transaction that logs them. It is a journal, not part of the log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    Table,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import TextClause
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from wattmesh.broker.errors import ConfigError
from wattmesh.ledger._append_only import install_append_only_triggers
from wattmesh.ledger._bulk import CHECKPOINT_COLUMNS, LOG_COLUMNS, NODE_COLUMNS, bulk_writer
from wattmesh.ledger._merkle import leaf_hash
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.proofs import NodeRef, nodes_ending_in
from wattmesh.ledger.schema import check_readable, open_for_writing
from wattmesh.ledger.store_open import (
    check_sqlite_location,
    normalise_db_url,
    pg_connect_args,
    read_only_engine,
    sqlite_path,
    store_failures,
)

__all__ = ["CheckpointRow", "LedgerStore", "LogEntry"]

LOG_TABLE = "log_entry"
CHECKPOINT_TABLE = "checkpoint"
NODE_TABLE = "merkle_node"
META_TABLE = "ledger_meta"
INTAKE_TABLE = "intake"
INTAKE_COLUMNS = ("interval", "agent", "wire")
SNAPSHOT_TABLE = "state_snapshot"
APPEND_ONLY_TABLES = (LOG_TABLE, CHECKPOINT_TABLE, NODE_TABLE)


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


class LogEntry(SQLModel, table=True):
    """One leaf of the Merkle log. ``idx`` is its position (0-based)."""

    __tablename__ = LOG_TABLE
    __table_args__ = (UniqueConstraint("agent", "agent_seq", name="uq_agent_seq"),)

    idx: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    interval: int = Field(index=True)
    kind: str = Field(max_length=16)
    agent: str | None = Field(default=None, max_length=64, index=True)
    agent_seq: int | None = Field(default=None)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A signed tree head: the operator's signature over the checkpoint text."""

    __tablename__ = CHECKPOINT_TABLE

    tree_size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    interval: int
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kid: str = Field(max_length=64)
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class MerkleNodeRow(SQLModel, table=True):
    """A complete aligned subtree of level >= 1: the hash of leaves
    ``[idx * 2**level, (idx + 1) * 2**level)``. Level 0 is ``log_entry.leaf_hash``."""

    __tablename__ = NODE_TABLE

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(
        sa_column=Column(BigInteger, primary_key=True, autoincrement=False, nullable=False)
    )
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class MetaRow(SQLModel, table=True):
    """Ledger-wide facts: market id, origin, the operator's public key."""

    __tablename__ = META_TABLE

    key: str = Field(primary_key=True, max_length=64)
    value: str


class IntakeRow(SQLModel, table=True):
    """A household message accepted into the open ``interval`` and not yet logged: its
    signed envelope as received (``wire``) and the household whose topic it came on."""

    __tablename__ = INTAKE_TABLE

    id: int | None = Field(default=None, primary_key=True)
    interval: int = Field(index=True)
    agent: str | None = Field(default=None, max_length=64)
    wire: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


def make_engine(url: str) -> Engine:
    normalised = normalise_db_url(url)
    if normalised.startswith("postgresql"):
        return create_engine(normalised, connect_args=pg_connect_args(url))
    engine = create_engine(normalised)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


STORED_COLUMNS = ("idx", "interval", "kind", "agent", "agent_seq", "data", "leaf_hash")

StoredEntry = tuple[int, int, str, str | None, int | None, bytes, bytes]
"""A log entry's columns as the driver's plain row, in :data:`STORED_COLUMNS` order (what
the verifier reads: a named tuple would cost a Python call per entry)."""


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    interval: int
    root: bytes
    kid: str
    signature: bytes


class SnapshotRow(SQLModel, table=True):
    """The ledger's derived state as of ``tree_size`` entries (:mod:`ledger._snapshot`):
    not part of the log; only the latest is kept."""

    __tablename__ = SNAPSHOT_TABLE

    tree_size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LedgerStore:
    """Append-only access to the log tables.

    ``LedgerStore(url)`` opens the database to write: an empty one gets a new ledger's
    schema (a SQLite file in an existing folder), another schema version is refused
    (``ledger/schema.py``); :meth:`read_only` opens an existing ledger, changing
    nothing. :class:`NoLedgerDatabase`: the URL names no usable database;
    :class:`ledger.store_errors.StoreError`: the database fails.
    """

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        if path is not None:
            check_sqlite_location(path, url)
        self.engine = make_engine(url)
        try:
            with store_failures(url):
                open_for_writing(self.engine, url)  # SchemaVersionError: migrate first
                install_append_only_triggers(self.engine, APPEND_ONLY_TABLES)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def read_only(cls, url: str) -> LedgerStore:
        """An existing ledger database, opened so that nothing can be written: SQLite
        ``mode=ro`` (a missing file is :class:`NoLedgerDatabase`, never created),
        PostgreSQL in read-only transactions; an older schema is read as it is."""
        store = cls.__new__(cls)
        store.engine = read_only_engine(url)
        try:
            with store_failures(url):
                check_readable(store.engine, url)  # no ledger, or a newer schema: refused
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self.engine.dispose()

    def get_meta(self, key: str) -> str | None:
        with Session(self.engine) as session:
            row = session.get(MetaRow, key)
            return None if row is None else row.value

    def set_meta_once(self, key: str, value: str) -> None:
        """Record ``key`` the first time; raise ConfigError if it was recorded differently."""
        with Session(self.engine) as session:
            row = session.get(MetaRow, key)
            if row is None:
                session.add(MetaRow(key=key, value=value))
                session.commit()
            elif row.value != value:
                raise ConfigError(f"ledger {key} is {row.value!r}, not {value!r}")

    def size(self) -> int:
        with Session(self.engine) as session:
            last = session.exec(
                select(LogEntry.idx).order_by(col(LogEntry.idx).desc()).limit(1)
            ).first()
            return 0 if last is None else last + 1

    def leaf_hashes(self) -> list[bytes]:
        with Session(self.engine) as session:
            return list(session.exec(select(LogEntry.leaf_hash).order_by(LogEntry.idx)))  # type: ignore[arg-type]

    def iter_entries(self, *, start: int = 0, batch: int = 5000) -> Iterator[LogEntry]:
        """Every entry from position ``start`` on, in index order, read in batches."""
        for rows in self.iter_entry_batches(start=start, batch=batch):
            yield from rows

    def iter_entry_batches(
        self, *, start: int = 0, batch: int = 5000
    ) -> Iterator[Sequence[LogEntry]]:
        """Every entry from position ``start`` on, in index order, as lists of at most
        ``batch`` entries."""
        after = start - 1
        while True:
            with Session(self.engine) as session:
                rows = session.exec(
                    select(LogEntry).where(LogEntry.idx > after).order_by(LogEntry.idx).limit(batch)  # type: ignore[arg-type]
                ).all()
            if not rows:
                return
            yield rows
            after = rows[-1].idx

    def iter_stored_batches(self, *, batch: int = 5000) -> Iterator[list[StoredEntry]]:
        """Like :meth:`iter_entry_batches`, as plain values (no ORM objects) read through
        the driver's own cursor: for speed, this reads the whole log."""
        columns = ", ".join(f'"{name}"' for name in STORED_COLUMNS)
        mark = self._mark()
        sql = (
            f"SELECT {columns} FROM {LOG_TABLE} "  # noqa: S608 (constant names only)
            f"WHERE idx > {mark} ORDER BY idx LIMIT {mark}"
        )
        after = -1
        while True:
            with self.engine.connect() as conn:
                cursor = conn.connection.cursor()
                cursor.execute(sql, (after, batch))
                rows: list[StoredEntry] = list(cursor.fetchall())
                cursor.close()
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def _mark(self) -> str:
        """The driver's placeholder: sqlite3 takes ``?``, psycopg ``%s``."""
        return "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

    def message_entry(self, agent: str, seq: int) -> LogEntry | None:
        """The logged message of household ``agent`` with sequence number ``seq``, or
        None (one lookup in the unique index on both)."""
        with Session(self.engine) as session:
            return session.exec(
                select(LogEntry).where(LogEntry.agent == agent, LogEntry.agent_seq == seq)
            ).first()

    def entries_at(self, positions: Sequence[int]) -> list[LogEntry]:
        """The entries at these log positions, in the order asked; those not in the log
        are left out (an IN on the primary key, 500 at a time)."""
        found: dict[int, LogEntry] = {}
        with Session(self.engine) as session:
            for part in _chunks(positions, 500):
                rows = session.exec(select(LogEntry).where(col(LogEntry.idx).in_(part))).all()
                found |= {row.idx: row for row in rows}
        return [found[at] for at in positions if at in found]

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        """The newest state snapshot, as ``(tree size, data)``, or None."""
        table = _table(SNAPSHOT_TABLE)
        query = (
            sa_select(table.c.tree_size, table.c.data).order_by(table.c.tree_size.desc()).limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def drop_snapshots(self) -> None:
        """Delete the state snapshot (derived state: the next restart replays the log)."""
        with self.engine.begin() as conn:
            conn.execute(_table(SNAPSHOT_TABLE).delete())

    def entry(self, idx: int) -> LogEntry | None:
        """The entry at position ``idx``, or None."""
        with Session(self.engine) as session:
            return session.get(LogEntry, idx)

    def checkpoint_at(self, tree_size: int) -> Checkpoint | None:
        """The checkpoint of exactly ``tree_size`` leaves, or None."""
        with Session(self.engine) as session:
            r = session.get(CheckpointRow, tree_size)
            return (
                None
                if r is None
                else Checkpoint(r.tree_size, r.interval, r.root, r.kid, r.signature)
            )

    def node_hashes(self, nodes: Sequence[NodeRef]) -> list[bytes]:
        """Hashes of stored subtrees ``(level, index)`` in the order asked; level 0 = leaves.

        One query per 200 nodes: an IN on the log's primary key for the leaves and an OR
        of primary-key equalities for the inner nodes (both databases use the index for
        each term; a row-value IN makes SQLite scan). Raises LookupError naming the first
        node that is not stored.
        """
        found: dict[NodeRef, bytes] = {}
        wanted = sorted(set(nodes))
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted, 200):
                query, params = _node_query(chunk)
                found.update(
                    ((int(lv), int(i)), bytes(h)) for lv, i, h in conn.execute(query, params)
                )
        missing = [ref for ref in nodes if ref not in found]
        if missing:
            raise LookupError(f"stored tree has no node {missing[0]}")
        return [found[ref] for ref in nodes]

    def nodes_completed_in(self, first_leaf: int, end_leaf: int) -> dict[NodeRef, bytes]:
        """Stored nodes (level >= 1) whose last leaf is in ``[first_leaf, end_leaf)``;
        read through the driver's own cursor (the verifier reads every node)."""
        ranges = nodes_ending_in(first_leaf, end_leaf, max(end_leaf, 1).bit_length())
        if not ranges:
            return {}
        mark = self._mark()
        where = " OR ".join(f"(level = {mark} AND idx >= {mark} AND idx < {mark})" for _ in ranges)
        sql = f"SELECT level, idx, hash FROM {NODE_TABLE} WHERE {where}"  # noqa: S608
        params = [value for level_range in ranges for value in level_range]
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            cursor.execute(sql, params)
            found = {(level, idx): bytes(h) for level, idx, h in cursor.fetchall()}
            cursor.close()
        return found

    def node_count(self) -> int:
        """Number of stored nodes of level >= 1."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa_select(func.count()).select_from(_table(NODE_TABLE))).scalar_one()
            )

    def checkpoints(self) -> list[Checkpoint]:
        with Session(self.engine) as session:
            rows = session.exec(select(CheckpointRow).order_by(CheckpointRow.tree_size)).all()  # type: ignore[arg-type]
            return [Checkpoint(r.tree_size, r.interval, r.root, r.kid, r.signature) for r in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        with Session(self.engine) as session:
            row = session.exec(
                select(CheckpointRow).order_by(CheckpointRow.tree_size.desc()).limit(1)  # type: ignore[attr-defined]
            ).first()
            if row is None:
                return None
            return Checkpoint(row.tree_size, row.interval, row.root, row.kid, row.signature)

    def add_intake(self, interval: int, messages: Sequence[tuple[str | None, bytes]]) -> None:
        """Keep ``(topic agent, signed envelope)`` of messages accepted into ``interval``,
        in this order, in one transaction."""
        if not messages:
            return
        rows = [(interval, agent, wire) for agent, wire in messages]
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                bulk_writer(self.engine.dialect.name)(cursor, INTAKE_TABLE, INTAKE_COLUMNS, rows)
            finally:
                cursor.close()

    def intake(self, interval: int) -> list[tuple[str | None, bytes]]:
        """The messages kept for ``interval`` (:meth:`add_intake`), in arrival order."""
        table = _table(INTAKE_TABLE)
        query = (
            sa_select(table.c.agent, table.c.wire)
            .where(table.c.interval == interval)
            .order_by(table.c.id)
        )
        with self.engine.connect() as conn:
            return [(agent, bytes(wire)) for agent, wire in conn.execute(query)]

    def append(
        self,
        first_idx: int,
        entries: Sequence[NewEntry],
        checkpoint: Checkpoint,
        *,
        nodes: Sequence[tuple[int, int, bytes]],
        leaf_hashes: Sequence[bytes] | None = None,
        intake_through: int | None = None,
        snapshot: bytes | None = None,
    ) -> None:
        """Append ``entries`` at ``first_idx``, the checkpoint and the tree ``nodes``
        (``(level, index, hash)``, level >= 1, those the entries complete) in one
        transaction. ``leaf_hashes`` are the entries' leaf hashes when the caller has
        them already (the ledger's tree computed them); otherwise they are computed here.
        ``intake_through``: delete, in the same transaction, the intake of every
        interval up to this one (the entries log what it held). ``snapshot``: the
        ledger's state after these entries (:mod:`ledger._snapshot`), stored in the same
        transaction in place of any older one.

        The rows go through the DBAPI cursor of the SQLAlchemy transaction: one
        ``executemany`` per table on SQLite, ``COPY`` on PostgreSQL (see
        :mod:`ledger._bulk`), since per-row parameter dictionaries cost more than the
        database's own work at 10,000 entries per interval.
        """
        if checkpoint.tree_size != first_idx + len(entries):
            raise ValueError("checkpoint does not cover exactly the appended entries")
        if leaf_hashes is None:
            leaf_hashes = [leaf_hash(e.data) for e in entries]
        elif len(leaf_hashes) != len(entries):
            raise ValueError("one leaf hash per entry")
        rows = [
            (first_idx + offset, e.interval, e.kind, e.agent, e.agent_seq, e.data, h)
            for offset, (e, h) in enumerate(zip(entries, leaf_hashes, strict=True))
        ]
        cp = checkpoint
        with self.engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                writer = bulk_writer(self.engine.dialect.name)
                writer(cursor, LOG_TABLE, LOG_COLUMNS, rows)
                writer(cursor, NODE_TABLE, NODE_COLUMNS, nodes)
                writer(
                    cursor,
                    CHECKPOINT_TABLE,
                    CHECKPOINT_COLUMNS,
                    [(cp.tree_size, cp.interval, cp.root, cp.kid, cp.signature)],
                )
            finally:
                cursor.close()
            if intake_through is not None:
                table = _table(INTAKE_TABLE)
                conn.execute(table.delete().where(table.c.interval <= intake_through))
            if snapshot is not None:
                table = _table(SNAPSHOT_TABLE)
                conn.execute(table.delete())
                conn.execute(table.insert().values(tree_size=cp.tree_size, data=snapshot))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _node_query(refs: Sequence[NodeRef]) -> tuple[TextClause, dict[str, int]]:
    """SELECT level, idx, hash for the given node references (level 0 from the log)."""
    params: dict[str, int] = {}
    leaves = [f":p{n}" for n, (level, i) in enumerate(refs) if level == 0]
    terms = [f"(level = :l{n} AND idx = :p{n})" for n, (level, _i) in enumerate(refs) if level]
    for n, (level, i) in enumerate(refs):
        params[f"p{n}"] = i
        if level:
            params[f"l{n}"] = level
    # Only constant table names and numbered placeholders go into the text (no values).
    parts = []
    if leaves:
        parts.append(
            f"SELECT 0 AS level, idx, leaf_hash AS hash FROM {LOG_TABLE} "  # noqa: S608
            f"WHERE idx IN ({', '.join(leaves)})"
        )
    if terms:
        parts.append(f"SELECT level, idx, hash FROM {NODE_TABLE} WHERE {' OR '.join(terms)}")  # noqa: S608
    return text(" UNION ALL ".join(parts)), params
