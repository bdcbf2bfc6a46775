"""`wattmesh simulate` with a chosen mechanism and a time-of-use tariff schedule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wattmesh.broker.transport import BrokerAddress
from wattmesh.cli import main
from wattmesh.ledger.accounts import FEES_ACCOUNT
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.ledger.money import network_fee_micro
from wattmesh.ledger.statement import build_statement
from wattmesh.ledger.store import LedgerStore
from wattmesh.sim.simulate import SimulationConfig, run_simulation

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

TOU = [
    {"start_hour_utc": 0, "retail_micro_per_kwh": 200_000, "feed_in_micro_per_kwh": 60_000},
    {"start_hour_utc": 7, "retail_micro_per_kwh": 300_000, "feed_in_micro_per_kwh": 80_000},
    {"start_hour_utc": 17, "retail_micro_per_kwh": 410_000, "feed_in_micro_per_kwh": 90_000},
]


async def test_mmr_market_with_tou_tariffs(tmp_path: Path, mosquitto: BrokerAddress) -> None:
    schedule = TariffSchedule.from_json(TOU)
    config = SimulationConfig(
        households=4,
        days=1,
        seed=3,
        pv_share=0.5,
        forecaster="naive",
        history_days=7,
        workdir=tmp_path,
        broker=mosquitto.url,
        gate_timeout_s=30.0,
        tariffs=schedule,
        mechanism=Mechanism("mmr"),
    )
    report = await run_simulation(config)
    assert report["verified"] is True, report["verify_problem"]
    assert report["trades"] > 0
    store = LedgerStore(report["db"])
    try:
        entries = [(e.kind, json.loads(e.data)) for e in store.iter_entries()]
    finally:
        store.close()
    clearings = {obj["interval"]: obj for kind, obj in entries if kind == EntryKind.CLEARING}
    assert len(clearings) == report["intervals"]
    seen_tariffs = set()
    for interval, obj in clearings.items():
        tariff = schedule.at(interval)
        seen_tariffs.add(tariff)
        assert obj["mechanism"] == "mmr"
        assert (obj["retail_micro_per_kwh"], obj["feed_in_micro_per_kwh"]) == (
            tariff.retail_micro_per_kwh,
            tariff.feed_in_micro_per_kwh,
        )
    assert seen_tariffs == {
        GridTariff(r["retail_micro_per_kwh"], r["feed_in_micro_per_kwh"]) for r in TOU
    }
    limits = {
        (obj["signed"]["agent"], obj["signed"]["interval"]): obj["signed"]["body"]
        for kind, obj in entries
        if kind == EntryKind.ORDER
    }
    trades = [obj for kind, obj in entries if kind == EntryKind.TRADE]
    assert trades
    at_mid = 0
    for t in trades:
        tariff = schedule.at(t["interval"])
        retail, feed_in = tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh
        bid = min(limits[(t["buyer"], t["interval"])]["price_micro_per_kwh"], retail)
        ask = max(limits[(t["seller"], t["interval"])]["price_micro_per_kwh"], feed_in)
        mid = (retail + feed_in) // 2
        # The mid-market rate, or the nearest price both limits admit.
        assert t["price_micro_per_kwh"] == min(max(mid, ask), bid)
        at_mid += t["price_micro_per_kwh"] == mid
    assert at_mid > 0


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--mechanism", "vickrey"], None, "--mechanism: unknown mechanism 'vickrey'"),
        (["--tariffs", "{t}"], "[{]", "--tariffs {t}: Expecting"),
        (["--tariffs", "{t}"], '{"start_hour_utc": 0}', "must be a JSON list of objects"),
        (
            ["--tariffs", "{t}"],
            json.dumps([{**TOU[0], "retail_micro_per_kwh": 0.2}]),
            "must be an integer",
        ),
        (["--tariffs", "{t}"], json.dumps(TOU[1:]), "first period starting at hour 0"),
        (["--tariffs", "{t}/missing.json"], None, "No such file"),
        (
            ["--network-fee-micro-per-kwh", "-1"],
            None,
            "--network-fee-micro-per-kwh: the network fee must not be negative",
        ),
    ],
    ids=["mechanism", "not-json", "not-a-list", "float", "no-hour-0", "missing", "fee"],
)
def test_bad_mechanism_or_tariffs_give_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    content: str | None,
    message: str,
) -> None:
    t = tmp_path / "tou.json"
    if content is not None:
        t.write_text(content, encoding="utf-8")
    args = [a.replace("{t}", str(t)) for a in args]
    assert main(["simulate", "--workdir", str(tmp_path), *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message.replace("{t}", str(t)) in lines[0], err
    assert not (tmp_path / "ledger.db").exists()  # refused before anything ran


def test_simulate_with_a_network_fee_collects_and_reports_it(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    """The CLI option end to end: the operator's fee account holds each trade's fee, the
    report shows it, sellers net the price minus the fee, and statements reconcile."""
    fee = 20_000
    report_path = tmp_path / "report.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "wattmesh.cli", "simulate", "--households", "4"),
            *("--days", "1", "--seed", "3", "--pv-share", "0.5", "--forecaster", "naive"),
            *("--history-days", "7", "--broker", mosquitto.url, "--workdir", str(tmp_path)),
            *("--report", str(report_path), "--network-fee-micro-per-kwh", str(fee)),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "network fees collected" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["verified"] is True and report["settlement_complete"] is True
    assert report["network_fee_micro_per_kwh"] == fee
    store = LedgerStore(report["db"])
    try:
        entries = [json.loads(e.data) for e in store.iter_entries()]
    finally:
        store.close()
    (clearing, *_) = [obj for obj in entries if obj["kind"] == EntryKind.CLEARING]
    assert (clearing["mechanism"], clearing["network_fee_micro_per_kwh"]) == ("uniform", fee)
    trades = [obj for obj in entries if obj["kind"] == EntryKind.TRADE]
    owed = sum(network_fee_micro(t["quantity_wh"], t["price_micro_per_kwh"], fee) for t in trades)
    assert owed > 0
    assert report["money_micro"]["network_fees"] == owed == -report["accounts_micro"][FEES_ACCOUNT]
    rows = report["per_household"]
    assert sum(r["network_fee_micro"] for r in rows) == owed
    assert sum(r["community_micro"] for r in rows) == report["money_micro"]["community"]
    limits = {
        (obj["signed"]["agent"], obj["signed"]["interval"]): obj["signed"]["body"]
        for obj in entries
        if obj["kind"] == EntryKind.ORDER
    }
    for t in trades:
        feed_in = clearing["feed_in_micro_per_kwh"]
        ask = max(limits[(t["seller"], t["interval"])]["price_micro_per_kwh"], feed_in)
        bid = limits[(t["buyer"], t["interval"])]["price_micro_per_kwh"]
        assert ask <= t["price_micro_per_kwh"] - fee and t["price_micro_per_kwh"] <= bid
    for r in rows:
        totals = build_statement(entries, household=r["agent"]).totals()
        assert totals["fee_micro"] == r["network_fee_micro"]
        assert totals["cost_micro"] == totals["posted_micro"] == r["community_micro"]
