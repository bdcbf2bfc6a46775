"""The forecasting service's own SQL tables: logged readings, fitted models, position.

SQLAlchemy Core over SQLite or PostgreSQL (``forecast_*`` tables; any database URL
SQLAlchemy takes). Readings come in from the ledger's log with the signed checkpoint
whose tree covers them (:meth:`HistoryStore.add_logged`, one transaction with the log
position read up to), so the training data of every fit is "the logged readings up to
checkpoint N". A household's fit (both targets' bands, model, version, the checkpoint
it was trained on, and Prophet's fitted parameters, the next refit's warm start) is kept,
so a restarted service need not refit. Two small tables serve the next refits: the point
forecasts earlier fits made of intervals logged since (``forecast_past``, the last
:data:`PAST_DAYS` days: the fitted models' out-of-sample errors, their bands' calibration,
see :mod:`forecasting._fitted`), and each household and target's ``auto`` model choice
with when it was made (``forecast_choice``: the choosing backtests run every
``select_every_days``, not at every refit). Nothing here holds
every household at once: history and fits are read per household.

The settlements the log holds (metered export and P2P energy sold per household and
interval) are kept for the short-delivery check, and so is every anomaly episode the
service published (``forecast_episode``): a restarted service does not publish it
again, and the readings inside an episode's window are not learnt from (they read
back as flagged, like the ledger's own flags).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from wattmesh.broker.forecast_bodies import TrainedOn
from wattmesh.broker.messages import ReadingBody
from wattmesh.forecasting._fit import Fitted
from wattmesh.forecasting._history_tables import (
    CHOICE,
    EPISODES,
    FITS,
    META,
    PAST,
    READINGS,
    SETTLED,
    STATE,
)
from wattmesh.forecasting.service import demand_and_pv

__all__ = [
    "PAST_DAYS",
    "Episode",
    "HistoryStore",
    "LoggedBatch",
    "LoggedReading",
    "LoggedSettlement",
    "StoredFit",
    "series_from_readings",
]

PAST_DAYS = 7
"""Days of past point forecasts kept per household and target (older rows are deleted)."""


@dataclass(frozen=True)
class LoggedReading:
    """A reading the ledger logged (at log index ``log_idx``, for ``interval``) whose
    signature verified."""

    agent: str
    log_idx: int
    interval: int
    reading: ReadingBody


@dataclass(frozen=True)
class LoggedBatch:
    """What the ledger's log adds up to a signed checkpoint: the readings to learn from,
    the brackets the ledger flagged (agent, interval of the reading that ends one: the
    energy up to it is not learnt), and how many logged readings were refused."""

    readings: Sequence[LoggedReading]
    flagged: Sequence[tuple[str, int]]
    refused: int
    position: int  # log entries read: the checkpoint's tree size
    checkpoint: TrainedOn
    settled: Sequence[LoggedSettlement] = ()


@dataclass(frozen=True)
class LoggedSettlement:
    """A logged ``settlement`` (or the ``correction`` that revised it): the household's
    metered export and P2P energy sold in ``interval``."""

    agent: str
    interval: int
    export_wh: int
    sold_wh: int


@dataclass(frozen=True)
class Episode:
    """An anomaly episode the service published: its key (agent, kind, first interval)
    and its evidence window ``[window_start, window_end)`` (epoch s)."""

    agent: str
    kind: str
    interval: int
    window_start: int
    window_end: int


@dataclass(frozen=True)
class StoredFit:
    agent: str
    fitted_s: int
    trained_on: TrainedOn | None
    demand: Fitted
    pv: Fitted


class HistoryStore:
    """The tables of one database URL (created if missing)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        META.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def position(self) -> tuple[int, TrainedOn | None]:
        """Log entries read so far and the checkpoint they reach (None before any)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(STATE).where(STATE.c.id == 1)).first()
        if row is None:
            return 0, None
        on = None if row.tree_size is None else TrainedOn(int(row.tree_size), str(row.root))
        return int(row.log_position), on

    def add_logged(self, batch: LoggedBatch) -> None:
        """Keep the batch's readings (one already kept is left as it is), mark its flagged
        ones, and note that the log was read up to its position and checkpoint."""
        rows = [
            {
                "agent": r.agent,
                "meter_time": r.reading.meter_time,
                "log_idx": r.log_idx,
                "interval": r.interval,
                "flagged": False,
                "import_wh": r.reading.import_wh,
                "export_wh": r.reading.export_wh,
                "pv_wh": r.reading.pv_wh,
                "battery_in_wh": r.reading.battery_in_wh,
                "battery_out_wh": r.reading.battery_out_wh,
            }
            for r in batch.readings
        ]
        state = {
            "id": 1,
            "log_position": batch.position,
            "tree_size": batch.checkpoint.tree_size,
            "root": batch.checkpoint.root,
        }
        with self.engine.begin() as conn:
            if rows:
                conn.execute(_insert_ignore(self.engine, READINGS, ["agent", "meter_time"]), rows)
            for agent, interval in batch.flagged:
                conn.execute(
                    update(READINGS)
                    .where(READINGS.c.agent == agent, READINGS.c.interval == interval)
                    .values(flagged=True)
                )
            latest = {(x.agent, x.interval): x for x in batch.settled}  # corrections last
            if latest:
                conn.execute(_upsert(self.engine, SETTLED, ["agent", "interval"]), [
                    {"agent": x.agent, "interval": x.interval, "export_wh": x.export_wh,
                     "sold_wh": x.sold_wh}
                    for x in latest.values()
                ])  # fmt: skip
            conn.execute(delete(STATE))
            conn.execute(STATE.insert(), [state])

    def agents(self) -> list[str]:
        """Every household with kept readings."""
        with self.engine.connect() as conn:
            return [str(a) for a in conn.execute(select(READINGS.c.agent).distinct()).scalars()]

    def readings(self, agent: str, *, since_s: int = 0) -> list[tuple[int, bool, ReadingBody]]:
        """(log index, flagged, reading) of ``agent`` from ``since_s`` on, by meter time;
        flagged: by the ledger, or closing an interval inside one of the service's own
        episodes (``window_start < meter_time <= window_end``)."""
        query = (
            select(READINGS)
            .where(READINGS.c.agent == agent, READINGS.c.meter_time >= since_s)
            .order_by(READINGS.c.meter_time)
        )
        windows = [(e.window_start, e.window_end) for e in self.episodes(agent)]
        with self.engine.connect() as conn:
            return [
                (
                    int(r.log_idx),
                    bool(r.flagged) or any(a < r.meter_time <= b for a, b in windows),
                    ReadingBody(
                        r.meter_time,
                        r.import_wh,
                        r.export_wh,
                        r.pv_wh,
                        0,
                        r.battery_in_wh,
                        r.battery_out_wh,
                    ),
                )
                for r in conn.execute(query)
            ]

    def forget_before(self, since_s: int) -> None:
        """Drop readings, settlements and episodes older than ``since_s`` (outside every
        fit's window)."""
        with self.engine.begin() as conn:
            conn.execute(delete(READINGS).where(READINGS.c.meter_time < since_s))
            conn.execute(delete(SETTLED).where(SETTLED.c.interval < since_s))
            conn.execute(delete(EPISODES).where(EPISODES.c.window_end < since_s))

    def settled(self, agent: str, *, since_s: int = 0) -> dict[int, tuple[int, int]]:
        """``{interval: (metered export Wh, P2P sold Wh)}`` of ``agent`` from ``since_s``."""
        query = select(SETTLED).where(SETTLED.c.agent == agent, SETTLED.c.interval >= since_s)
        with self.engine.connect() as conn:
            return {
                int(r.interval): (int(r.export_wh), int(r.sold_wh)) for r in conn.execute(query)
            }

    def episodes(self, agent: str) -> list[Episode]:
        """The episodes published about ``agent``, by first interval."""
        query = select(EPISODES).where(EPISODES.c.agent == agent).order_by(EPISODES.c.interval)
        with self.engine.connect() as conn:
            return [
                Episode(agent, str(r.kind), int(r.interval), int(r.window_start), int(r.window_end))
                for r in conn.execute(query)
            ]

    def add_episode(self, episode: Episode) -> bool:
        """Keep ``episode`` and say True, unless one of the same household and kind with
        the same key or an overlapping window is kept: then widen that one's window to
        cover both and say False (the same episode, already published)."""
        e = EPISODES.c
        same = (e.agent == episode.agent, e.kind == episode.kind)
        with self.engine.begin() as conn:
            known = conn.execute(
                select(EPISODES).where(
                    *same,
                    (e.interval == episode.interval)
                    | (
                        (e.window_start < episode.window_end)
                        & (episode.window_start < e.window_end)
                    ),
                )
            ).first()
            if known is None:
                conn.execute(EPISODES.insert(), [episode.__dict__])
                return True
            conn.execute(
                update(EPISODES)
                .where(*same, e.interval == known.interval)
                .values(
                    window_start=min(int(known.window_start), episode.window_start),
                    window_end=max(int(known.window_end), episode.window_end),
                )
            )
            return False

    def save_fit(self, fit: StoredFit) -> None:
        row = {
            "agent": fit.agent,
            "fitted_s": fit.fitted_s,
            "trained_size": None if fit.trained_on is None else fit.trained_on.tree_size,
            "trained_root": None if fit.trained_on is None else fit.trained_on.root,
            "data": json.dumps([_fitted_json(fit.demand), _fitted_json(fit.pv)]),
        }
        with self.engine.begin() as conn:
            conn.execute(delete(FITS).where(FITS.c.agent == fit.agent))
            conn.execute(FITS.insert(), [row])

    def fit(self, agent: str) -> StoredFit | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(FITS).where(FITS.c.agent == agent)).first()
        if row is None:
            return None
        demand, pv = (_fitted(obj) for obj in json.loads(row.data))
        on = None if row.trained_size is None else TrainedOn(row.trained_size, row.trained_root)
        return StoredFit(agent, int(row.fitted_s), on, demand, pv)

    def fitted_agents(self) -> list[str]:
        with self.engine.connect() as conn:
            return [str(a) for a in conn.execute(select(FITS.c.agent)).scalars()]

    def keep_past(self, previous: StoredFit, history_end_s: int, models: Collection[str]) -> None:
        """Keep ``previous``'s point forecasts of the intervals logged since it was made
        (from its start up to ``history_end_s``) for the targets whose model is one of
        ``models`` (a fallback's forecasts are not that model's); a forecast already kept
        for an interval stays (the earliest origin). Rows more than :data:`PAST_DAYS` days
        before ``history_end_s`` are deleted."""
        rows = []
        for f in (previous.demand, previous.pv):
            if f.model not in models or f.fallback is not None:
                continue
            count = min(len(f.p50_wh), max(history_end_s - f.start_s, 0) // f.interval_s)
            rows += [
                {"agent": previous.agent, "target": f.target, "version": f.version,
                 "interval": f.start_s + i * f.interval_s, "p50_wh": f.p50_wh[i]}
                for i in range(count)
            ]  # fmt: skip
        with self.engine.begin() as conn:
            if rows:
                keys = ["agent", "target", "interval"]
                conn.execute(_insert_ignore(self.engine, PAST, keys), rows)
            conn.execute(
                delete(PAST).where(
                    PAST.c.agent == previous.agent,
                    PAST.c.interval < history_end_s - PAST_DAYS * 86_400,
                )
            )

    def past(self, agent: str) -> dict[str, tuple[tuple[int, str, int], ...]]:
        """Per target, the kept past forecasts ``(interval, version, p50 Wh)`` by interval."""
        query = select(PAST).where(PAST.c.agent == agent).order_by(PAST.c.interval)
        out: dict[str, list[tuple[int, str, int]]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                out.setdefault(str(r.target), []).append(
                    (int(r.interval), str(r.version), int(r.p50_wh))
                )
        return {target: tuple(rows) for target, rows in out.items()}

    def choices(self, agent: str) -> dict[str, tuple[str, int]]:
        """Per target, the model ``auto`` chose for ``agent`` and when (epoch s)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(CHOICE).where(CHOICE.c.agent == agent))
            return {str(r.target): (str(r.model), int(r.chosen_s)) for r in rows}

    def save_choice(self, agent: str, target: str, model: str, chosen_s: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(CHOICE).where(CHOICE.c.agent == agent, CHOICE.c.target == target))
            conn.execute(
                CHOICE.insert(),
                [{"agent": agent, "target": target, "model": model, "chosen_s": chosen_s}],
            )


def series_from_readings(
    readings: Iterable[tuple[bool, ReadingBody]], interval_s: int
) -> tuple[int, list[int], list[int]]:
    """(start epoch s, demand Wh, PV Wh) per interval between consecutive readings
    (``(flagged, reading)`` pairs, by meter time).

    A gap of several intervals is spread evenly over them (remainder on the last). A
    pair that cannot be learnt from (registers backwards, a battery appearing, the
    later reading flagged by the ledger) starts the series again after it, so the
    result is one regular run of intervals.
    """
    start, demand, pv = 0, list[int](), list[int]()
    last: ReadingBody | None = None
    for flagged, reading in readings:
        if last is None:
            start, demand, pv = reading.meter_time - reading.meter_time % interval_s, [], []
            last = reading
            continue
        steps = (reading.meter_time - last.meter_time) // interval_s
        if steps <= 0:
            continue
        energy = None if flagged else demand_and_pv(last, reading)
        last = reading
        if energy is None:
            start, demand, pv = reading.meter_time - reading.meter_time % interval_s, [], []
            continue
        for values, total in ((demand, energy[0]), (pv, energy[1])):
            values.extend(total // steps for _ in range(steps - 1))
            values.append(total // steps + total % steps)
    return start, demand, pv


def _fitted_json(f: Fitted) -> dict[str, Any]:
    return {
        "target": f.target,
        "start_s": f.start_s,
        "interval_s": f.interval_s,
        "p10": list(f.p10_wh),
        "p50": list(f.p50_wh),
        "p90": list(f.p90_wh),
        "model": f.model,
        "version": f.version,
        "fallback": f.fallback,
        "state": None if f.state is None else dict(f.state),
    }


def _fitted(obj: dict[str, Any]) -> Fitted:
    return Fitted(
        obj["target"],
        int(obj["start_s"]),
        int(obj["interval_s"]),
        tuple(obj["p10"]),
        tuple(obj["p50"]),
        tuple(obj["p90"]),
        str(obj["model"]),
        str(obj["version"]),
        obj["fallback"],
        obj.get("state"),  # absent in fits stored before warm starts
    )


def _insert_ignore(engine: Engine, table: Table, keys: list[str]) -> Any:
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)


def _upsert(engine: Engine, table: Table, keys: list[str]) -> Any:
    """Insert, or on a key already kept replace its other columns."""
    stmt = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert(table)
    others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=others)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
