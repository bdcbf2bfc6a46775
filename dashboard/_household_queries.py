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


def household_detail(rm: ReadModel, household: str) -> dict[str, Any]:
    """One household's series per interval (metered, traded, forecast against actual net
    import), its latest trades and its statement's totals."""
    f, tr = t.forecast, t.trade
    with rm.engine.connect() as conn:
        _known(conn, household)
        rows = _statement_rows(conn, household)
        forecasts = {
            int(i): int(d) - int(p)
            for i, d, p in conn.execute(
                select(f.c.interval, f.c.demand_wh, f.c.pv_wh).where(f.c.household == household)
            )
        }
        fills = conn.execute(
            select(tr)
            .where(or_(tr.c.buyer == household, tr.c.seller == household))
            .order_by(tr.c.idx.desc())
            .limit(HOUSEHOLD_TRADES)
        ).all()
    intervals = [r.interval for r in rows]
    return {
        "household": household,
        "series": {
            "intervals": intervals,
            "import_wh": [r.import_wh for r in rows],
            "export_wh": [r.export_wh for r in rows],
            "bought_wh": [r.bought_wh for r in rows],
            "sold_wh": [r.sold_wh for r in rows],
            "forecast_net_wh": [forecasts.get(i) for i in intervals],
            "actual_net_wh": [r.metered_net_wh for r in rows],
        },
        "trades": [_trade_json(r) for r in fills],
        "totals": Statement(household, rows).totals(),
    }
