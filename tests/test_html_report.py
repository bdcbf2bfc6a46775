"""`simulate --html`: one self-contained file, escaped, whose charts plot the run's series."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.browserkit import chromium, screenshots  # noqa: F401 (a fixture)
from wattmesh.broker.transport import BrokerAddress
from wattmesh.sim.html_report import render_html_report, write_html_report
from wattmesh.sim.simulate import SimulationConfig, run_simulation

EVIL = "</script><script>alert(1)</script><!--"


class _Scan(HTMLParser):
    """Collects the attributes that could fetch something and the JSON data block."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.data_block: str | None = None
        self._in_data = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "action", "poster", "data"}:
                self.refs.append((tag, name, value or ""))
        self._in_data = tag == "script" and ("id", "report-data") in attrs

    def handle_endtag(self, tag: str) -> None:
        self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_block = (self.data_block or "") + data


def _report(**overrides: Any) -> dict[str, Any]:
    """A small report of the shape build_report returns (figures and per-interval series)."""
    series = {
        "intervals": [1_749_427_200 + 900 * i for i in range(4)],
        "price_micro_per_kwh": [None, 190_000, 185_000, None],
        "retail_micro_per_kwh": [300_000] * 4,
        "feed_in_micro_per_kwh": [80_000] * 4,
        "p2p_wh": [0, 120, 80, 0],
        "import_wh": [300, 250, 200, 310],
        "export_wh": [0, 120, 90, 0],
        "grid_import_wh": [300, 130, 120, 310],
        "grid_export_wh": [0, 0, 10, 0],
        "demand_wh": [300, 400, 380, 310],
        "pv_wh": [0, 270, 270, 0],
    }
    household = {
        "agent": EVIL, "pv_peak_w": 5400, "demand_wh": 1390, "pv_wh": 540, "import_wh": 1060,
        "export_wh": 210, "p2p_bought_wh": 200, "p2p_sold_wh": 200, "grid_only_micro": 318_000,
        "community_micro": 290_000, "settled_intervals": 4,
        "kpi": {
            "self_sufficiency": 0.2374, "self_consumption": None, "savings_pct": 8.81,
            "self_consumed_wh": 330, "bill_micro": 290_000, "grid_only_bill_micro": 318_000,
            "saving_micro": 28_000, "worse_off_intervals": 1, "worse_off_micro": 4_500,
        },
    }  # fmt: skip
    kpi = {
        "self_sufficiency": 0.3813, "self_consumption": 0.9815, "savings_pct": 8.81,
        "self_consumed_wh": 530, "bill_micro": 290_000, "grid_only_bill_micro": 318_000,
        "saving_micro": 28_000, "households_worse_off_overall": 0,
        "households_worse_off_sometimes": 1, "worse_off_intervals": 1, "worse_off_micro": 4_500,
    }  # fmt: skip
    report: dict[str, Any] = {
        "households": 1, "days": 1, "intervals": 4, "interval_s": 900, "seed": 7,
        "pv_share": 0.5, "battery_share": 0.0, "forecaster": EVIL,
        "energy_wh": {"demand": 1390, "pv": 540, "p2p": 200, "grid_import": 860,
                      "grid_export": 10},
        "currency": "EUR",
        "money_micro": {"grid_only": 318_000, "community": 290_000, "network_fees": 0},
        "savings_pct": 8.81, "self_sufficiency": 0.3813, "trades": 2, "orders_rejected": 0,
        "settlement_complete": True, "ledger_entries": 40, "ledger_root": "ab" * 32,
        "verified": True, "per_household": [household], "series": series, "kpi": kpi,
    }  # fmt: skip
    report.update(overrides)
    return report


def _scan(text: str) -> _Scan:
    scan = _Scan()
    scan.feed(text)
    scan.close()
    return scan


def _assert_self_contained(text: str) -> _Scan:
    assert not re.search(r"https?://", text), "the file names a URL"
    assert "@import" not in text and "url(" not in text
    scan = _scan(text)
    assert scan.refs == [], scan.refs
    assert {"html", "head", "body", "table", "script", "style"} <= set(scan.tags)
    return scan


def test_the_file_is_self_contained_and_escapes_what_it_shows() -> None:
    report = _report()
    text = render_html_report(report)
    scan = _assert_self_contained(text)
    assert EVIL not in text  # neither in a table cell nor in the data block
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!--" in text
    assert text.count("<script") == 4  # data block, uPlot, the chart helpers, the page's own
    assert scan.data_block is not None
    data = json.loads(scan.data_block)
    assert data == {"currency": "EUR", "series": report["series"]}
    assert "ab" * 32 in text  # the whole root hash


def test_the_kpis_are_in_the_figures_and_the_households_table() -> None:
    text = render_html_report(_report())
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", text)
    figures = dict(zip(cells[::2], cells[1::2], strict=False))
    assert figures["self-sufficiency (KPI)"] == "38.1 %"
    assert figures["self-consumption (KPI)"] == "98.2 %"
    assert figures["savings vs grid-only bills (KPI)"] == "8.81 %"
    assert figures["intervals worse off than grid-only"] == "1 (0.00 EUR)"
    assert figures["self-sufficiency (settlement-based)"] == "38.1 %"
    # the household's row: bill, grid-only bill, saving, savings, KPIs, worse-off
    at = len(cells) - 1 - cells[::-1].index("0.29 EUR")  # the last: the households table
    assert cells[at : at + 8] == [
        "0.29 EUR", "0.32 EUR", "0.03 EUR", "8.81 %", "23.7 %", "-", "1", "0.00 EUR",
    ]  # fmt: skip


def test_the_comparison_page_is_self_contained_and_escaped(tmp_path: Path) -> None:
    from wattmesh.sim.comparison import comparison_report

    runs = [
        ("uniform", _report(), "out/uniform/report.json"),
        ("sdr", _report(trades=5, kpi={**_report()["kpi"], "savings_pct": 9.5}), EVIL),
    ]
    main = comparison_report(runs)
    assert main["comparison"][1]["savings_pct"] == 9.5
    assert main["comparison"][0]["mean_price_micro_per_kwh"] == 188_000  # by volume
    path = tmp_path / "c.html"
    write_html_report(main, path)
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"https?://", text) and "url(" not in text
    scan = _scan(text)
    assert scan.refs == [] and "script" not in scan.tags
    assert EVIL not in text
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", text)
    at = cells.index("savings vs grid-only bills")
    assert cells[at : at + 3] == ["savings vs grid-only bills", "8.81 %", "9.50 %"]
    at = cells.index("trades")
    assert cells[at : at + 3] == ["trades", "2", "5"]


def test_a_report_without_series_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    write_html_report(_report(series=None), path)
    text = path.read_text(encoding="utf-8")
    _assert_self_contained(text)
    assert "no per-interval series" in text


@pytest.mark.slow
async def test_chromium_shows_the_simulations_charts_from_disk(
    tmp_path: Path,
    mosquitto: BrokerAddress,
    screenshots: Path,  # noqa: F811
) -> None:
    config = SimulationConfig(
        households=3, days=1, seed=7, pv_share=0.5, forecaster="naive", history_days=7,
        broker=mosquitto.url, workdir=tmp_path, gate_timeout_s=30.0,
    )  # fmt: skip
    report = await run_simulation(config)
    series, energy = report["series"], report["energy_wh"]
    assert len(series["intervals"]) == report["intervals"] == 96
    assert sum(series["grid_import_wh"]) == energy["grid_import"]
    assert sum(series["grid_export_wh"]) == energy["grid_export"]
    assert sum(series["p2p_wh"]) == energy["p2p"]
    assert sum(series["demand_wh"]) == energy["demand"] and sum(series["pv_wh"]) == energy["pv"]
    path = tmp_path / "report.html"
    write_html_report(report, path)
    _assert_self_contained(path.read_text(encoding="utf-8"))
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        fetched: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: fetched.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(path.as_uri())
        await page.wait_for_function(
            "() => document.querySelectorAll('.chart[data-points]').length === 4"
        )
        charts = await page.eval_on_selector_all(
            ".chart", "els => els.map(e => [e.dataset.chart, JSON.parse(e.dataset.series)])"
        )
        await page.screenshot(path=screenshots / "html-report.png", full_page=True)
    assert errors == []
    assert fetched == [path.as_uri()]  # the file itself and nothing else
    plotted = dict(charts)
    assert set(plotted) == {"price", "volume", "energy", "cumulative"}
    for name, shown in plotted.items():
        assert shown["data"][0] == series["intervals"], name
        assert any(v not in (None, 0) for column in shown["data"][1:] for v in column), name
    prices = [None if p is None else p / 1e6 for p in series["price_micro_per_kwh"]]
    assert plotted["price"]["data"][1] == prices
    assert plotted["volume"]["data"][1] == [wh / 1000 for wh in series["p2p_wh"]]
