"""`wattmesh simulate --scenario FILE --mechanism a,b --html`: a real run of a scenario with
a measured demand profile (UCI house) under two mechanisms, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wattmesh.cli.dispatch import build_parser
from wattmesh.config.scenario_config import read_profile

ROOT = Path(__file__).resolve().parents[1]
UCI = ROOT / "tests" / "data" / "uci_household_demand.csv"

pytestmark = pytest.mark.slow

SCENARIO = f"""
seed = 3
days = 1
history_days = 7
start = 2010-01-11
interval_s = 3600
forecaster = "naive"
[location]
latitude_deg = 48.78
longitude_deg = 2.29
[market]
mechanism = ["uniform", "sdr"]
[generated]
households = 3
pv_share = 0.67
[[households]]
id = "sceaux"
demand_csv = "{UCI}"
max_power_w = 12000
[[households]]
id = "small-fuse"
annual_demand_wh = 9000000
max_power_w = 300
"""


def _load(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


def test_a_scenario_with_a_measured_profile_compared_under_two_mechanisms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "street.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    work = tmp_path / "out"
    args = build_parser().parse_args(
        [
            *("simulate", "--scenario", str(scenario), "--workdir", str(work)),
            *("--html", str(work / "compare.html")),
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    main = _load(work / "report.json")
    assert main["kind"] == "comparison" and main["mechanisms"] == ["uniform", "sdr"]
    assert main["verified"] is True
    reports = {name: _load(Path(path)) for name, path in main["reports"].items()}
    assert set(reports) == {"uniform", "sdr"}
    uniform, sdr = reports["uniform"], reports["sdr"]
    for name, report in reports.items():
        assert (work / name / "ledger.db").is_file() and (work / name / "report.html").is_file()
        assert report["verified"] is True
        assert report["intervals"] == 24 and report["interval_s"] == 3600
        # The 300 W connection: the ledger flags the hours it drew more (~1 kW on average).
        rows = {h["agent"]: h for h in report["per_household"]}
        small = rows.pop("small-fuse")
        assert small["flagged_intervals"] > 0 and small["settled_intervals"] < 24
        assert small["kpi"]["self_sufficiency"] == 0.0  # its unsettled hours: all imported
        assert all(h["settled_intervals"] == 24 for h in rows.values())
        _check_kpis(report)
    # The same scenario and seed: only the rule differs.
    assert uniform["energy_wh"]["demand"] == sdr["energy_wh"]["demand"]
    assert uniform["series"]["demand_wh"] == sdr["series"]["demand_wh"]
    assert uniform["ledger_root"] != sdr["ledger_root"]
    # The measured household's demand is the file's, hour by hour, on 11 January 2010.
    sceaux = next(h for h in uniform["per_household"] if h["agent"] == "sceaux")
    profile = read_profile(UCI, name="uci")
    day = uniform["series"]["intervals"][0]
    hours = (day - profile.start_epoch_s) // 3600
    assert sceaux["demand_wh"] == sum(profile.wh[hours : hours + 24]) > 0
    assert sceaux["pv_wh"] == 0 and sceaux["kpi"]["self_consumption"] is None
    # The comparison's rows are the runs' figures.
    rows = {row["mechanism"]: row for row in main["comparison"]}
    for name, report in reports.items():
        assert rows[name]["savings_pct"] == report["kpi"]["savings_pct"]
        assert rows[name]["saving_micro"] == report["kpi"]["saving_micro"]
        assert rows[name]["ledger_root"] == report["ledger_root"]
        assert rows[name]["trades"] == report["trades"]
    assert "self-sufficiency (KPI)" in out and "uniform" in out and "sdr" in out
    page = (work / "compare.html").read_text(encoding="utf-8")
    assert "2 mechanisms compared" in page and "self-consumption (KPI)" in page
    assert str(work / "sdr" / "report.json") in page


def _check_kpis(report: dict[str, Any]) -> None:
    """The KPIs agree with the report's own energy and money."""
    kpi, rows = report["kpi"], report["per_household"]
    energy, money = report["energy_wh"], report["money_micro"]
    assert kpi["bill_micro"] == money["community"] == sum(h["community_micro"] for h in rows)
    assert kpi["grid_only_bill_micro"] == money["grid_only"]
    assert kpi["saving_micro"] == sum(h["kpi"]["saving_micro"] for h in rows)
    assert kpi["worse_off_intervals"] == sum(h["kpi"]["worse_off_intervals"] for h in rows)
    assert kpi["worse_off_micro"] == sum(h["kpi"]["worse_off_micro"] for h in rows)
    # Inside the neighbourhood at least what each home supplies itself; at most demand.
    own = sum(h["kpi"]["self_consumed_wh"] for h in rows)
    assert own <= kpi["self_consumed_wh"] <= energy["demand"]
    # Without batteries: demand not crossing the boundary = demand - net grid import,
    # from the series of metered energy (which holds settled intervals only: the KPIs
    # count an unsettled household-interval as its demand imported, so no more then).
    series = report["series"]
    boundary = sum(
        max(i - e, 0) for i, e in zip(series["import_wh"], series["export_wh"], strict=True)
    )
    netted = sum(
        max(d - max(i - e, 0), 0)
        for d, i, e in zip(
            series["demand_wh"], series["import_wh"], series["export_wh"], strict=True
        )
    )
    if report["settlement_complete"]:
        assert kpi["self_consumed_wh"] == netted >= energy["demand"] - boundary
    else:
        assert kpi["self_consumed_wh"] < netted
    assert kpi["self_sufficiency"] == round(kpi["self_consumed_wh"] / energy["demand"], 4)
    assert kpi["self_consumption"] == round(min(kpi["self_consumed_wh"] / energy["pv"], 1.0), 4)
    for h in rows:
        k = h["kpi"]
        assert k["bill_micro"] == h["community_micro"]
        assert k["grid_only_bill_micro"] == h["grid_only_micro"]
        assert k["self_consumed_wh"] <= h["demand_wh"]
        assert (k["worse_off_intervals"] == 0) == (k["worse_off_micro"] == 0)
    if kpi["saving_micro"] < 0:
        assert kpi["savings_pct"] < 0
