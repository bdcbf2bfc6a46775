"""Pure: a batch of parsed log entries and the rows it touches -> the read model's changes.

The household figures follow :class:`ledger.statement._Builder` entry by entry (trades
fill bought/sold, a settlement or correction replaces the row's figures, a flag marks
it, postings add to what was posted), so a statement built from the rows equals the one
built from the log. The caller (:mod:`dashboard.readmodel`) loads the rows of every
interval the batch touches (:func:`touched`), calls :func:`fold`, and writes
:class:`Changes` back in one transaction.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wattmesh.broker.messages import OrderBody, parse_signed
from wattmesh.dashboard._tables import HOUSEHOLD_FIGURES, SUM_COLUMNS, TOTAL_COLUMNS
from wattmesh.ledger.accounts import Cause, Posting, household_account
from wattmesh.ledger.entries import EntryKind, parse_flag, parse_revision

__all__ = ["Changes", "fold", "touched"]

Entry = tuple[int, int, Mapping[str, Any]]
"""A log entry as ``(idx, interval column, json.loads(data))``."""

Row = dict[str, Any]

FLAGGED = "flagged"
UNSETTLED = "unsettled"
SETTLED = frozenset({"metered", "estimated"})
DEFAULT_MECHANISM = "uniform"

_ROW_KINDS = frozenset(
    {
        EntryKind.CLEARING,
        EntryKind.TRADE,
        EntryKind.SETTLEMENT,
        EntryKind.CORRECTION,
        EntryKind.FLAG,
        EntryKind.POSTING,
    }
)
_KEY_KINDS = frozenset({EntryKind.KEY, EntryKind.KEY_ROTATION, EntryKind.KEY_REVOCATION})


@dataclass
class Changes:
    """Rows to write (each replaces the row of its primary key), in no particular order."""

    rows: list[Row] = field(default_factory=list)  # household_interval
    stats: list[Row] = field(default_factory=list)  # interval_stats
    trades: list[Row] = field(default_factory=list)
    orders: list[Row] = field(default_factory=list)  # book_order
    households: list[Row] = field(default_factory=list)
    anomalies: list[Row] = field(default_factory=list)
    totals: dict[str, dict[str, int]] = field(default_factory=dict)  # household -> deltas
    closed: list[int] = field(default_factory=list)  # intervals whose clearing was folded


def touched(entries: Iterable[Entry]) -> tuple[set[int], set[str]]:
    """The intervals whose household rows and statistics the batch changes, and the
    households whose keys it changes: what :func:`fold` needs loaded."""
    intervals: set[int] = set()
    agents: set[str] = set()
    for _idx, _interval, obj in entries:
        kind = obj.get("kind")
        if kind in _ROW_KINDS:
            intervals.add(int(obj["interval"]))
        elif kind in _KEY_KINDS:
            agents.add(str(obj["agent"]))
    return intervals, agents


def new_row(household: str, interval: int) -> Row:
    """A household's row for an interval before anything is known (as a StatementRow)."""
    row: Row = dict.fromkeys(HOUSEHOLD_FIGURES, 0)
    row.update(
        household=household,
        interval=interval,
        basis=UNSETTLED,
        price_micro_per_kwh=None,
        retail_micro_per_kwh=None,
        feed_in_micro_per_kwh=None,
        flag_reason="",
    )
    return row


def new_stats(interval: int) -> Row:
    stats: Row = dict.fromkeys(SUM_COLUMNS, 0)
    stats.update(
        interval=interval,
        price_micro_per_kwh=None,
        retail_micro_per_kwh=None,
        feed_in_micro_per_kwh=None,
        mechanism=None,
        orders=0,
        rejected=0,
        trades=0,
        volume_wh=0,
        closed_idx=None,
    )
    return stats


def row_cost_micro(row: Mapping[str, Any]) -> int:
    return int(row["p2p_cost_micro"]) + int(row["grid_cost_micro"]) + int(row["fee_micro"])


class _Fold:
    def __init__(
        self,
        rows: Mapping[tuple[str, int], Row],
        stats: Mapping[int, Row],
        keys: Mapping[str, Row],
    ) -> None:
        self.before = rows
        self.rows = {k: dict(v) for k, v in rows.items()}
        self.stats_before = stats
        self.stats = {k: dict(v) for k, v in stats.items()}
        self.keys = {k: dict(v) for k, v in keys.items()}
        self.changed_keys: set[str] = set()
        self.out = Changes()

    def row(self, household: str, interval: int) -> Row:
        row = self.rows.get((household, interval))
        if row is None:
            row = self.rows[(household, interval)] = new_row(household, interval)
            stats = self.stats.get(interval)
            if stats is not None:
                row["price_micro_per_kwh"] = stats["price_micro_per_kwh"]
        return row

    def stat(self, interval: int) -> Row:
        stats = self.stats.get(interval)
        if stats is None:
            stats = self.stats[interval] = new_stats(interval)
        return stats

    def add(self, idx: int, interval_column: int, obj: Mapping[str, Any]) -> None:
        kind = obj.get("kind")
        if kind == EntryKind.TRADE:
            self.trade(idx, obj)
        elif kind == EntryKind.ORDER:
            self.order(idx, obj)
        elif kind in (EntryKind.SETTLEMENT, EntryKind.CORRECTION):
            logged = parse_revision(dict(obj))
            s = logged.settlement
            row = self.row(s.agent, s.interval)
            row.update(
                basis=logged.basis.value,
                import_wh=s.import_wh,
                export_wh=s.export_wh,
                bought_wh=s.bought_wh,
                sold_wh=s.sold_wh,
                grid_buy_wh=s.grid_buy_wh,
                grid_sell_wh=s.grid_sell_wh,
                p2p_cost_micro=s.p2p_cost_micro,
                grid_cost_micro=s.grid_cost_micro,
                grid_only_cost_micro=s.grid_only_cost_micro,
                fee_micro=s.network_fee_micro,
                retail_micro_per_kwh=logged.tariff.retail_micro_per_kwh,
                feed_in_micro_per_kwh=logged.tariff.feed_in_micro_per_kwh,
            )
            if kind == EntryKind.CORRECTION:
                row["corrections"] += 1
        elif kind == EntryKind.POSTING:
            posting = Posting.from_json(dict(obj))
            row = self.row(posting.agent, posting.interval)
            amount = posting.amount_for(household_account(posting.agent))
            row["posted_micro"] += amount
            if posting.cause is Cause.NETWORK_FEE:
                row["fee_posted_micro"] += amount
        elif kind == EntryKind.CLEARING:
            self.clearing(idx, obj)
        elif kind == EntryKind.FLAG:
            flag = parse_flag(dict(obj))
            row = self.row(flag.agent, flag.interval)
            row.update(
                basis=FLAGGED,
                flag_reason=flag.reason.value,
                import_wh=flag.import_wh,
                export_wh=flag.export_wh,
            )
            detail = {
                "import_wh": flag.import_wh,
                "export_wh": flag.export_wh,
                "elapsed_s": flag.elapsed_s,
                "limit_wh": flag.limit_wh,
                "idx": idx,
            }
            self.out.anomalies.append(
                {
                    "household": flag.agent,
                    "interval": flag.interval,
                    "kind": flag.reason.value,
                    "detail": json.dumps(detail, sort_keys=True),
                    "source": "log",
                }
            )
        elif kind == EntryKind.ANOMALY:
            self.anomaly(idx, obj)
        elif kind in _KEY_KINDS:
            self.key(str(kind), interval_column, obj)

    def anomaly(self, idx: int, obj: Mapping[str, Any]) -> None:
        """The forecasting service's signed flag (ledger.anomalies), source ``forecaster``."""
        body = obj["signed"]["body"]
        detail = {
            "reason": body["reason"],
            "score_milli": body["score_milli"],
            "window_start": body["window_start"],
            "window_end": body["window_end"],
            "idx": idx,
        }
        self.out.anomalies.append(
            {
                "household": str(body["agent"]),
                "interval": int(body["interval"]),
                "kind": str(body["anomaly"]),
                "detail": json.dumps(detail, sort_keys=True),
                "source": "forecaster",
            }
        )

    def trade(self, idx: int, obj: Mapping[str, Any]) -> None:
        interval, quantity = int(obj["interval"]), int(obj["quantity_wh"])
        buyer, seller = str(obj["buyer"]), str(obj["seller"])
        self.out.trades.append(
            {
                "idx": idx,
                "interval": interval,
                "buyer": buyer,
                "seller": seller,
                "quantity_wh": quantity,
                "price_micro_per_kwh": int(obj["price_micro_per_kwh"]),
            }
        )
        self.stat(interval)["trades"] += 1
        self.row(buyer, interval)["bought_wh"] += quantity
        self.row(seller, interval)["sold_wh"] += quantity

    def order(self, idx: int, obj: Mapping[str, Any]) -> None:
        header, body = parse_signed(obj["signed"])
        if not isinstance(body, OrderBody):  # pragma: no cover - the ledger logs orders only
            return
        self.out.orders.append(
            {
                "idx": idx,
                "interval": header.interval,
                "household": header.agent,
                "side": body.side.value,
                "quantity_wh": body.quantity_wh,
                "price_micro_per_kwh": body.price_micro_per_kwh,
            }
        )

    def clearing(self, idx: int, obj: Mapping[str, Any]) -> None:
        interval = int(obj["interval"])
        price = obj.get("price_micro_per_kwh")
        self.stat(interval).update(
            price_micro_per_kwh=None if price is None else int(price),
            retail_micro_per_kwh=int(obj["retail_micro_per_kwh"]),
            feed_in_micro_per_kwh=int(obj["feed_in_micro_per_kwh"]),
            mechanism=str(obj.get("mechanism", DEFAULT_MECHANISM)),
            orders=int(obj["orders"]),
            rejected=int(obj["rejected"]),
            volume_wh=int(obj["volume_wh"]),
            closed_idx=idx,
        )
        for (_household, at), row in self.rows.items():
            if at == interval:
                row["price_micro_per_kwh"] = price
        self.out.closed.append(interval)

    def key(self, kind: str, interval: int, obj: Mapping[str, Any]) -> None:
        agent = str(obj["agent"])
        current = self.keys.get(agent)
        if kind == EntryKind.KEY_REVOCATION:
            if current is not None and current["kid"] == obj["kid"]:
                current["revoked"] = 1
                self.changed_keys.add(agent)
            return
        der = base64.b64decode(str(obj["public_key"]))
        if current is None:
            self.keys[agent] = {
                "id": agent,
                "kid": str(obj["kid"]),
                "public_key_der": der,
                "first_interval": interval,
                "revoked": 0,
            }
        else:
            current.update(kid=str(obj["kid"]), public_key_der=der, revoked=0)
        self.changed_keys.add(agent)

    def finish(self) -> Changes:
        by_interval: dict[int, list[Row]] = {}
        for (_household, interval), row in self.rows.items():
            by_interval.setdefault(interval, []).append(row)
        for interval, rows in by_interval.items():
            self.summarise(self.stat(interval), rows)
        out = self.out
        for key, row in self.rows.items():
            old = self.before.get(key)
            if old != row:
                out.rows.append(row)
                delta = _totals(row, old)
                into = out.totals.setdefault(row["household"], dict.fromkeys(TOTAL_COLUMNS, 0))
                for name, value in delta.items():
                    into[name] += value
        out.stats = [s for t, s in self.stats.items() if self.stats_before.get(t) != s]
        out.households = [self.keys[a] for a in sorted(self.changed_keys)]
        return out

    @staticmethod
    def summarise(stats: Row, rows: Sequence[Row]) -> None:
        """The interval's sums over its household rows (energy and money of the rows not
        flagged), and each row's ``covered_wh``."""
        sums = dict.fromkeys(SUM_COLUMNS, 0)
        counted = [r for r in rows if r["basis"] != FLAGGED]
        for name in ("import_wh", "export_wh", "bought_wh", "sold_wh", "grid_buy_wh"):
            sums[name] = sum(int(r[name]) for r in counted)
        for name in ("grid_sell_wh", "grid_only_cost_micro", "fee_micro"):
            sums[name] = sum(int(r[name]) for r in counted)
        sums["cost_micro"] = sum(row_cost_micro(r) for r in counted)
        sums["households"] = len(rows)
        sums["flagged"] = len(rows) - len(counted)
        sums["settled"] = sum(1 for r in rows if r["basis"] in SETTLED)
        stats.update(sums)
        drawn, fed = sums["import_wh"], sums["export_wh"]
        covered = min(drawn, fed)
        for r in rows:
            share = int(r["import_wh"]) * covered // drawn if drawn > 0 else 0
            r["covered_wh"] = share if r["basis"] != FLAGGED and share > 0 else 0


def _totals(row: Row, old: Row | None) -> dict[str, int]:
    """What replacing ``old`` by ``row`` adds to the household's totals."""

    def figures(r: Row | None) -> dict[str, int]:
        if r is None:
            return dict.fromkeys(TOTAL_COLUMNS, 0)
        return {
            "intervals": 1,
            "import_wh": int(r["import_wh"]),
            "export_wh": int(r["export_wh"]),
            "bought_wh": int(r["bought_wh"]),
            "sold_wh": int(r["sold_wh"]),
            "cost_micro": row_cost_micro(r),
            "grid_only_cost_micro": int(r["grid_only_cost_micro"]),
            "covered_wh": int(r["covered_wh"]),
        }

    new, before = figures(row), figures(old)
    return {name: new[name] - before[name] for name in TOTAL_COLUMNS}


def fold(
    entries: Iterable[Entry],
    *,
    rows: Mapping[tuple[str, int], Row],
    stats: Mapping[int, Row],
    keys: Mapping[str, Row],
) -> Changes:
    """Fold ``entries`` (in log order) into the current ``rows`` (every household row of
    the intervals :func:`touched` names, by ``(household, interval)``), ``stats`` (their
    ``interval_stats`` rows, by interval) and ``keys`` (the ``household`` rows of the
    households whose keys change). The inputs are not changed."""
    state = _Fold(rows, stats, keys)
    for idx, interval, obj in entries:
        state.add(idx, interval, obj)
    return state.finish()
