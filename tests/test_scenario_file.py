"""Scenario files (``simulate --scenario``): validation, measured profiles, flags over
the file. No run here (tests/test_simulate_scenario.py runs one)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wattmesh.broker.errors import ConfigError
from wattmesh.cli.dispatch import build_parser
from wattmesh.cli.simulate_setup import plan_runs
from wattmesh.config.scenario_config import check_scenario, load_scenario, read_profile
from wattmesh.sim.plan import HouseholdPlan, MeasuredProfile, ScenarioPlan, build_planned
from wattmesh.sim.scenario import build_scenario

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLE = ROOT / "examples" / "scenario.toml"


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["simulate", *argv])


def test_the_example_is_valid_and_says_what_it_means() -> None:
    scenario = load_scenario(EXAMPLE)
    assert scenario.mechanisms == ("uniform", "pay-as-bid", "sdr", "mmr")
    assert scenario.start == datetime(2010, 1, 11, tzinfo=UTC)
    assert scenario.location == (48.78, 2.29)
    assert scenario.generated == 2
    sceaux, solar = scenario.households
    assert sceaux.agent_id == "sceaux" and sceaux.demand is not None
    assert sceaux.max_power_w == 9000
    assert solar.orientation == (35, 180) and solar.battery is not None
    assert solar.battery.capacity_wh == 10_000
    assert scenario.tariffs is not None
    assert scenario.tariffs.at(int(datetime(2010, 1, 11, 8, tzinfo=UTC).timestamp())) == (
        scenario.tariffs.periods[1].tariff
    )


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        "start = 2010-01-11T00:00:00\n"
        "interval_s = 700\n"
        'currency = "eur"\n'
        '[market]\nmechanism = ["uniform", "auction"]\n'
        "[generated]\nhouseholds = 2\n"
        '[[households]]\nid = "h001"\npv_csv = "missing.csv"\ntilt_deg = 30\n'
        "[households.battery]\ncapacity_wh = 100\nmax_charge_w = 10\nmax_discharge_w = 10\n"
        "min_soc_wh = 500\n"
        '[[households]]\nid = "bad id"\nannual_demand_wh = 1000\n',
        encoding="utf-8",
    )
    scenario, problems = check_scenario(path)
    assert scenario is None
    assert [p.split(":")[0] for p in problems] == [
        "interval_s",
        "currency",
        "start",
        "market.mechanism[1]",
        "households[0].id",
        "households[0]",
        "households[0].pv_peak_w",
        "households[0]",
        "households[0].battery",
        "households[0].pv_csv",
        "households[1].id",
    ]
    assert "unknown mechanism 'auction'" in problems[3]
    assert "is also a generated household's id" in problems[4]
    assert "missing.csv" in problems[9]
    with pytest.raises(ConfigError, match=r"s\.toml: interval_s: must divide an hour"):
        load_scenario(path)


def test_the_schema_refuses_unknown_keys_and_bad_types(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('days = 0\nseed = "one"\ncolour = "red"\n[location]\nlatitude_deg = 91\n')
    scenario, problems = check_scenario(path)
    assert scenario is None
    where = sorted(p.split(":")[0] for p in problems)
    assert where == ["colour", "days", "location.latitude_deg", "location.longitude_deg", "seed"]
    assert "colour: unknown key" in problems


def _validate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    args = _args("--validate-config", *argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_config_exits_0_or_1_listing_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _validate(capsys, "--scenario", str(EXAMPLE))
    assert code == 0
    assert out.startswith(f"{EXAMPLE}: ok (4 households, 1 days from 2010-01-11")
    bad = tmp_path / "bad.toml"
    bad.write_text('currency = "eur"\ninterval_s = 7\n', encoding="utf-8")
    code, _, err = _validate(capsys, "--scenario", str(bad))
    assert code == 1
    assert err.splitlines() == [f"{bad}: interval_s: Input should be greater than or equal to 60"]
    bad.write_text('currency = "eur"\ninterval_s = 7200\n', encoding="utf-8")
    code, _, err = _validate(capsys, "--scenario", str(bad))
    assert (code, err.splitlines()) == (1, [
        f"{bad}: interval_s: Input should be less than or equal to 3600",
    ])  # fmt: skip
    bad.write_text('currency = "eur"\ninterval_s = 1000\n', encoding="utf-8")
    code, _, err = _validate(capsys, "--scenario", str(bad))
    assert (code, err.splitlines()) == (1, [
        f"{bad}: interval_s: must divide an hour (3600 s), got 1000",
        f"{bad}: currency: must be an ISO 4217 code like EUR, not 'eur'",
    ])  # fmt: skip
    # The flags take part: 80 days of history reach before the measured demand begins.
    code, _, err = _validate(capsys, "--scenario", str(EXAMPLE), "--history-days", "80")
    assert code == 1
    assert "households[0].demand_csv (../tests/data/uci_household_demand.csv) covers" in err
    with pytest.raises(ConfigError, match="--validate-config checks a file"):
        _validate(capsys)


def test_flags_override_the_file_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    plan = plan_runs(_args("--workdir", str(tmp_path)), load_scenario(EXAMPLE))
    assert [c.mechanism.name for c in plan.configs] == ["uniform", "pay-as-bid", "sdr", "mmr"]
    assert [c.workdir for c in plan.configs] == [
        tmp_path / n for n in ("uniform", "pay-as-bid", "sdr", "mmr")
    ]
    first = plan.configs[0]
    assert (first.days, first.history_days, first.seed, first.households) == (1, 14, 1, 2)
    assert first.mechanism.rules.network_fee_micro_per_kwh == 10_000
    assert (first.latitude_deg, first.longitude_deg) == (48.78, 2.29)
    assert first.forecaster == "naive" and first.currency == "EUR"
    flags = _args(
        *("--workdir", str(tmp_path), "--days", "3", "--mechanism", "sdr"),
        *("--households", "5", "--network-fee-micro-per-kwh", "0", "--forecaster", "prophet"),
    )
    (one,) = plan_runs(flags, load_scenario(EXAMPLE)).configs
    assert (one.days, one.households, one.workdir) == (3, 5, tmp_path)
    assert one.mechanism.name == "sdr" and one.mechanism.rules.network_fee_micro_per_kwh == 0
    assert one.forecaster == "prophet" and one.history_days == 14
    (plain,) = plan_runs(_args("--workdir", str(tmp_path)), None).configs
    assert (plain.households, plain.days, plain.seed, plain.forecaster) == (20, 2, 1, "prophet")
    with pytest.raises(ConfigError, match="--dashboard watches one run"):
        plan_runs(_args("--mechanism", "uniform,sdr", "--dashboard"), None)
    with pytest.raises(ConfigError, match="--db: several mechanisms"):
        plan_runs(_args("--mechanism", "uniform,sdr", "--db", "sqlite:///x.db"), None)
    with pytest.raises(ConfigError, match="--mechanism: name each mechanism once"):
        plan_runs(_args("--mechanism", "sdr,sdr"), None)
    with pytest.raises(ConfigError, match="generated household h001 has the id"):
        plan_runs(_args("--households", "2"), _with_household(tmp_path, "h001"))


def _with_household(tmp_path: Path, agent: str) -> object:
    path = tmp_path / "one.toml"
    path.write_text(f'[[households]]\nid = "{agent}"\nannual_demand_wh = 3000000\n')
    return load_scenario(path)


def test_measured_profiles_resample_with_exact_sums() -> None:
    hourly = MeasuredProfile("f", start_epoch_s=0, step_s=3600, wh=(1000, 7, 0, 5))
    quarter = hourly.resample(0, 900, 16)
    assert quarter[:4] == (250, 250, 250, 250)
    assert quarter[4:8] == (1, 2, 2, 2)  # 7 Wh over four quarters, remainders later
    assert sum(quarter) == 1012
    assert hourly.resample(3600, 900, 4) == quarter[4:8]  # a later start, the same split
    fine = MeasuredProfile("f", start_epoch_s=0, step_s=300, wh=tuple(range(12)))
    assert fine.resample(0, 900, 4) == (3, 12, 21, 30)
    with pytest.raises(ConfigError, match="f covers 1970-01-01T00:00:00Z to 1970-01-01T04"):
        hourly.resample(0, 900, 17)
    with pytest.raises(ConfigError, match="must divide one another"):
        MeasuredProfile("f", 0, 3600, (1, 2)).resample(0, 2400, 2)


def test_a_measured_pv_file_and_given_households_beside_generated_ones() -> None:
    pv = read_profile(DATA / "greensboro_pv_5kwp.csv", name="pv")
    demand = read_profile(DATA / "uci_household_demand.csv", name="demand")
    start = datetime(2021, 5, 3, tzinfo=UTC)  # the history starts 2 days before
    plan = ScenarioPlan(
        generated=3,
        pv_share=0.67,
        battery_share=0.0,
        households=(
            HouseholdPlan("pv-measured", pv_peak_w=5000, annual_demand_wh=3_000_000, pv=pv),
            HouseholdPlan(
                "south", pv_peak_w=4000, annual_demand_wh=2_500_000, orientation=(30, 180)
            ),
        ),
        start=start,
        latitude_deg=36.1,
        longitude_deg=-79.95,
    )
    scenario = build_planned(plan, days=1, seed=4, history_days=2)
    assert scenario.interval_start(scenario.history_intervals) == start
    assert [h.spec.agent_id for h in scenario.households] == [
        "h001", "h002", "h003", "pv-measured", "south",
    ]  # fmt: skip
    # The generated households are the ones --households 3 draws with this seed and period.
    alone = build_scenario(
        households=3, days=1, seed=4, pv_share=0.67, start=plan.history_start(2),
        history_days=2, latitude_deg=36.1, longitude_deg=-79.95,
    )  # fmt: skip
    assert scenario.households[:3] == alone.households
    measured = scenario.households[3]
    first_s = int(plan.history_start(2).timestamp())
    assert measured.pv_wh == pv.resample(first_s, 900, 3 * 96)
    hours = (first_s - pv.start_epoch_s) // 3600
    assert sum(measured.pv_wh) == sum(pv.wh[hours : hours + 72]) > 0
    assert max(measured.pv_wh) <= 5000 * 900 // 3600  # never above the 5 kWp array
    assert sum(scenario.households[4].pv_wh) > 0
    # A measured demand must cover the period: the UCI file ends in February 2010.
    plan_demand = ScenarioPlan(
        generated=0,
        pv_share=0.0,
        battery_share=0.0,
        households=(HouseholdPlan("late", demand=demand),),
        start=start,
    )
    with pytest.raises(ConfigError, match="demand covers 2009-10-31T23:00:00Z to 2010-02-28"):
        build_planned(plan_demand, days=1, seed=4, history_days=2)


def test_a_plan_without_households_is_the_generated_scenario() -> None:
    plan = ScenarioPlan(generated=3, pv_share=0.5, battery_share=0.0)
    assert build_planned(plan, days=1, seed=2, history_days=1) == build_scenario(
        households=3, days=1, seed=2, pv_share=0.5, history_days=1
    )
