"""The dashboard's read model: its own database, filled from the ledger's log and the bus.

:meth:`ReadModel.sync` folds the log entries it has not folded yet (``applied_size`` in
``sync_state``) in batches, one transaction per batch, through the pure
:func:`dashboard._fold.fold`; :meth:`ReadModel.rebuild` drops the log's tables and folds
from the first entry. The ledger's database is only read (``LedgerStore.read_only``).
What the log does not hold comes from the bus through the ``record_*`` methods.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from wattmesh.broker.errors import DashboardError, FailureError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import ForecastBody, HealthBody
from wattmesh.dashboard import _tables as t
from wattmesh.dashboard._fold import Changes, Entry, fold, touched
from wattmesh.dashboard._qbase import FORECASTER_HEALTH
from wattmesh.dashboard._writes import (
    APPLIED_SIZE,
    _add_totals,
    _chunks,
    _claim,
    _get_state,
    _insert,
    _replace,
    _set_state,
)
from wattmesh.ledger.meta import META_MARKET, META_OPERATOR_KEY, META_ORIGIN
from wattmesh.ledger.store import CheckpointRow, LedgerStore, LogEntry
from wattmesh.ledger.store_open import (
    LEDGER_TABLES,
    failure_reason,
    normalise_db_url,
    pg_connect_args,
    shown_url,
    sqlite_path,
    store_failures,
)

__all__ = ["ReadModel", "ReadModelError", "SyncResult"]

BATCH = 5000
"""Log entries folded per transaction."""


class ReadModelError(DashboardError, FailureError):
    """The read model's database failed (cannot connect, cannot create its tables)."""


@dataclass(frozen=True)
class SyncResult:
    applied: int  # log entries folded by this call
    tree_size: int  # the read model's applied_size afterwards
    closed: tuple[int, ...]  # intervals whose clearing was folded by this call, ascending


def _engine(url: str) -> Engine:
    normalised = normalise_db_url(url)
    if make_url(normalised).get_backend_name() != "sqlite":
        engine = create_engine(normalised, connect_args=pg_connect_args(url))
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{t.PG_SCHEMA}"'))
        return engine.execution_options(schema_translate_map={None: t.PG_SCHEMA})
    engine = create_engine(normalised)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class ReadModel:
    """The read model in the database at ``url`` (its tables created if missing)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = _engine(url)
            if self.engine.dialect.name == "sqlite":
                names = set(inspect(self.engine).get_table_names())
                if names >= LEDGER_TABLES:
                    self.engine.dispose()
                    raise ReadModelError(
                        f"read model {shown_url(url)}: the database holds a ledger;"
                        " the read model needs a database of its own"
                    )
            t.METADATA.create_all(self.engine)
            _add_columns(self.engine)
            _add_indexes(self.engine)
            _sum_forecasts(self.engine)
            with self.engine.begin() as conn:
                if _get_state(conn, APPLIED_SIZE) is None:
                    _set_state(conn, APPLIED_SIZE, "0")
        except SQLAlchemyError as exc:
            reason = " ".join(str(getattr(exc, "orig", exc)).split())
            raise ReadModelError(f"read model {shown_url(url)}: {reason}") from exc

    @staticmethod
    def default_url(ledger_url: str) -> str:
        """Beside a SQLite ledger ``X``: ``X.dashboard.db``; for PostgreSQL the same
        database (the tables go into schema ``wattmesh_dashboard``)."""
        if make_url(normalise_db_url(ledger_url)).get_backend_name() != "sqlite":
            return ledger_url
        path = sqlite_path(ledger_url)
        if path is None:
            raise ReadModelError(f"an in-memory ledger {ledger_url} has no read model beside it")
        return f"sqlite:///{path}.dashboard.db"

    def close(self) -> None:
        self.engine.dispose()

    # --- state -----------------------------------------------------------------------

    def state(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return _get_state(conn, key)

    def applied_size(self) -> int:
        value = self.state(APPLIED_SIZE)
        return 0 if value is None else int(value)

    # --- the log ---------------------------------------------------------------------

    def sync(self, ledger: LedgerStore, *, max_entries: int | None = None) -> SyncResult:
        """Fold the entries of ``ledger`` not folded yet (at most ``max_entries``).

        Each batch is one transaction that first claims the batch (the applied size it
        starts from, locked in PostgreSQL): a sync that finds another one has folded
        the entries meanwhile stops there. A failure of the ledger's database raises
        :class:`ledger.store_errors.StoreError`, one of the read model's
        :class:`ReadModelError` (both one line)."""
        with self._failures():
            self._meta(ledger)
            start = size = self.applied_size()
            closed: list[int] = []
            for batch in _batches(ledger, size, max_entries):
                if batch[0][0] != size:
                    raise ReadModelError(f"the log skips from entry {size} to {batch[0][0]}")
                end = batch[-1][0] + 1
                with self.engine.begin() as conn:
                    if not _claim(conn, size):
                        break
                    changes = self._fold(conn, batch)
                    _copy_checkpoints(conn, ledger, size, end)
                    _set_state(conn, APPLIED_SIZE, str(end))
                closed += changes.closed
                size = end
            with _ledger_failures(ledger):
                ledger_size = ledger.size()
            with self.engine.begin() as conn:
                _set_state(conn, "ledger_size", str(ledger_size))
                _set_state(conn, "synced_at_s", str(int(time.time())))
        return SyncResult(size - start, size, tuple(sorted(closed)))

    def rebuild(self, ledger: LedgerStore) -> SyncResult:
        """Drop what came from the log and fold it again from the first entry."""
        with self._failures(), self.engine.begin() as conn:
            t.METADATA.drop_all(conn, tables=list(t.LOG_TABLES))
            t.METADATA.create_all(conn, tables=list(t.LOG_TABLES))
            from_log = t.anomaly.c.source.in_(("log", "forecaster"))
            conn.execute(t.anomaly.delete().where(from_log))
            _set_state(conn, APPLIED_SIZE, "0")
        return self.sync(ledger)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """A failure of the read model's database as a :class:`ReadModelError`."""
        try:
            yield
        except SQLAlchemyError as exc:
            reason = failure_reason(exc)
            if reason is None:
                raise
            raise ReadModelError(f"read model {shown_url(self.url)}: {reason}") from exc

    def _meta(self, ledger: LedgerStore) -> None:
        """The ledger's market id, origin and operator key, once."""
        with self.engine.connect() as conn:
            known = _get_state(conn, "operator_public_key") is not None
        if known:
            return
        with _ledger_failures(ledger):
            market, origin = ledger.get_meta(META_MARKET), ledger.get_meta(META_ORIGIN)
            pem = ledger.get_meta(META_OPERATOR_KEY)
        if market is None or origin is None or pem is None:
            return
        key = VerifyingKey.from_pem(pem.encode("ascii"))
        with self.engine.begin() as conn:
            _set_state(conn, "market_id", market)
            _set_state(conn, "origin", origin)
            _set_state(conn, "operator_kid", key.kid)
            _set_state(conn, "operator_public_key", base64.b64encode(key.der()).decode("ascii"))

    def _fold(self, conn: Connection, batch: Sequence[Entry]) -> Changes:
        intervals, agents = touched(batch)
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        stats: dict[int, dict[str, Any]] = {}
        keys: dict[str, dict[str, Any]] = {}
        hi, st, hh = t.household_interval, t.interval_stats, t.household
        for part in _chunks(sorted(intervals), 500):
            for r in conn.execute(select(hi).where(hi.c.interval.in_(part))).mappings():
                rows[(r["household"], r["interval"])] = dict(r)
            for r in conn.execute(select(st).where(st.c.interval.in_(part))).mappings():
                stats[r["interval"]] = dict(r)
        for part in _chunks(sorted(agents), 500):
            for r in conn.execute(select(hh).where(hh.c.id.in_(part))).mappings():
                keys[r["id"]] = dict(r)
        changes = fold(batch, rows=rows, stats=stats, keys=keys)
        _replace(conn, hi, changes.rows, ("household", "interval"), rows)
        _replace(conn, st, changes.stats, ("interval",), stats)
        _replace(conn, hh, changes.households, ("id",), keys)
        _replace(conn, t.anomaly, changes.anomalies, ("household", "interval", "kind"), None)
        _insert(conn, t.trade, changes.trades)
        _insert(conn, t.book_order, changes.orders)
        _add_totals(conn, changes.totals)
        return changes

    # --- the bus ---------------------------------------------------------------------

    def record_summary(self, interval: int, rejections: Mapping[str, int]) -> None:
        """The rejections by reason of ``interval`` (the ledger's signed summary)."""
        rows = [{"interval": interval, "reason": r, "count": int(n)} for r, n in rejections.items()]
        with self.engine.begin() as conn:
            conn.execute(t.rejection.delete().where(t.rejection.c.interval == interval))
            if rows:
                conn.execute(t.rejection.insert(), rows)
            summary = {"interval": interval, "rejections": dict(rejections)}
            _set_state(conn, "last_summary", json.dumps(summary))

    def record_forecast(self, household: str, body: ForecastBody, *, issued_s: int) -> None:
        """The first step of ``body``: the forecast for the interval at its start."""
        if not body.demand_wh:
            return
        demand, pv, trained = body.quantiles("demand"), body.quantiles("pv"), body.trained_on
        row = {
            "household": household,
            "interval": body.start,
            "demand_wh": demand[1][0],
            "pv_wh": pv[1][0],
            "demand_p10_wh": demand[0][0],
            "demand_p90_wh": demand[2][0],
            "pv_p10_wh": pv[0][0],
            "pv_p90_wh": pv[2][0],
            "model": body.model,
            "version": body.version,
            "issued_s": issued_s,
            "trained_on_size": None if trained is None else trained.tree_size,
            "trained_on_root": None if trained is None else trained.root,
        }
        f, total = t.forecast, t.forecast_total
        net = demand[1][0] - pv[1][0]
        with self.engine.begin() as conn:
            old = conn.execute(
                select(f.c.demand_wh - f.c.pv_wh).where(
                    f.c.household == household, f.c.interval == body.start
                )
            ).scalar()
            _replace(conn, f, [row], ("household", "interval"), None)
            summed = conn.execute(
                select(total.c.net_wh, total.c.households).where(total.c.interval == body.start)
            ).first()
            if summed is None:
                conn.execute(total.insert().values(interval=body.start, net_wh=net, households=1))
            else:
                conn.execute(
                    total.update()
                    .where(total.c.interval == body.start)
                    .values(
                        net_wh=int(summed[0]) + net - int(old or 0),
                        households=int(summed[1]) + (old is None),
                    )
                )

    def record_presence(self, household: str, *, online: bool, at_s: int) -> None:
        row = {"household": household, "online": int(online), "since_s": at_s}
        with self.engine.begin() as conn:
            _replace(conn, t.presence, [row], ("household",), None)

    def record_verify(
        self,
        *,
        ok: bool,
        problem: str | None,
        tree_size: int,
        kid: str | None,
        at_s: int,
        anchored: bool = True,
    ) -> None:
        """The last verification of the whole log: ``anchored`` False when it trusted the
        key the ledger stores (no ``operator_key_file`` configured)."""
        value = {
            "ok": ok,
            "problem": problem,
            "tree_size": tree_size,
            "kid": kid,
            "at_s": at_s,
            "anchored": anchored,
        }
        with self.engine.begin() as conn:
            _set_state(conn, "last_verify", json.dumps(value))

    def record_broker(self, *, connected: bool, at_s: int) -> None:
        with self.engine.begin() as conn:
            _set_state(conn, "broker", json.dumps({"connected": connected, "at_s": at_s}))

    def record_forecaster_health(self, body: HealthBody, *, at_s: int) -> None:
        """The forecasting service's last verified ``health``, heard at ``at_s``."""
        value = json.dumps({"body": body.to_json(), "heard_s": at_s})
        with self.engine.begin() as conn:
            _set_state(conn, FORECASTER_HEALTH, value)


def _add_columns(engine: Engine) -> None:
    """The columns of :data:`_tables.ADDED_COLUMNS` a table made before them lacks."""
    schema = t.PG_SCHEMA if engine.dialect.name == "postgresql" else None
    inspector = inspect(engine)
    for name, added in t.ADDED_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(name, schema=schema)}
        table = t.METADATA.tables[name]
        where = f'"{schema}"."{name}"' if schema else f'"{name}"'
        with engine.begin() as conn:
            for column in (table.c[c] for c in added if c not in have):
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(text(f'ALTER TABLE {where} ADD COLUMN "{column.name}" {kind}'))


def _sum_forecasts(engine: Engine) -> None:
    """Fill ``forecast_total`` from ``forecast`` when it is empty and forecasts are not
    (a read model made before the totals were kept)."""
    f, total = t.forecast, t.forecast_total
    with engine.begin() as conn:
        if conn.execute(select(total.c.interval).limit(1)).first() is not None:
            return
        if conn.execute(select(f.c.interval).limit(1)).first() is None:
            return
        sums = select(f.c.interval, func.sum(f.c.demand_wh - f.c.pv_wh), func.count())
        conn.execute(
            total.insert().from_select(
                ["interval", "net_wh", "households"], sums.group_by(f.c.interval)
            )
        )


def _add_indexes(engine: Engine) -> None:
    """The indexes a table made before them lacks (``create_all`` makes only tables)."""
    schema = t.PG_SCHEMA if engine.dialect.name == "postgresql" else None
    with engine.begin() as conn:
        for table in t.METADATA.sorted_tables:
            where = f'"{schema}"."{table.name}"' if schema else f'"{table.name}"'
            for index in table.indexes:
                columns = ", ".join(f'"{c.name}"' for c in index.columns)
                conn.execute(
                    text(f'CREATE INDEX IF NOT EXISTS "{index.name}" ON {where} ({columns})')
                )


_UNFOLDED = frozenset({"reading", "checkpoint_ref"})
"""Kinds the fold does not read (nothing of a reading or a checkpoint reference is kept):
they are not parsed."""
_decode = json.JSONDecoder().decode


def _batches(ledger: LedgerStore, start: int, max_entries: int | None) -> Iterator[list[Entry]]:
    """The log from ``start`` as ``(idx, interval, parsed)`` lists of at most BATCH."""
    log: Table = LogEntry.__table__  # type: ignore[attr-defined]
    after, left = start - 1, max_entries
    while left is None or left > 0:
        limit = BATCH if left is None else min(BATCH, left)
        query = (
            select(log.c.idx, log.c.interval, log.c.kind, log.c.data)
            .where(log.c.idx > after)
            .order_by(log.c.idx)
            .limit(limit)
        )
        with _ledger_failures(ledger), ledger.engine.connect() as conn:
            raw = conn.execute(query).all()
        if not raw:
            return
        yield [
            (
                int(i),
                int(at),
                {"kind": kind} if kind in _UNFOLDED else _decode(bytes(data).decode("utf-8")),
            )
            for i, at, kind, data in raw
        ]
        after = int(raw[-1][0])
        if left is not None:
            left -= len(raw)


def _copy_checkpoints(conn: Connection, ledger: LedgerStore, after: int, upto: int) -> None:
    """The ledger's checkpoints of sizes in ``(after, upto]``."""
    table: Table = CheckpointRow.__table__  # type: ignore[attr-defined]
    query = select(table).where(table.c.tree_size > after, table.c.tree_size <= upto)
    with _ledger_failures(ledger), ledger.engine.connect() as source:
        rows = [dict(r) for r in source.execute(query).mappings()]
    if rows:
        conn.execute(t.checkpoint.delete().where(t.checkpoint.c.tree_size > after))
        _insert(conn, t.checkpoint, [{**r, "root": bytes(r["root"])} for r in rows])


def _ledger_failures(ledger: LedgerStore) -> contextlib.AbstractContextManager[None]:
    """A failure of the ledger's database as a :class:`StoreError` naming it."""
    return store_failures(ledger.engine.url.render_as_string(hide_password=True))
