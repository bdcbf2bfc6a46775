"""``simulate --inject-faults``: the faults planned, injected, and scored from the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattmesh.broker.errors import ConfigError
from wattmesh.broker.transport import BrokerAddress
from wattmesh.ledger.store import LedgerStore
from wattmesh.sim.faults import (
    FAULT_KINDS,
    Detection,
    InjectedFault,
    detections_from_log,
    plan_faults,
    score_faults,
)
from wattmesh.sim.scenario import build_scenario
from wattmesh.sim.simulate import SimulationConfig, run_simulation


def test_plan_faults_is_seeded_and_fits_the_households() -> None:
    scenario = build_scenario(households=8, days=3, seed=2, pv_share=0.5, history_days=2)
    assert plan_faults(scenario, rate=0.0, seed=2) == ()
    every = plan_faults(scenario, rate=1.0, seed=2)
    days = sum(3 if f.kind == "short_delivery" else 1 for f in every)
    assert days == 8 * 3  # every household-day, a short delivery taking up three
    assert every == plan_faults(scenario, rate=1.0, seed=2)
    pv = {hh.spec.agent_id for hh in scenario.households if hh.spec.pv_peak_w > 0}
    pv_only = {hh.spec.agent_id for hh in scenario.households if hh.spec.pv_peak_w > 0
               and hh.spec.battery is None}  # fmt: skip
    first = int(scenario.interval_start(scenario.history_intervals).timestamp())
    assert any(f.kind == "short_delivery" for f in every)
    for f in every:
        if f.kind == "short_delivery":  # the run's three days, from midnight
            assert f.agent in pv_only
            assert (f.interval, f.end - f.interval) == (first, 3 * 86_400)
            continue
        assert f.interval > first
        if f.kind == "night_export":
            assert f.agent in pv
            assert f.end - f.interval == 4 * 900
        elif f.kind == "forecast_deviation":
            assert f.end - f.interval == 12 * 900
        else:
            assert f.end - f.interval == 900
    with pytest.raises(ValueError, match="fault rate"):
        plan_faults(scenario, rate=1.5, seed=2)
    with pytest.raises(ConfigError, match="inject-faults"):
        SimulationConfig(households=1, days=1, seed=0, inject_faults=-0.1)


def test_score_faults_counts_recall_and_precision() -> None:
    faults = [
        InjectedFault("h1", "over_limit", 9000, 9900),
        InjectedFault("h2", "over_limit", 9000, 9900),
        InjectedFault("h1", "night_export", 0, 3600),
    ]
    found = [
        Detection("h1", "over_limit", 9000, "flag"),
        Detection("h3", "over_limit", 9000, "flag"),  # no fault there
        Detection("h1", "night_export", 900, "detector"),
        Detection("h1", "night_export", 2700, "detector"),
    ]
    kinds = score_faults(faults, found, interval_s=900, rate=0.5)["kinds"]
    assert kinds["over_limit"] == {
        "injected": 2, "caught": 1, "flags": 2, "true_flags": 1, "recall": 0.5, "precision": 0.5,
    }  # fmt: skip
    assert kinds["night_export"] == {
        "injected": 1, "caught": 1, "flags": 2, "true_flags": 2, "recall": 1.0, "precision": 1.0,
    }  # fmt: skip
    assert kinds["register_reversal"]["recall"] is None
    assert kinds["register_reversal"]["precision"] is None


async def test_faults_are_scored_from_the_log(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    config = SimulationConfig(
        households=6,
        days=1,
        seed=1,  # a day of each kind of fault
        pv_share=0.7,
        forecaster="naive",
        history_days=3,
        workdir=tmp_path,
        broker=mosquitto.url,
        gate_timeout_s=30.0,
        inject_faults=1.0,
    )
    report = await run_simulation(config)
    assert report["verified"] is True, report["verify_problem"]
    faults = report["faults"]
    assert faults["injected"] == 6
    kinds = faults["kinds"]
    assert sum(k["injected"] for k in kinds.values()) == 6
    # short delivery takes three days: a one-day run has every other kind
    assert all(kinds[k]["injected"] for k in FAULT_KINDS if k != "short_delivery")
    # the figures are those of the log: its flag entries and the detector over its readings
    store = LedgerStore(report["db"])
    try:
        found = detections_from_log(store, interval_s=900)
    finally:
        store.close()
    for kind, row in kinds.items():
        assert row["flags"] == sum(1 for d in found if d.kind == kind)
        if row["injected"]:
            assert row["recall"] == 1.0
            assert row["precision"] == 1.0
    # the history's faults came back as the forecaster's signed flags the ledger logged
    assert kinds["night_export"]["injected"] >= 1
    forecaster = {"night_export", "forecast_deviation", "short_delivery"}
    assert {d.source for d in found if d.kind in forecaster} == {"anomaly"}
    assert {d.source for d in found if d.kind not in forecaster} == {"flag"}


async def test_a_short_delivery_fault_curtails_export_and_pv_alike() -> None:
    """Intervals 2 and 3 of five: what the household would export is cut from both its
    export and PV registers (its demand reads the same)."""
    from wattmesh.agents.meter import SimulatedMeter
    from wattmesh.sim.faults import FaultyMeter

    demand, pv = [100, 100, 100, 100, 100], [300, 50, 400, 250, 300]
    now = 0
    inner = SimulatedMeter(start=0, interval_s=900, demand_wh=demand, pv_wh=pv,
                           clock=lambda: now)  # fmt: skip
    fault = InjectedFault("h1", "short_delivery", 2 * 900, 4 * 900)
    meter = FaultyMeter(inner, [fault], interval_s=900)
    seen = []
    for k in range(6):
        now = k * 900
        seen.append(await meter.read())
        seen.append(await meter.read())  # read twice in an interval: the same registers
    registers = [(r.import_wh, r.export_wh, r.pv_wh) for r in seen[::2]]
    assert seen[::2] == seen[1::2]
    assert registers == [
        (0, 0, 0), (0, 200, 300), (50, 200, 350), (50, 200, 450),  # 300 + 150 cut
        (50, 200, 550), (50, 400, 850),
    ]  # fmt: skip
    for (i0, e0, p0), (i1, e1, p1), d in zip(registers, registers[1:], demand, strict=False):
        assert i1 - i0 + p1 - p0 - (e1 - e0) == d
