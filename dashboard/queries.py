"""The dashboard's read functions: one per JSON endpoint, over the read model's tables.

Each returns plain JSON-able dicts and lists (energy in Wh, money in micro-units, time in
epoch s; ratios are the only floats) and never raises for empty data; an unknown
household, interval or entry is :class:`NotFound`, a bad parameter :class:`BadRequest`.
The figures are defined in docs/dashboard.md ("Figures"). The market's and the
service's are here; the households' in ``dashboard/_household_queries.py``, the
ledger's in ``dashboard/_ledger_queries.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from wattmesh.dashboard import _tables as t
from wattmesh.dashboard._household_queries import household_detail, households_table, statement
from wattmesh.dashboard._ledger_queries import checkpoints, entry_owner, entry_proof, trades
from wattmesh.dashboard._qbase import (
    FORECASTER_HEALTH,
    BadRequest,
    NotFound,
    _json_state,
    _ratio,
    _state,
    _trade_json,
    forecaster_json,
)
from wattmesh.dashboard._writes import APPLIED_SIZE
from wattmesh.dashboard.readmodel import ReadModel

__all__ = [
    "HEARD_STALE_S",
    "NEAR_INTERVALS",
    "BadRequest",
    "Heard",
    "NotFound",
    "checkpoints",
    "entry_owner",
    "entry_proof",
    "health",
    "household_detail",
    "households_table",
    "interval_detail",
    "is_currency",
    "market_now",
    "market_series",
    "overview",
    "statement",
    "trades",
]

DEFAULT_INTERVAL_S = 900
DAY_S = 86_400
RECENT_S = DAY_S  # rejections and anomalies of the last day of the log are shown
MAX_ANOMALIES = 50


def _kpis(conn: Connection, start: int | None = None, end: int | None = None) -> dict[str, Any]:
    """The neighbourhood's figures (K) over the intervals in ``[start, end)``."""
    s = t.interval_stats
    covered = case((s.c.import_wh < s.c.export_wh, s.c.import_wh), else_=s.c.export_wh)
    query = select(
        func.coalesce(func.sum(s.c.volume_wh), 0),
        func.coalesce(func.sum(s.c.grid_buy_wh), 0),
        func.coalesce(func.sum(s.c.grid_sell_wh), 0),
        func.coalesce(func.sum(s.c.import_wh), 0),
        func.coalesce(func.sum(s.c.export_wh), 0),
        func.coalesce(func.sum(covered), 0),
        func.coalesce(func.sum(s.c.bought_wh), 0),
        func.coalesce(func.sum(s.c.cost_micro), 0),
        func.coalesce(func.sum(s.c.grid_only_cost_micro), 0),
    )
    if start is not None:
        query = query.where(s.c.interval >= start)
    if end is not None:
        query = query.where(s.c.interval < end)
    p2p, grid_in, grid_out, drawn, fed, shared, bought, cost, grid_only = (
        int(v) for v in conn.execute(query).one()
    )
    savings = grid_only - cost
    return {
        "p2p_wh": p2p,
        "grid_import_wh": grid_in,
        "grid_export_wh": grid_out,
        "import_wh": drawn,
        "export_wh": fed,
        "self_sufficiency": _ratio(shared, drawn),
        "p2p_share": _ratio(bought, drawn),
        "cost_micro": cost,
        "grid_only_cost_micro": grid_only,
        "savings_micro": savings,
        "savings_pct": 100.0 * savings / grid_only if grid_only != 0 else 0.0,
    }


def _interval_s(conn: Connection) -> int:
    """The interval length: the gap between the last two cleared intervals."""
    s = t.interval_stats
    last = conn.execute(
        select(s.c.interval)
        .where(s.c.closed_idx.is_not(None))
        .order_by(s.c.interval.desc())
        .limit(2)
    ).all()
    if len(last) < 2:
        return DEFAULT_INTERVAL_S
    return int(last[0][0]) - int(last[1][0])


def _latest_checkpoint(conn: Connection) -> Mapping[str, Any] | None:
    c = t.checkpoint
    row = conn.execute(select(c).order_by(c.c.tree_size.desc()).limit(1)).mappings().first()
    return None if row is None else dict(row)


NEAR_INTERVALS = 2  # a market this close to the wall clock runs on it
HEARD_STALE_S = 120  # a market in simulated time heard from longer ago than this is idle


@dataclass(frozen=True)
class Heard:
    """The market's last announcement heard on the bus (the listener keeps it)."""

    interval: int
    interval_s: int
    phase: Literal["open", "cleared", "closed"]  # closed: the market's closing round
    heard_s: int  # the wall clock when it was heard


def _open(current: int, step: int, clock: str, *, countdown: bool) -> dict[str, Any]:
    return {
        "state": "open",
        "clock": clock,
        "current_interval": current,
        "next_close_s": current + step if countdown else None,
        "interval_s": step,
    }


def market_now(
    heard: Heard | None, *, now_s: int, last_closed: int | None, interval_s: int
) -> dict[str, Any]:
    """The market's current interval, if any, and whether a countdown to its close makes
    sense: ``state`` ``open`` or ``idle``; ``clock`` ``wall`` (the interval is the wall
    clock's current one: a countdown), ``simulated`` (a market far from the wall clock,
    as a simulation's: no countdown) or None when idle.

    From the bus (``heard``): the interval last announced open or cleared, unless the
    market announced its close; without a broker (``heard`` None), from the log: the
    wall clock's interval while the last closed one is within :data:`NEAR_INTERVALS`
    intervals of now, else idle.
    """
    idle = {
        "state": "idle",
        "clock": None,
        "current_interval": None,
        "next_close_s": None,
        "interval_s": interval_s,
    }
    if heard is None:
        current = now_s - now_s % interval_s
        near = last_closed is not None and 0 <= now_s - last_closed <= NEAR_INTERVALS * interval_s
        return _open(current, interval_s, "wall", countdown=True) if near else idle
    step = heard.interval_s
    idle["interval_s"] = step
    if heard.phase == "closed":
        return idle
    current = now_s - now_s % step
    if heard.interval == current:
        return _open(current, step, "wall", countdown=True)
    far = abs(heard.interval - current) > NEAR_INTERVALS * step
    if far and now_s - heard.heard_s <= HEARD_STALE_S:
        return _open(heard.interval, step, "simulated", countdown=False)
    return idle


def is_currency(code: str) -> bool:
    """Whether ``code`` has the form of an ISO 4217 currency code (three capitals)."""
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def overview(
    rm: ReadModel, *, now_s: int, currency: str = "EUR", heard: Heard | None = None
) -> dict[str, Any]:
    """The overview page: the current interval (:func:`market_now`: ``heard`` is the
    last announcement heard on the bus, None without a broker), the last trading
    interval's clearing, today's and the run's figures, agents, recent rejections and
    anomaly flags, the ledger's latest checkpoint; money in ``currency``'s micro-units.
    A closing round (readings only, no clearing entry in the log) is no trading interval."""
    s = t.interval_stats
    with rm.engine.connect() as conn:
        interval_s = _interval_s(conn)
        last_row = (
            conn.execute(
                select(s).where(s.c.closed_idx.is_not(None)).order_by(s.c.interval.desc()).limit(1)
            )
            .mappings()
            .first()
        )
        last = None
        today: dict[str, Any] = _kpis(conn, 0, 0)
        if last_row is not None:
            last = {
                "interval": last_row["interval"],
                "price_micro_per_kwh": last_row["price_micro_per_kwh"],
                "retail_micro_per_kwh": last_row["retail_micro_per_kwh"],
                "feed_in_micro_per_kwh": last_row["feed_in_micro_per_kwh"],
                "volume_wh": last_row["volume_wh"],
                "grid_import_wh": last_row["grid_buy_wh"],
                "grid_export_wh": last_row["grid_sell_wh"],
                "trades": last_row["trades"],
            }
            day = int(last_row["interval"]) - int(last_row["interval"]) % DAY_S
            today = _kpis(conn, day, day + DAY_S)
        since = (0 if last is None else int(last["interval"])) - RECENT_S
        r, a = t.rejection, t.anomaly
        rejections = [
            {"interval": i, "reason": reason, "count": n}
            for i, reason, n in conn.execute(
                select(r.c.interval, r.c.reason, r.c["count"])
                .where(r.c.interval >= since)
                .order_by(r.c.interval.desc(), r.c.reason)
            )
        ]
        anomalies = [
            {"household": h, "interval": i, "kind": k}
            for h, i, k in conn.execute(
                select(a.c.household, a.c.interval, a.c.kind)
                .where(a.c.interval >= since)
                .order_by(a.c.interval.desc(), a.c.household, a.c.kind)
                .limit(MAX_ANOMALIES)
            )
        ]
        online = conn.execute(
            select(func.count()).select_from(t.presence).where(t.presence.c.online == 1)
        ).scalar_one()
        known = conn.execute(select(func.count()).select_from(t.household)).scalar_one()
        total_trades = conn.execute(select(func.coalesce(func.sum(s.c.trades), 0))).scalar_one()
        cp = _latest_checkpoint(conn)
        state = _state(conn, "market_id", "last_verify")
        last_closed = None if last is None else int(last["interval"])
        market = market_now(heard, now_s=now_s, last_closed=last_closed, interval_s=interval_s)
        return {
            "market_id": state["market_id"],
            "currency": currency,
            "now_s": now_s,
            "interval_s": market["interval_s"],
            "current_interval": market["current_interval"],
            "next_close_s": market["next_close_s"],
            "market": {"state": market["state"], "clock": market["clock"]},
            "last": last,
            "today": today,
            "run": _kpis(conn),
            "agents": {"online": int(online), "known": int(known)},
            "rejections": rejections,
            "anomalies": anomalies,
            "ledger": {
                "tree_size": 0 if cp is None else cp["tree_size"],
                "root_hex": None if cp is None else bytes(cp["root"]).hex(),
                "kid": None if cp is None else cp["kid"],
                "trades": int(total_trades),
                "last_verify": _json_state(state["last_verify"]),
            },
        }


_PRICES = ("price_micro_per_kwh", "retail_micro_per_kwh", "feed_in_micro_per_kwh")


def market_series(
    rm: ReadModel, *, start: int | None = None, end: int | None = None
) -> dict[str, Any]:
    """Columns over the cleared intervals in ``[start, end)``: price, tariffs, volumes,
    and the neighbourhood's metered net import beside the sum of the household forecasts
    heard for the interval (null without one; ``forecast_households`` says how many)."""
    if start is not None and end is not None and start >= end:
        raise BadRequest(f"start {start} is not before end {end}")
    s, fc = t.interval_stats, t.forecast_total
    query = (
        select(
            *(s.c[n] for n in ("interval", *_PRICES, "volume_wh", "grid_buy_wh", "grid_sell_wh")),
            s.c.import_wh - s.c.export_wh,
            fc.c.net_wh,
            func.coalesce(fc.c.households, 0),
        )
        .select_from(s.outerjoin(fc, fc.c.interval == s.c.interval))
        .where(s.c.closed_idx.is_not(None))
    )
    if start is not None:
        query = query.where(s.c.interval >= start)
    if end is not None:
        query = query.where(s.c.interval < end)
    with rm.engine.connect() as conn:
        rows = conn.execute(query.order_by(s.c.interval)).all()
    names = (
        *("intervals", *_PRICES, "p2p_wh", "grid_import_wh", "grid_export_wh"),
        *("metered_net_wh", "forecast_net_wh", "forecast_households"),
    )
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {
        name: [None if v is None else int(v) for v in column]
        if name.endswith("_wh")
        else list(column)
        for name, column in zip(names, columns, strict=True)
    }


def _curve(orders: list[tuple[int, int]]) -> list[list[int]]:
    """``[cumulative Wh through this price, price]`` per price level, in the given order."""
    points: list[list[int]] = []
    total = 0
    for quantity, price in orders:
        total += quantity
        if points and points[-1][1] == price:
            points[-1][0] = total
        else:
            points.append([total, price])
    return points


def interval_detail(rm: ReadModel, interval: int) -> dict[str, Any]:
    """One interval: its order book as step curves (supply ascending in price, demand
    descending; each point the cumulative quantity through that price), the clearing
    point and the trades."""
    s, o, tr = t.interval_stats, t.book_order, t.trade
    with rm.engine.connect() as conn:
        stats = conn.execute(select(s).where(s.c.interval == interval)).mappings().first()
        if stats is None:
            raise NotFound(f"no interval {interval} in the log")
        book = conn.execute(
            select(o.c.side, o.c.quantity_wh, o.c.price_micro_per_kwh).where(
                o.c.interval == interval
            )
        ).all()
        fills = conn.execute(select(tr).where(tr.c.interval == interval).order_by(tr.c.idx)).all()
    sells = sorted((q, p) for side, q, p in book if side == "sell")
    buys = sorted(((q, p) for side, q, p in book if side == "buy"), key=lambda x: -x[1])
    return {
        "interval": interval,
        "price_micro_per_kwh": stats["price_micro_per_kwh"],
        "mechanism": stats["mechanism"],
        "supply": _curve(sorted(sells, key=lambda x: x[1])),
        "demand": _curve(buys),
        "clearing": {
            "volume_wh": stats["volume_wh"],
            "price_micro_per_kwh": stats["price_micro_per_kwh"],
        },
        "trades": [_trade_json(r) for r in fills],
    }


def health(
    rm: ReadModel, *, now_s: int, ledger_ok: bool, ledger_problem: str | None
) -> dict[str, Any]:
    """The service's health: ledger, read model lag, broker, last interval closed, and
    the forecasting service's last signed health (``forecaster``)."""
    s = t.interval_stats
    with rm.engine.connect() as conn:
        keys = (APPLIED_SIZE, "ledger_size", "synced_at_s", "broker", FORECASTER_HEALTH)
        state = _state(conn, *keys)
        last = conn.execute(
            select(func.max(s.c.interval)).where(s.c.closed_idx.is_not(None))
        ).scalar_one()
    applied = int(state[APPLIED_SIZE] or 0)
    ledger_size = int(state["ledger_size"] or 0)
    synced = state["synced_at_s"]
    broker = _json_state(state["broker"])
    heard = _json_state(state[FORECASTER_HEALTH])
    connected = None if broker is None else bool(broker["connected"])
    ok = ledger_ok and connected is not False
    return {
        "status": "ok" if ok else "degraded",
        "ledger": {"ok": ledger_ok, "problem": ledger_problem, "tree_size": ledger_size},
        "read_model": {
            "applied_size": applied,
            "lag_entries": max(ledger_size - applied, 0),
            "lag_s": None if synced is None else max(now_s - int(synced), 0),
        },
        "broker": {"configured": broker is not None, "connected": bool(connected)},
        "last_interval_closed": None if last is None else int(last),
        "forecaster": forecaster_json(
            None if heard is None else heard["body"],
            heard_s=None if heard is None else int(heard["heard_s"]),
            now_s=now_s,
        ),
        "now_s": now_s,
    }
