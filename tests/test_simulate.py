"""`wattmesh simulate` end to end: real brokers, real SQL, real signatures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.ledgerkit import drop_append_only_triggers
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.mosquitto import free_port
from wattmesh.broker.transport import BrokerAddress
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger
from wattmesh.sim.simkeys import simulation_key
from wattmesh.sim.simulate import SimulationConfig, run_simulation

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _config(tmp_path: Path, **overrides: Any) -> SimulationConfig:
    base: dict[str, Any] = {
        "households": 6,
        "days": 1,
        "seed": 7,
        "pv_share": 0.5,
        "forecaster": "naive",
        "history_days": 7,
        "workdir": tmp_path,
        "gate_timeout_s": 30.0,  # fail fast if a household goes missing
    }
    base.update(overrides)
    return SimulationConfig(**base)


def _check_balances(report: dict[str, Any]) -> None:
    energy = report["energy_wh"]
    assert energy["demand"] - energy["pv"] == energy["grid_import"] - energy["grid_export"]
    rows = report["per_household"]
    assert len(rows) == report["households"]
    assert sum(r["demand_wh"] for r in rows) == energy["demand"]
    assert sum(r["pv_wh"] for r in rows) == energy["pv"]
    assert sum(r["grid_import_wh"] for r in rows) == energy["grid_import"]
    assert sum(r["grid_export_wh"] for r in rows) == energy["grid_export"]
    assert sum(r["p2p_bought_wh"] for r in rows) == energy["p2p"]
    assert sum(r["p2p_sold_wh"] for r in rows) == energy["p2p"]
    assert sum(r["grid_only_micro"] for r in rows) == report["money_micro"]["grid_only"]
    assert sum(r["community_micro"] for r in rows) == report["money_micro"]["community"]
    for r in rows:
        assert r["demand_wh"] - r["pv_wh"] == r["import_wh"] - r["export_wh"]
        assert r["settled_intervals"] == report["intervals"]


async def test_simulation_over_mosquitto_and_amqtt_gives_one_ledger(
    tmp_path: Path, mosquitto: BrokerAddress, amqtt_broker: BrokerAddress
) -> None:
    over_mosquitto = await run_simulation(_config(tmp_path / "m", broker=mosquitto.url))
    over_amqtt = await run_simulation(_config(tmp_path / "a", broker=amqtt_broker.url))
    for report in (over_mosquitto, over_amqtt):
        assert report["verified"] is True, report["verify_problem"]
        assert report["intervals"] == 96
        assert report["settlement_complete"] is True
        assert report["orders_rejected"] == 0
        assert report["trades"] > 0 and report["energy_wh"]["p2p"] > 0
        _check_balances(report)
    # Different brokers deliver in different orders and timings; the ledger must not care.
    assert over_mosquitto["ledger_root"] == over_amqtt["ledger_root"]
    without = {"broker", "db", "per_household"}
    assert {k: v for k, v in over_mosquitto.items() if k not in without} == {
        k: v for k, v in over_amqtt.items() if k not in without
    }


async def test_another_seed_gives_another_ledger(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    one = await run_simulation(_config(tmp_path / "1", broker=mosquitto.url, days=1, households=3))
    two = await run_simulation(
        _config(tmp_path / "2", broker=mosquitto.url, days=1, households=3, seed=8)
    )
    assert one["verified"] and two["verified"]
    assert one["ledger_root"] != two["ledger_root"]


@pytest.mark.postgres
async def test_simulation_on_postgresql_matches_sqlite(
    tmp_path: Path, mosquitto: BrokerAddress, pg_url: str
) -> None:
    on_sqlite = await run_simulation(_config(tmp_path / "s", broker=mosquitto.url, households=4))
    on_pg = await run_simulation(
        _config(tmp_path / "p", broker=mosquitto.url, households=4, db_url=pg_url)
    )
    assert on_pg["verified"] and on_sqlite["verified"]
    assert on_pg["ledger_root"] == on_sqlite["ledger_root"]
    store = LedgerStore(pg_url)
    try:
        with store.engine.begin() as conn:
            idx, data = conn.execute(
                sa.text("SELECT idx, data FROM log_entry WHERE kind = 'order' ORDER BY idx LIMIT 1")
            ).one()
        changed = bytes(data).replace(b'"quantity_wh":', b'"quantity_wh":1', 1)
        assert changed != bytes(data)
        update = sa.text("UPDATE log_entry SET data = :d WHERE idx = :i")
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(update, {"d": changed, "i": idx})  # the database refuses it...
        drop_append_only_triggers(store.engine)  # ...unless an admin drops the triggers
        with store.engine.begin() as conn:
            conn.execute(update, {"d": changed, "i": idx})
        report = verify_ledger(store, simulation_key(7, "operator").verifying)
        assert not report.ok and report.first_bad_entry is not None
    finally:
        store.close()


async def test_prophet_forecaster_runs_in_the_loop(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    report = await run_simulation(
        _config(tmp_path, broker=mosquitto.url, households=2, pv_share=1.0, forecaster="prophet")
    )
    assert report["verified"] is True
    _check_balances(report)
    # Both households have PV and a week of history: Prophet fitted demand and PV itself.
    assert report["forecast_models"].get("prophet", 0) >= 4, report["forecast_models"]


async def test_a_database_that_holds_a_ledger_is_refused(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    db = f"sqlite:///{tmp_path / 'taken.db'}"
    await run_simulation(_config(tmp_path / "first", broker=mosquitto.url, households=1, db_url=db))
    with pytest.raises(ConfigError, match="already holds a ledger"):
        await run_simulation(
            _config(tmp_path / "second", broker=mosquitto.url, households=1, db_url=db)
        )


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=300,
    )


def test_cli_writes_report_and_table(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    report_path = tmp_path / "report.json"
    result = _cli(
        "simulate",
        "--households",
        "3",
        "--days",
        "1",
        "--seed",
        "3",
        "--forecaster",
        "naive",
        "--broker",
        mosquitto.url,
        "--workdir",
        str(tmp_path / "out"),
        "--report",
        str(report_path),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "ledger verified" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["verified"] is True and report["households"] == 3
    key = tmp_path / "out" / "operator_public_key.pem"
    verify = _cli("ledger", "verify", "--db", report["db"], "--operator-key", str(key), cwd=ROOT)
    assert verify.returncode == 0 and report["ledger_root"] in verify.stdout
    kid = simulation_key(3, "operator").kid  # the seed above
    assert report["operator_key_id"] == kid and f"operator key {kid}" in verify.stdout


def test_cli_report_goes_into_the_workdir_with_amounts_in_its_currency(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    workdir = tmp_path / "run"
    result = _cli(
        *("simulate", "--households", "3", "--days", "1", "--seed", "3"),
        *("--forecaster", "naive", "--broker", mosquitto.url, "--workdir", str(workdir)),
        cwd=tmp_path,  # no --report: not ./out/report.json but WORKDIR/report.json
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out").exists()
    assert f"report written to {workdir / 'report.json'}" in " ".join(result.stdout.split())
    report = json.loads((workdir / "report.json").read_text())
    assert report["currency"] == "EUR"
    assert all(isinstance(v, int) for v in report["money_micro"].values())
    community = report["money_micro"]["community"] / 1_000_000
    row = rf"│ cost in the community +│ +{re.escape(f'{community:,.2f}')} EUR │"
    assert re.search(row, result.stdout), result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--currency", "euro"], "--currency must be an ISO 4217 code like EUR, not 'euro'"),
        (["--households", "-2"], "--households must be at least 1"),
        (["--days", "0"], "--days must be at least 1"),
        (["--forecaster", "oracle"], "invalid choice: 'oracle'"),
        (["--broker", "http://example"], "mqtt://"),
        (["--pv-share", "1.5"], "--pv-share"),
    ],
)
def test_cli_bad_arguments_give_one_clear_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _cli("simulate", "--workdir", str(tmp_path), *args, cwd=ROOT)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unreachable_broker(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    result = _cli("simulate", "--workdir", str(tmp_path), "--broker", url, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip() == f"wattmesh: error: cannot reach the MQTT broker at {url}"
