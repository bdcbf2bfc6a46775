"""A household's statement, built from the log alone.

Per interval: what its meter measured, what it traded, the deviation the grid covered,
the price and the cost.

Pure: :func:`build_statement` reads parsed log entries (``json.loads`` of each leaf).
Each interval's figures are its last revision (settlement or correction), the network
fee (a seller's, ``fee_micro``) included; its cost is recomputed from those figures and
must equal the sum of the household's posting lines for the interval (P2P, grid and
``network_fee`` postings), or :class:`StatementError` is raised.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wattmesh.broker.errors import FailureError, LedgerError
from wattmesh.ledger.accounts import Cause, Posting, household_account
from wattmesh.ledger.entries import EntryKind, parse_flag, parse_revision

__all__ = ["Statement", "StatementError", "StatementRow", "build_statement"]

FLAGGED = "flagged"
UNSETTLED = "unsettled"


class StatementError(LedgerError, FailureError, ValueError):
    """The household's figures do not reconcile with its postings: the ``household``,
    the ``interval`` (epoch s) and the ``problem``."""

    def __init__(self, household: str, interval: int, problem: str) -> None:
        super().__init__(f"{household}, interval {interval}: {problem}")
        self.household = household
        self.interval = interval
        self.problem = problem

    def __reduce__(self) -> tuple[type[StatementError], tuple[str, int, str]]:
        return (type(self), (self.household, self.interval, self.problem))


@dataclass
class StatementRow:
    interval: int  # start, epoch s
    basis: str = UNSETTLED  # metered, estimated, flagged, or unsettled (not yet due)
    import_wh: int = 0
    export_wh: int = 0
    bought_wh: int = 0
    sold_wh: int = 0
    price_micro_per_kwh: int | None = None  # the interval's clearing price
    retail_micro_per_kwh: int | None = None
    feed_in_micro_per_kwh: int | None = None
    p2p_cost_micro: int = 0
    grid_cost_micro: int = 0
    fee_micro: int = 0  # the network fee on the household's P2P sales (settlement figure)
    grid_only_cost_micro: int = 0
    corrections: int = 0
    posted_micro: int = 0  # the household's posting lines for the interval
    fee_posted_micro: int = 0  # of which cause network_fee
    flag_reason: str = ""

    @property
    def metered_net_wh(self) -> int:
        return self.import_wh - self.export_wh

    @property
    def traded_net_wh(self) -> int:
        return self.bought_wh - self.sold_wh

    @property
    def deviation_wh(self) -> int:
        """What the grid covered: + bought from it, - sold to it (0 when flagged)."""
        return 0 if self.basis == FLAGGED else self.metered_net_wh - self.traded_net_wh

    @property
    def cost_micro(self) -> int:
        return self.p2p_cost_micro + self.grid_cost_micro + self.fee_micro

    def to_json(self) -> dict[str, Any]:
        """The row's fields in statement order (the CSV columns)."""
        start = datetime.fromtimestamp(self.interval, UTC).isoformat().replace("+00:00", "Z")
        return {
            "start": start,
            "interval": self.interval,
            "basis": self.basis,
            "import_wh": self.import_wh,
            "export_wh": self.export_wh,
            "metered_net_wh": self.metered_net_wh,
            "bought_wh": self.bought_wh,
            "sold_wh": self.sold_wh,
            "traded_net_wh": self.traded_net_wh,
            "deviation_wh": self.deviation_wh,
            "price_micro_per_kwh": self.price_micro_per_kwh,
            "retail_micro_per_kwh": self.retail_micro_per_kwh,
            "feed_in_micro_per_kwh": self.feed_in_micro_per_kwh,
            "p2p_cost_micro": self.p2p_cost_micro,
            "grid_cost_micro": self.grid_cost_micro,
            "fee_micro": self.fee_micro,
            "cost_micro": self.cost_micro,
            "grid_only_cost_micro": self.grid_only_cost_micro,
            "corrections": self.corrections,
            "flag_reason": self.flag_reason,
        }


TOTAL_FIELDS = (
    "import_wh",
    "export_wh",
    "metered_net_wh",
    "bought_wh",
    "sold_wh",
    "traded_net_wh",
    "deviation_wh",
    "p2p_cost_micro",
    "grid_cost_micro",
    "fee_micro",
    "cost_micro",
    "grid_only_cost_micro",
)


@dataclass
class Statement:
    household: str
    rows: list[StatementRow] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        rows = [r.to_json() for r in self.rows]
        totals = {name: sum(int(r[name]) for r in rows) for name in TOTAL_FIELDS}
        totals["posted_micro"] = sum(r.posted_micro for r in self.rows)
        totals["savings_micro"] = totals["grid_only_cost_micro"] - totals["cost_micro"]
        for basis in ("metered", "estimated", FLAGGED, UNSETTLED):
            totals[f"{basis}_intervals"] = sum(1 for r in self.rows if r.basis == basis)
        return totals

    def to_json(self) -> dict[str, Any]:
        return {
            "household": self.household,
            "rows": [r.to_json() for r in self.rows],
            "totals": self.totals(),
        }

    def to_csv(self) -> str:
        """One line per interval and a last ``total`` line; money in micro-units."""
        buffer = io.StringIO()
        rows = [r.to_json() for r in self.rows]
        columns = list(StatementRow(0).to_json())
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        totals = self.totals()
        writer.writerow({"start": "total", **{k: totals[k] for k in TOTAL_FIELDS}})
        return buffer.getvalue()


def build_statement(
    entries: Iterable[Mapping[str, Any]],
    *,
    household: str,
    start: int | None = None,
    end: int | None = None,
) -> Statement:
    """The statement of ``household`` for intervals in ``[start, end)`` (epoch s)."""
    builder = _Builder(household)
    for obj in entries:
        interval = int(obj.get("interval", 0))
        if (start is None or interval >= start) and (end is None or interval < end):
            builder.add(obj, interval)
    return builder.finish()


class _Builder:
    def __init__(self, household: str) -> None:
        self.household = household
        self.account = household_account(household)
        self.rows: dict[int, StatementRow] = {}
        self.prices: dict[int, int | None] = {}

    def row(self, interval: int) -> StatementRow:
        return self.rows.setdefault(interval, StatementRow(interval))

    def add(self, obj: Mapping[str, Any], interval: int) -> None:
        kind = obj.get("kind")
        if kind == EntryKind.CLEARING:
            self.prices[interval] = obj["price_micro_per_kwh"]
        elif kind == EntryKind.TRADE:  # the figures of flagged and unsettled intervals
            for side in ("buyer", "seller"):
                if obj[side] == self.household:
                    r = self.row(interval)
                    if side == "buyer":
                        r.bought_wh += int(obj["quantity_wh"])
                    else:
                        r.sold_wh += int(obj["quantity_wh"])
        elif obj.get("agent") != self.household:
            return
        elif kind in (EntryKind.SETTLEMENT, EntryKind.CORRECTION):
            r = self.row(interval)
            _apply_revision(r, obj)
            r.corrections += 1 if kind == EntryKind.CORRECTION else 0
        elif kind == EntryKind.FLAG:
            flag = parse_flag(dict(obj))
            r = self.row(interval)
            r.basis, r.flag_reason = FLAGGED, flag.reason.value
            r.import_wh, r.export_wh = flag.import_wh, flag.export_wh
        elif kind == EntryKind.POSTING:
            posting = Posting.from_json(dict(obj))
            r = self.row(interval)
            r.posted_micro += posting.amount_for(self.account)
            if posting.cause is Cause.NETWORK_FEE:
                r.fee_posted_micro += posting.amount_for(self.account)

    def finish(self) -> Statement:
        statement = Statement(self.household, [self.rows[t] for t in sorted(self.rows)])
        for r in statement.rows:
            r.price_micro_per_kwh = self.prices.get(r.interval)
            if r.cost_micro != r.posted_micro:
                raise StatementError(
                    self.household,
                    r.interval,
                    f"cost {r.cost_micro} differs from the postings {r.posted_micro}",
                )
            if r.fee_micro != r.fee_posted_micro:
                raise StatementError(
                    self.household,
                    r.interval,
                    f"network fee {r.fee_micro} differs from the fee postings {r.fee_posted_micro}",
                )
        return statement


def _apply_revision(row: StatementRow, obj: Mapping[str, Any]) -> None:
    logged = parse_revision(dict(obj))
    s = logged.settlement
    row.basis = logged.basis.value
    row.import_wh, row.export_wh = s.import_wh, s.export_wh
    row.bought_wh, row.sold_wh = s.bought_wh, s.sold_wh
    row.p2p_cost_micro, row.grid_cost_micro = s.p2p_cost_micro, s.grid_cost_micro
    row.grid_only_cost_micro = s.grid_only_cost_micro
    row.fee_micro = s.network_fee_micro
    row.retail_micro_per_kwh = logged.tariff.retail_micro_per_kwh
    row.feed_in_micro_per_kwh = logged.tariff.feed_in_micro_per_kwh
