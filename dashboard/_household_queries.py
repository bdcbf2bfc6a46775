"""The household read functions: the households table, a household's page, its statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from wattmesh.dashboard import _tables as t
from wattmesh.dashboard._qbase import _known, _ratio, _trade_json
from wattmesh.dashboard.readmodel import ReadModel
from wattmesh.ledger.statement import Statement, StatementError, StatementRow

__all__ = ["household_detail", "households_table", "statement"]

HOUSEHOLD_TRADES = 200


def households_table(rm: ReadModel, *, only: str | None = None) -> dict[str, Any]:
    """Each household's totals (``only``: that household's row alone)."""
    h, tot = t.household, t.household_total
    query = select(h.c.id, tot).select_from(h.outerjoin(tot, tot.c.household == h.c.id))
    with rm.engine.connect() as conn:
        if only is not None:
            _known(conn, only)
            query = query.where(h.c.id == only)
        rows = conn.execute(query.order_by(h.c.id)).mappings().all()
    out = []
    for r in rows:
        bill, grid_only = int(r["cost_micro"] or 0), int(r["grid_only_cost_micro"] or 0)
        drawn = int(r["import_wh"] or 0)
        out.append(
            {
                "household": r["id"],
                "bill_micro": bill,
                "grid_only_bill_micro": grid_only,
                "savings_micro": grid_only - bill,
                "bought_wh": int(r["bought_wh"] or 0),
                "sold_wh": int(r["sold_wh"] or 0),
                "import_wh": drawn,
                "export_wh": int(r["export_wh"] or 0),
                "self_sufficiency": _ratio(int(r["covered_wh"] or 0), drawn),
            }
        )
    return {"households": out}


def _statement_rows(conn: Connection, household: str) -> list[StatementRow]:
    """The household's rows as statement rows, the columns in StatementRow's order."""
    hi, s = t.household_interval, t.interval_stats
    query = (
        select(
            hi.c.interval,
            hi.c.basis,
            hi.c.import_wh,
            hi.c.export_wh,
            hi.c.bought_wh,
            hi.c.sold_wh,
            s.c.price_micro_per_kwh,  # the interval's clearing price, as the builder takes it
            hi.c.retail_micro_per_kwh,
            hi.c.feed_in_micro_per_kwh,
            hi.c.p2p_cost_micro,
            hi.c.grid_cost_micro,
            hi.c.fee_micro,
            hi.c.grid_only_cost_micro,
            hi.c.corrections,
            hi.c.posted_micro,
            hi.c.fee_posted_micro,
            hi.c.flag_reason,
        )
        .select_from(hi.outerjoin(s, s.c.interval == hi.c.interval))
        .where(hi.c.household == household)
        .order_by(hi.c.interval)
    )
    return [StatementRow(*row) for row in conn.execute(query).all()]


def statement(rm: ReadModel, household: str) -> Statement:
    """The household's statement, equal to ``wattmesh ledger statement``'s; raises
    :class:`ledger.statement.StatementError` when it does not reconcile, as that does."""
    with rm.engine.connect() as conn:
        _known(conn, household)
        rows = _statement_rows(conn, household)
    for r in rows:
        if r.cost_micro != r.posted_micro:
            problem = f"cost {r.cost_micro} differs from the postings {r.posted_micro}"
            raise StatementError(household, r.interval, problem)
        if r.fee_micro != r.fee_posted_micro:
            fee, posted = r.fee_micro, r.fee_posted_micro
            problem = f"network fee {fee} differs from the fee postings {posted}"
            raise StatementError(household, r.interval, problem)
    return Statement(household, rows)


_BANDS = ("demand_wh", "demand_p10_wh", "demand_p90_wh", "pv_wh", "pv_p10_wh", "pv_p90_wh")


def _get(row: Any, name: str) -> int | None:
    """A forecast figure; a quantile stored before quantiles were is the median."""
    if row is None:
        return None
    value = row._mapping[name]
    if value is None:
        value = row._mapping[name.replace("_p10", "").replace("_p90", "")]
    return int(value)


def _net(row: Any, demand: str, pv: str) -> int | None:
    """Net import ``demand - pv`` of a forecast row (None without one)."""
    if row is None:
        return None
    return int(_get(row, demand) or 0) - int(_get(row, pv) or 0)


def _model(row: Any) -> dict[str, Any]:
    """The model, version and training checkpoint of the latest forecast heard."""
    size, root = row.trained_on_size, row.trained_on_root
    return {
        "interval": int(row.interval),
        "model": row.model,
        "version": row.version,
        "issued_s": int(row.issued_s),
        "trained_on": None if size is None else {"tree_size": int(size), "root": root},
    }


def household_detail(rm: ReadModel, household: str) -> dict[str, Any]:
    """One household's series per interval (metered, traded, forecast against actual net
    import with the forecast's 10-90 % band), the model of its latest forecast, its
    latest trades and its statement's totals.

    The net band is ``demand_p10 - pv_p90`` to ``demand_p90 - pv_p10``: where net import
    lies when demand and PV each lie within their own 10-90 % band (the forecast gives
    no joint quantiles, so this is wider than an 80 % interval of the net)."""
    f, tr = t.forecast, t.trade
    with rm.engine.connect() as conn:
        _known(conn, household)
        rows = _statement_rows(conn, household)
        forecasts = {
            int(r.interval): r
            for r in conn.execute(
                select(f).where(f.c.household == household).order_by(f.c.interval)
            )
        }
        fills = conn.execute(
            select(tr)
            .where(or_(tr.c.buyer == household, tr.c.seller == household))
            .order_by(tr.c.idx.desc())
            .limit(HOUSEHOLD_TRADES)
        ).all()
    intervals = [r.interval for r in rows]
    heard = [forecasts.get(i) for i in intervals]
    latest = max(forecasts.values(), key=lambda r: (r.issued_s, r.interval), default=None)
    return {
        "household": household,
        "series": {
            "intervals": intervals,
            "import_wh": [r.import_wh for r in rows],
            "export_wh": [r.export_wh for r in rows],
            "bought_wh": [r.bought_wh for r in rows],
            "sold_wh": [r.sold_wh for r in rows],
            "forecast_net_wh": [_net(r, "demand_wh", "pv_wh") for r in heard],
            "forecast_net_p10_wh": [_net(r, "demand_p10_wh", "pv_p90_wh") for r in heard],
            "forecast_net_p90_wh": [_net(r, "demand_p90_wh", "pv_p10_wh") for r in heard],
            **{f"forecast_{name}": [_get(r, name) for r in heard] for name in _BANDS},
            "actual_net_wh": [r.metered_net_wh for r in rows],
        },
        "forecast": None if latest is None else _model(latest),
        "trades": [_trade_json(r) for r in fills],
        "totals": Statement(household, rows).totals(),
    }
