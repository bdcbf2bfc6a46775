"""Home batteries in scenario generation and in `wattmesh simulate`, end to end."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from wattmesh.agents.battery import BatterySpec
from wattmesh.agents.battery_meter import BatteryMeter
from wattmesh.agents.meter import MarketClock
from wattmesh.broker.transport import BrokerAddress
from wattmesh.sim.battery_report import BatteryTotals, battery_totals
from wattmesh.sim.scenario import (
    BATTERY_CAPACITY_MAX_WH,
    BATTERY_CAPACITY_MIN_WH,
    BATTERY_POWER_MAX_W,
    BATTERY_POWER_MIN_W,
    make_households,
)
from wattmesh.sim.simulate import SimulationConfig, run_simulation

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_batteries_go_to_pv_households_and_change_nothing_else(seed: int) -> None:
    plain = make_households(30, seed=seed, pv_share=0.4)
    assert plain == make_households(30, seed=seed, pv_share=0.4, battery_share=0.0)
    assert all(spec.battery is None for spec in plain)
    with_batteries = make_households(30, seed=seed, pv_share=0.4, battery_share=0.5)
    assert [replace(s, battery=None) for s in with_batteries] == list(plain)
    owners = [s for s in with_batteries if s.battery is not None]
    assert len(owners) == 6  # floor(0.5 * 12 + 0.5)
    for spec in owners:
        battery = spec.battery
        assert battery is not None and spec.pv_peak_w > 0
        assert BATTERY_CAPACITY_MIN_WH <= battery.capacity_wh <= BATTERY_CAPACITY_MAX_WH
        assert BATTERY_POWER_MIN_W <= battery.max_charge_w <= BATTERY_POWER_MAX_W
        assert battery.max_discharge_w == battery.max_charge_w
        assert battery.min_soc_wh == battery.capacity_wh // 10
    everyone = make_households(30, seed=seed, pv_share=0.4, battery_share=1.0)
    assert sum(s.battery is not None for s in everyone) == 12
    assert with_batteries == make_households(30, seed=seed, pv_share=0.4, battery_share=0.5)
    with pytest.raises(ValueError, match="battery_share"):
        make_households(3, seed=seed, pv_share=0.4, battery_share=1.5)


def _config(tmp_path: Path, broker: str, battery_share: float) -> SimulationConfig:
    return SimulationConfig(
        households=4,
        days=1,
        seed=5,
        pv_share=1.0,
        battery_share=battery_share,
        forecaster="naive",
        history_days=2,
        workdir=tmp_path,
        broker=broker,
        gate_timeout_s=30.0,
    )


@pytest.mark.slow
async def test_simulation_with_batteries_balances_and_imports_less(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    without = await run_simulation(_config(tmp_path / "0", mosquitto.url, 0.0))
    report = await run_simulation(_config(tmp_path / "b", mosquitto.url, 0.5))
    for r in (without, report):
        assert r["verified"] is True, r["verify_problem"]
        assert r["settlement_complete"] is True and r["orders_rejected"] == 0
    assert report["ledger_root"] != without["ledger_root"]
    energy = report["energy_wh"]
    assert energy["battery_losses"] > 0
    assert (
        energy["demand"] - energy["pv"] + energy["battery_losses"] + energy["battery_soc_change"]
        == energy["grid_import"] - energy["grid_export"]
    )
    rows: list[dict[str, Any]] = report["per_household"]
    before = {r["agent"]: r for r in without["per_household"]}
    owners = [r for r in rows if r["battery"] is not None]
    assert len(owners) == 2
    intervals = report["intervals"]
    for r in rows:
        b = r["battery"]
        stored = 0 if b is None else b["losses_wh"] + b["soc_end_wh"] - b["soc_start_wh"]
        assert r["demand_wh"] - r["pv_wh"] + stored == r["import_wh"] - r["export_wh"]
        # The same household without a battery: same profiles, never less grid import.
        old = before[r["agent"]]
        assert (old["demand_wh"], old["pv_wh"]) == (r["demand_wh"], r["pv_wh"])
        assert r["import_wh"] <= old["import_wh"] and r["export_wh"] <= old["export_wh"]
        assert r["pv_only_micro"] == old["grid_only_micro"] == old["pv_only_micro"]
        if b is None:
            assert r["import_wh"] == old["import_wh"]
            assert r["grid_only_micro"] == r["pv_only_micro"]
            continue
        assert r["import_wh"] < old["import_wh"]  # a day of June sun: it was used
        assert b["min_soc_wh"] <= b["soc_start_wh"] <= b["capacity_wh"]
        assert b["min_soc_wh"] <= b["soc_end_wh"] <= b["capacity_wh"]
        assert b["charge_wh"] <= intervals * b["max_charge_w"] * report["interval_s"] // 3600
        assert b["losses_wh"] >= b["charge_wh"] * (1000 - b["round_trip_permille"]) // 1000
        assert b["discharge_wh"] == old["import_wh"] - r["import_wh"]
    comparison = report["battery_comparison"]
    assert comparison["pv_battery"]["households"] == 2
    assert comparison["pv_only"]["households"] == 2
    assert comparison["none"]["households"] == 0
    saved = sum(r["pv_only_micro"] - r["grid_only_micro"] for r in owners) // 2
    assert comparison["pv_battery"]["mean_battery_savings_micro"] == saved
    # Savings against the grid-only bill of the same metered energy (the KPI's), pooled.
    for kind in ("pv_battery", "pv_only"):
        members = [r for r in rows if (r["battery"] is not None) == (kind == "pv_battery")]
        members = [r for r in members if r["pv_peak_w"] > 0]
        base = sum(abs(r["grid_only_micro"]) for r in members)
        gained = sum(r["grid_only_micro"] - r["community_micro"] for r in members)
        assert comparison[kind]["savings_pct"] == round(100 * gained / base, 2)
        assert comparison[kind]["mean_saving_micro"] == gained // len(members)


def test_cli_refuses_a_bad_battery_share(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "wattmesh.cli", "simulate"),
            *("--workdir", str(tmp_path), "--battery-share", "-0.1"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "wattmesh: error: --battery-share must lie in [0, 1], got -0.1"
    ), result.stderr


async def test_battery_totals_cover_the_simulated_period_only() -> None:
    battery = BatterySpec(capacity_wh=5_000, max_charge_w=4_000, max_discharge_w=4_000)
    clock = MarketClock(0)
    meter = BatteryMeter(
        start=0,
        interval_s=900,
        demand_wh=[0, 0, 500, 0],
        pv_wh=[1_000, 1_000, 0, 0],
        battery=battery,
        clock=clock,
    )
    assert battery_totals(meter, first=2, count=2) == BatteryTotals(0, 0, 0, 0, 0)
    clock.set(900)
    await meter.read()
    assert battery_totals(meter, first=2, count=2) == BatteryTotals(0, 0, 0, 900, 900)
    clock.set(4 * 900)
    await meter.read()
    totals = battery_totals(meter, first=1, count=2)
    assert totals == BatteryTotals(1_000, 500, 100, 900, 1_300)
    assert totals.balance_wh == 100 + 1_300 - 900
