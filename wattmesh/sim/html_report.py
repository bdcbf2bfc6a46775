"""``wattmesh simulate --html FILE``: the run's report as one self-contained HTML file.

The file carries everything it shows: the report's figures as HTML tables, the
per-interval series (the report's ``series`` columns) as an inline JSON data block, and
the vendored uPlot library, the dashboard's chart helpers (``dashboard/static/charts.js``)
and the styles inline, so it opens from disk (``file://``) or as a mail attachment and
fetches nothing. Every value put into the HTML is escaped (``html.escape``; ``<``, ``>``
and ``&`` as JSON ``\\u`` escapes in the data block, so it cannot end its ``<script>``).
Charts expose their plotted series as ``data-series`` / ``data-points`` attributes, as
in the dashboard.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from wattmesh.broker.errors import ConfigError

__all__ = [
    "HOUSEHOLD_KPI_HEAD",
    "household_cells",
    "pct",
    "render_comparison_html",
    "render_html_report",
    "summary_figures",
    "write_html_report",
]

_STATIC = "static"
_UPLOT_JS = ("vendor", "uPlot.iife.min.js")
_UPLOT_CSS = ("vendor", "uPlot.min.css")
_UPLOT_LICENSE = ("vendor", "uPlot.LICENSE")
_UPLOT_BANNER = "/*! https://github.com/leeoniya/uPlot (v1.6.32) */"

_CSS = """
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f2328; background: #f6f8fa; }
header { background: #0d1117; color: #e6edf3; padding: 0.9rem 1.2rem; }
header h1 { margin: 0; font-size: 1.35rem; }
header p { margin: 0.2rem 0 0; color: #c9d1d9; }
main { max-width: 1240px; margin: 0 auto; padding: 1rem 1.2rem 2rem; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 0.6rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 0.8rem; }
.chart { background: #fff; border: 1px solid #d1d9e0; border-radius: 8px; padding: 0.4rem;
  min-width: 0; overflow: hidden; }
.chart .u-title { font-size: 0.9rem; font-weight: 600; }
.wrap { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; font-size: 0.85rem; }
th, td { text-align: left; padding: 0.3rem 0.45rem; border-bottom: 1px solid #d1d9e0;
  white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
.bad { color: #cf222e; font-weight: 600; }
.ok { color: #1a7f37; font-weight: 600; }
footer { max-width: 1240px; margin: 0 auto; padding: 0 1.2rem 1.5rem; color: #59636e;
  font-size: 0.82rem; }
@media (max-width: 640px) { .charts { grid-template-columns: 1fr; } main { padding: 0.7rem; } }
"""

_JS = """
(function () {
  "use strict";
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var s = report.series, cur = report.currency;
  if (!s || !s.intervals || !s.intervals.length) return;
  var kwh = function (v) { return v.map(function (x) { return x === null ? null : x / 1000; }); };
  var C = WMCharts.COLORS;
  WMCharts.priceChart(document.getElementById("chart-price"), s, cur);
  WMCharts.volumeChart(document.getElementById("chart-volume"), s);
  WMCharts.lineChart(document.getElementById("chart-energy"), "energy",
    "Neighbourhood demand, PV and metered exchange per interval", "kWh", s.intervals, [
      { label: "demand", values: kwh(s.demand_wh), color: C.gridImport },
      { label: "PV production", values: kwh(s.pv_wh), color: C.feedIn, fill: true },
      { label: "metered import", values: kwh(s.import_wh), color: C.price },
      { label: "metered export", values: kwh(s.export_wh), color: C.p2p }
    ]);
  var cum = function (v) { var t = 0; return v.map(function (x) { t += x; return t / 1000; }); };
  WMCharts.lineChart(document.getElementById("chart-cumulative"), "cumulative",
    "Energy so far: P2P traded and grid import", "kWh", s.intervals, [
      { label: "P2P traded", values: cum(s.p2p_wh), color: C.p2p, fill: true },
      { label: "grid import", values: cum(s.grid_import_wh), color: C.gridImport },
      { label: "grid export", values: cum(s.grid_export_wh), color: C.gridExport }
    ]);
})();
"""


def _static(*parts: str) -> str:
    return (
        resources.files("wattmesh.dashboard").joinpath(_STATIC, *parts).read_text(encoding="utf-8")
    )


def _script(code: str) -> str:
    if "</script" in code.lower() or "<!--" in code:
        raise ValueError("inline script text would end its <script> element")
    return f"<script>{code}</script>"


def _json_block(value: Any) -> str:
    """JSON that cannot end its ``<script>`` element or start a comment in it."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _kwh(wh: int) -> str:
    return f"{wh / 1000:,.1f} kWh"


def _money(micro: int, currency: str) -> str:
    return f"{micro / 1_000_000:,.2f} {currency}"


def summary_figures(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The figures of ``wattmesh simulate``'s report, as (name, text): this page's table
    and the terminal's summary table (which adds the ledger's root and verdict)."""
    energy, money, cur = report["energy_wh"], report["money_micro"], report["currency"]
    rows = [
        ("demand", _kwh(energy["demand"])),
        ("PV production", _kwh(energy["pv"])),
        ("traded between neighbours", _kwh(energy["p2p"])),
        ("bought from the grid", _kwh(energy["grid_import"])),
        ("sold to the grid", _kwh(energy["grid_export"])),
        ("cost with the grid only", _money(money["grid_only"], cur)),
        ("cost in the community", _money(money["community"], cur)),
        ("network fees collected", _money(money["network_fees"], cur)),
        *_kpi_figures(report.get("kpi"), cur),
        ("savings (settlement-based)", f"{report['savings_pct']:.2f} %"),
        ("self-sufficiency (settlement-based)", f"{100 * report['self_sufficiency']:.1f} %"),
        ("trades", f"{report['trades']:,}"),
        ("orders rejected", f"{report['orders_rejected']:,}"),
    ]
    batteries = report.get("battery_comparison", {}).get("pv_battery", {})
    if batteries.get("households"):
        rows.append(
            (
                f"battery savings ({batteries['households']} households, mean)",
                _money(batteries["mean_battery_savings_micro"], cur),
            )
        )
    return rows


def pct(value: float | None, *, ratio: bool = True) -> str:
    """A KPI ratio (or, ``ratio=False``, a percentage) as text; ``-`` for None."""
    if value is None:
        return "-"
    return f"{100 * value:.1f} %" if ratio else f"{value:.2f} %"


def _kpi_figures(kpi: Mapping[str, Any] | None, cur: str) -> list[tuple[str, str]]:
    """The metered KPIs (:mod:`wattmesh.sim.kpi`) as summary rows; none in an older report."""
    if not kpi:
        return []
    return [
        ("self-sufficiency (KPI)", pct(kpi["self_sufficiency"])),
        ("self-consumption (KPI)", pct(kpi["self_consumption"])),
        ("savings vs grid-only bills (KPI)", pct(kpi["savings_pct"], ratio=False)),
        ("saving vs grid-only bills", _money(kpi["saving_micro"], cur)),
        (
            "households worse off than grid-only",
            f"{kpi['households_worse_off_overall']:,} overall, "
            f"{kpi['households_worse_off_sometimes']:,} in some interval",
        ),
        (
            "intervals worse off than grid-only",
            f"{kpi['worse_off_intervals']:,} ({_money(kpi['worse_off_micro'], cur)})",
        ),
    ]


def household_cells(h: Mapping[str, Any], cur: str) -> list[str]:
    """A household's KPI cells (unescaped): bill, grid-only bill, saving, savings,
    self-sufficiency, self-consumption, worse-off intervals and their amount."""
    k = h.get("kpi")
    if not k:
        return ["-"] * 8
    return [
        _money(k["bill_micro"], cur),
        _money(k["grid_only_bill_micro"], cur),
        _money(k["saving_micro"], cur),
        pct(k["savings_pct"], ratio=False),
        pct(k["self_sufficiency"]),
        pct(k["self_consumption"]),
        f"{k['worse_off_intervals']:,}",
        _money(k["worse_off_micro"], cur),
    ]


HOUSEHOLD_KPI_HEAD = (
    "bill", "grid-only bill", "saving", "savings", "self-sufficiency",
    "self-consumption", "worse-off intervals", "worse off by",
)  # fmt: skip


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int) -> str:
    """An HTML table of already escaped cells; columns from ``numeric_from`` align right."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if i >= numeric_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    table = f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="wrap">{table}</div>'


def _households(report: Mapping[str, Any]) -> str:
    cur = report["currency"]
    head = [
        "household", "PV peak", "demand", "PV", "import", "export", "P2P bought",
        "P2P sold", *HOUSEHOLD_KPI_HEAD, "settled intervals",
    ]  # fmt: skip
    rows = [
        [
            _e(h["agent"]),
            _e(f"{h['pv_peak_w'] / 1000:,.1f} kW"),
            *(_e(_kwh(h[k])) for k in ("demand_wh", "pv_wh", "import_wh", "export_wh")),
            *(_e(_kwh(h[k])) for k in ("p2p_bought_wh", "p2p_sold_wh")),
            *(_e(c) for c in household_cells(h, cur)),
            _e(f"{h['settled_intervals']:,}"),
        ]
        for h in report.get("per_household", [])
    ]
    return _table([_e(h) for h in head], rows, 1)


def _ledger(report: Mapping[str, Any]) -> str:
    verified = report.get("verified") is True
    verdict = (
        '<span class="ok">yes</span>'
        if verified
        else f'<span class="bad">NO: {_e(report.get("verify_problem") or "?")}</span>'
    )
    rows = [
        ["entries", _e(f"{report['ledger_entries']:,}")],
        ["root hash", f"<code>{_e(report['ledger_root'])}</code>"],
        ["verified", verdict],
        ["settlement complete", _e("yes" if report.get("settlement_complete") else "no")],
    ]
    return _table(["ledger", ""], rows, 99)


def render_html_report(report: Mapping[str, Any]) -> str:
    """The report of ``wattmesh simulate`` (:func:`wattmesh.sim.report.build_report`) as
    one HTML document with its figures, tables and charts inline."""
    title = (
        f"wattmesh simulate: {report['households']} households, "
        f"{report['days']} days, seed {report['seed']}"
    )
    subtitle = (
        f"{report['intervals']:,} intervals of {report['interval_s'] // 60} min; "
        f"forecaster {report['forecaster']}; PV share {report['pv_share']}; "
        f"battery share {report['battery_share']}; money in {report['currency']}"
    )
    data = {"currency": report["currency"], "series": report.get("series")}
    figures = _table(["figure", "value"], [[_e(k), _e(v)] for k, v in summary_figures(report)], 1)
    licence = _static(*_UPLOT_LICENSE).replace("--", "- -")
    uplot = _static(*_UPLOT_JS).replace(
        _UPLOT_BANNER, "/*! uPlot v1.6.32 (github.com/leeoniya/uPlot), MIT licence */"
    )
    charts = "".join(
        f'<div id="chart-{name}" class="chart"></div>'
        for name in ("price", "volume", "energy", "cumulative")
    )
    no_series = "" if report.get("series") else "<p>This report has no per-interval series.</p>"
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<!-- uPlot 1.6.32, inlined below, is under this licence:\n{licence}-->",
            f"<style>{_static(*_UPLOT_CSS)}\n{_CSS}</style>",
            "</head><body>",
            f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header>",
            "<main>",
            "<h2>Figures</h2>",
            figures,
            "<h2>Per interval</h2>",
            no_series,
            f'<div class="charts">{charts}</div>',
            "<h2>Households</h2>",
            _households(report),
            "<h2>Ledger</h2>",
            _ledger(report),
            "</main>",
            "<footer>Written by wattmesh simulate --html; the charts' data is inline in "
            "this file (the report-data block) and nothing is fetched.</footer>",
            f'<script type="application/json" id="report-data">{_json_block(data)}</script>',
            _script(uplot),
            _script(_static("charts.js")),
            _script(_JS),
            "</body></html>",
            "",
        ]
    )


def render_comparison_html(report: Mapping[str, Any]) -> str:
    """The main report of ``simulate --mechanism a,b,...`` (:mod:`wattmesh.sim.comparison`)
    as one HTML document: the comparison table and where each mechanism's report is."""
    from wattmesh.sim.comparison import comparison_figures

    title = (
        f"wattmesh simulate: {len(report['mechanisms'])} mechanisms compared, "
        f"{report['households']} households, {report['days']} days, seed {report['seed']}"
    )
    subtitle = (
        f"the same scenario and seed under each mechanism; {report['intervals']:,} intervals "
        f"of {report['interval_s'] // 60} min; forecaster {report['forecaster']}; "
        f"money in {report['currency']}"
    )
    head, rows = comparison_figures(report)
    table = _table([_e(h) for h in head], [[_e(c) for c in row] for row in rows], 1)
    files = _table(
        ["mechanism", "its report (JSON; with --html, report.html beside it)"],
        [[_e(name), f"<code>{_e(path)}</code>"] for name, path in report["reports"].items()],
        99,
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head><body>",
            f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header>",
            "<main>",
            "<h2>Comparison</h2>",
            table,
            "<h2>Runs</h2>",
            files,
            "</main>",
            "<footer>Written by wattmesh simulate --html; nothing is fetched.</footer>",
            "</body></html>",
            "",
        ]
    )


def write_html_report(report: Mapping[str, Any], path: Path) -> None:
    """Write :func:`render_html_report` (or, for a comparison, :func:`render_comparison_html`)
    to ``path`` (UTF-8); ConfigError if it cannot be."""
    if report.get("kind") == "comparison":
        text = render_comparison_html(report)
    else:
        text = render_html_report(report)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html: cannot write {path}: {exc.strerror}") from exc
