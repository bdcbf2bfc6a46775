"""One scenario under several market mechanisms (``simulate --mechanism a,b,...``).

Each mechanism runs the same scenario with the same seed (so only the market's rule
differs) into its own report and ledger; :func:`comparison_report` gathers their headline
figures into the main report, and :func:`comparison_figures` lays them out as one table
(figures down, mechanisms across) for the terminal and the HTML report. Energy in Wh and
money in micro-units as in the runs' reports; the KPIs are theirs
(:mod:`wattmesh.sim.kpi`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wattmesh.sim.html_report import pct

__all__ = ["comparison_figures", "comparison_report", "comparison_row"]


def comparison_row(mechanism: str, report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of one mechanism's run."""
    kpi = report["kpi"]
    series = report.get("series") or {}
    prices = series.get("price_micro_per_kwh", [])
    volumes = series.get("p2p_wh", [])
    traded = sum(v for p, v in zip(prices, volumes, strict=False) if p is not None)
    value = sum(p * v for p, v in zip(prices, volumes, strict=False) if p is not None)
    return {
        "mechanism": mechanism,
        "trades": report["trades"],
        "p2p_wh": report["energy_wh"]["p2p"],
        "mean_price_micro_per_kwh": value // traded if traded else None,  # volume-weighted
        "self_sufficiency": kpi["self_sufficiency"],
        "self_consumption": kpi["self_consumption"],
        "savings_pct": kpi["savings_pct"],
        "bill_micro": kpi["bill_micro"],
        "grid_only_bill_micro": kpi["grid_only_bill_micro"],
        "saving_micro": kpi["saving_micro"],
        "network_fees_micro": report["money_micro"]["network_fees"],
        "households_worse_off_overall": kpi["households_worse_off_overall"],
        "households_worse_off_sometimes": kpi["households_worse_off_sometimes"],
        "worse_off_intervals": kpi["worse_off_intervals"],
        "worse_off_micro": kpi["worse_off_micro"],
        "orders_rejected": report["orders_rejected"],
        "verified": report["verified"],
        "ledger_root": report["ledger_root"],
    }


def comparison_report(
    runs: Sequence[tuple[str, Mapping[str, Any], str]],
) -> dict[str, Any]:
    """The main report of a comparison: ``runs`` is (mechanism, its report, where its
    report file is) in the order given on the command line."""
    first = runs[0][1]
    keys = ("households", "days", "intervals", "interval_s", "seed", "pv_share")
    return {
        "kind": "comparison",
        **{k: first[k] for k in keys},
        "battery_share": first["battery_share"],
        "forecaster": first["forecaster"],
        "currency": first["currency"],
        "mechanisms": [name for name, _, _ in runs],
        "verified": all(report["verified"] is True for _, report, _ in runs),
        "comparison": [comparison_row(name, report) for name, report, _ in runs],
        "reports": {name: path for name, _, path in runs},
    }


def _money(micro: int, currency: str) -> str:
    return f"{micro / 1_000_000:,.2f} {currency}"


def comparison_figures(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The comparison as a table: the head (``figure`` and the mechanisms) and one row
    of text cells per figure."""
    rows: list[dict[str, Any]] = report["comparison"]
    cur = report["currency"]

    def price(v: int | None) -> str:
        return "-" if v is None else f"{v / 1_000_000:.4f} {cur}/kWh"

    figures: list[tuple[str, Any]] = [
        ("trades", lambda r: f"{r['trades']:,}"),
        ("traded between neighbours", lambda r: f"{r['p2p_wh'] / 1000:,.1f} kWh"),
        ("mean P2P price", lambda r: price(r["mean_price_micro_per_kwh"])),
        ("self-sufficiency (KPI)", lambda r: pct(r["self_sufficiency"])),
        ("self-consumption (KPI)", lambda r: pct(r["self_consumption"])),
        ("savings vs grid-only bills", lambda r: pct(r["savings_pct"], ratio=False)),
        ("bills in all", lambda r: _money(r["bill_micro"], cur)),
        ("grid-only bills", lambda r: _money(r["grid_only_bill_micro"], cur)),
        ("saving", lambda r: _money(r["saving_micro"], cur)),
        ("network fees", lambda r: _money(r["network_fees_micro"], cur)),
        ("households worse off overall", lambda r: f"{r['households_worse_off_overall']:,}"),
        ("households worse off sometimes", lambda r: f"{r['households_worse_off_sometimes']:,}"),
        (
            "intervals worse off",
            lambda r: f"{r['worse_off_intervals']:,} ({_money(r['worse_off_micro'], cur)})",
        ),
        ("orders rejected", lambda r: f"{r['orders_rejected']:,}"),
        ("ledger verified", lambda r: "yes" if r["verified"] else "NO"),
    ]
    head = ["figure", *(r["mechanism"] for r in rows)]
    return head, [[name, *(cell(r) for r in rows)] for name, cell in figures]
