"""``wattmesh ledger run`` on a log with one byte changed: one ERROR line naming the
first bad entry, exit 1, nothing appended (or, when the background check is the one
that finds it, nothing appended after it found it). Real process, Mosquitto, SQLite and
PostgreSQL; an intact log starts and trades (tests/test_ledger_run.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ledgerkit import STEP, T0, TARIFF, House, drop_append_only_triggers
from tests.ledgerrunkit import SUMMARY, LedgerProcess, Market, write_market
from tests.test_ledger_logcheck import _change_byte, _doctor_snapshot, _first_of, _rows
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.broker.transport import BrokerAddress
from wattmesh.config.ledger_config import load_ledger_config
from wattmesh.ledger.household_registry import write_registry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore

pytestmark = pytest.mark.slow


@pytest.fixture
def market(
    tmp_path_factory: pytest.TempPathFactory, db_url: str, mosquitto: BrokerAddress
) -> Market:
    return write_market(tmp_path_factory.mktemp("market"), db_url=db_url, broker=mosquitto)


def _build(market: Market, intervals: int, *, late_household: bool = False) -> None:
    """``intervals`` closed intervals of the market's households, as ``ledger run``
    would open the log (its mechanism, metering, registry); with ``late_household`` a
    household registered after the last close (in the registry file too)."""
    config = load_ledger_config(market.config)
    market_id = config.market_id
    ledger = Ledger(
        LedgerStore(config.db_url),
        market_id=market_id,
        operator_key=config.operator_key,
        mechanism=config.mechanism,
        metering=config.registry.metering(),
    )
    ledger.register(config.registry.keys, interval=T0, revoked=config.registry.revoked)
    houses = [House(agent, key=key) for agent, key in sorted(market.keys.items())]
    for k in range(intervals):
        t = T0 + k * STEP
        ledger.open_interval(t, TARIFF)
        for n, house in enumerate(houses):
            house.meter(import_wh=10 + n)
            ledger.ingest(house.reading(t, market=market_id))
            side = Side.BUY if n % 2 else Side.SELL
            ledger.ingest(house.order(t, side, 50, 150_000, market=market_id))
        ledger.close_interval()
    if late_household:
        keys = {**{a: k.verifying for a, k in market.keys.items()}}
        keys["h009"] = SigningKey.generate().verifying
        write_registry(market.folder / "registry.json", keys)
        ledger.register({"h009": keys["h009"]}, interval=T0 + intervals * STEP)
    ledger.store.close()


async def _stopped(market: Market) -> tuple[int, list[str]]:
    """Run ``ledger run`` until it exits: its exit code and log lines."""
    ledger = await LedgerProcess.start(market.config)
    try:
        log = await ledger.rest()
        code = await ledger.process.wait()
    finally:
        await ledger.kill()
    return code, log.splitlines()


def _the_error(lines: list[str]) -> str:
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    assert "stopping: the log does not verify: entry " in errors[0]
    assert errors[0].endswith("; nothing more is appended")
    return errors[0]


def _bad_signature(db_url: str) -> int:
    store = LedgerStore(db_url)
    size = store.size()
    drop_append_only_triggers(store.engine)
    with store.engine.begin() as conn:
        sig = conn.execute(
            sa.text("SELECT signature FROM checkpoint WHERE tree_size=:s"), {"s": size}
        ).scalar_one()
        conn.execute(
            sa.text("UPDATE checkpoint SET signature=:g WHERE tree_size=:s"),
            {"g": bytes([sig[0] ^ 1]) + bytes(sig[1:]), "s": size},
        )
    store.close()
    return size - 1


@pytest.mark.parametrize("where", ["after-snapshot", "snapshot-key-entry", "checkpoint-signature"])
async def test_ledger_run_refuses_a_log_whose_restored_part_does_not_verify(
    market: Market, db_url: str, where: str
) -> None:
    _build(market, 3, late_household=where == "after-snapshot")
    if where == "after-snapshot":
        bad = _rows(db_url)[0] - 1  # the late household's key entry
        _change_byte(db_url, bad, rehash=True)  # the full check says what it holds
        problem = "key entry holds no valid public key"
    elif where == "snapshot-key-entry":
        bad = _first_of(db_url, "key")
        _change_byte(db_url, bad, rehash=False)
        problem = "leaf hash"
    else:
        bad = _bad_signature(db_url)
        problem = "bad signature"
    before = _rows(db_url)
    code, lines = await _stopped(market)
    error = _the_error(lines)
    assert code == 1
    assert f"entry {bad}: " in error and problem in error, error
    assert not any("connected to" in line for line in lines)  # stopped before the market
    assert _rows(db_url) == before


async def test_ledger_run_stops_when_the_background_check_finds_an_old_entry_changed(
    market: Market, db_url: str
) -> None:
    """An old settlement the snapshot spares the restart: the ledger starts, and stops
    when the background check names it, writing nothing after that."""
    _build(market, 4)
    bad = _first_of(db_url, "settlement")
    _change_byte(db_url, bad, rehash=False)
    before, _ = _rows(db_url)
    code, lines = await _stopped(market)
    error = _the_error(lines)
    assert code == 1
    assert f"entry {bad}: stored leaf hash does not match" in error and "background" in error
    assert any("log check: checking the" in line for line in lines)
    at = lines.index(error)
    sizes = [
        int(m["size"])
        for line in lines[:at]
        if (m := SUMMARY.fullmatch(line.partition("wattmesh.ledger.operator: ")[2]))
    ]
    assert not any(re.search(r"ledger\.operator: interval \d+ ", line) for line in lines[at:])
    size, _ = _rows(db_url)
    assert size == (sizes[-1] if sizes else before)


async def test_ledger_run_starts_on_an_intact_log_and_reports_the_check(
    market: Market, db_url: str, tmp_path: Path
) -> None:
    _build(market, 3)
    ledger = await LedgerProcess.start(market.config)
    try:
        await ledger.until("log check: the ")
        summary = await ledger.summary()  # the market runs: an interval is closed
        assert int(summary["size"]) > _rows(db_url)[0] - 100
    finally:
        await ledger.kill()
    assert not any(" ERROR " in line for line in ledger.lines)


async def test_ledger_run_stops_on_a_snapshot_that_disagrees_and_the_next_start_replays(
    market: Market, db_url: str
) -> None:
    _build(market, 3)
    size, _doctored = _doctor_snapshot(db_url)
    code, lines = await _stopped(market)
    errors = [line for line in lines if " ERROR " in line]
    assert code == 1 and len(errors) == 1, lines
    assert (
        f"stopping: the state snapshot at size {size} disagrees with the log it was taken "
        "from (last_seqs): it is deleted, the next start replays the log; "
        "nothing more is appended"
    ) in errors[0]
    at = lines.index(errors[0])
    assert not any(re.search(r"ledger\.operator: interval \d+ ", line) for line in lines[at:])
    store = LedgerStore(db_url)
    stored = store.latest_snapshot()
    store.close()
    assert stored is None  # deleted, also if a close before the check's end wrote one
    ledger = await LedgerProcess.start(market.config)
    try:
        await ledger.until("log check: the ")
        await ledger.summary()
    finally:
        await ledger.kill()
    assert not any(" ERROR " in line or "snapshot" in line for line in ledger.lines), ledger.lines
