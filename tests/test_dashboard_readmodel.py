"""The dashboard's read model on real SQLite and PostgreSQL, folded from real ledgers:
its statements equal `wattmesh ledger statement`, its figures equal those recomputed
from the log, syncing in steps equals one rebuild, and the ledger is never written."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.dashkit import MixedMarket, logged, statements, table_rows
from tests.ledgerkit import T0
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.transport import BrokerAddress
from wattmesh.cli import main
from wattmesh.dashboard import _tables
from wattmesh.dashboard import queries as q
from wattmesh.dashboard.readmodel import ReadModel, ReadModelError
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.store_errors import StoreError
from wattmesh.sim.simulate import SimulationConfig, run_simulation


def _rows(rm: ReadModel, table: sa.Table) -> list[dict[str, Any]]:
    with rm.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table)).mappings()]


def test_statements_equal_the_ledger_statement_command(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON and CSV, for households with corrections, an estimate, a flag and fees;
    the read model beside the ledger (its own file, or schema wattmesh_dashboard)."""
    market = MixedMarket(db_url).run()
    market.store.close()
    store = LedgerStore.read_only(db_url)
    rm = ReadModel(ReadModel.default_url(db_url))
    try:
        rm.sync(store)
        built = statements(store)
        bases = Counter(r.basis for s in built.values() for r in s.rows)
        assert bases["estimated"] and bases["flagged"] and bases["metered"]
        assert sum(r.corrections for s in built.values() for r in s.rows) > 0
        assert sum(r.fee_micro for s in built.values() for r in s.rows) > 0
        for agent in built:
            mine = q.statement(rm, agent)
            args = ["ledger", "statement", "--db", db_url, "--household", agent]
            assert main(args) == 0
            printed = json.loads(capsys.readouterr().out)
            assert printed == {"from": None, "to": None, **mine.to_json()}
            assert main([*args, "--format", "csv"]) == 0
            assert capsys.readouterr().out == mine.to_csv()
        with pytest.raises(q.NotFound, match="no household 'h999'"):
            q.statement(rm, "h999")
        if db_url.startswith("postgresql"):
            names = set(sa.inspect(rm.engine).get_table_names(schema=_tables.PG_SCHEMA))
            assert names == set(_tables.METADATA.tables)
            public = set(sa.inspect(store.engine).get_table_names())
            assert "household_interval" not in public
    finally:
        rm.close()
        store.close()


def test_a_growing_log_is_followed_interval_by_interval(tmp_path: Path) -> None:
    """Synced after each close: the statements equal the ledger's at that moment (the
    last interval's trades unsettled), and each sync reports the interval it closed."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    market = MixedMarket(url)
    store = LedgerStore.read_only(url)
    rm = ReadModel(ReadModel.default_url(url))
    unsettled = 0
    while market.n < market.intervals:
        trading = market.n != 6
        t = market.step()
        result = rm.sync(store)
        assert result.closed == ((t,) if trading else ())
        assert result.tree_size == store.size() == rm.applied_size()
        for agent, built in statements(store).items():
            assert q.statement(rm, agent).to_json() == built.to_json()
            unsettled += sum(1 for r in built.rows if r.basis == "unsettled")
        assert rm.sync(store).applied == 0
    assert unsettled > 0
    rm.close()
    store.close()
    market.store.close()


def test_syncing_in_steps_equals_one_rebuild(db_url: str, tmp_path: Path) -> None:
    """A read model at ``db_url`` synced in random steps holds the same rows as a
    SQLite one rebuilt in one go; rebuilding the first changes nothing."""
    ledger_url = f"sqlite:///{tmp_path / 'source.db'}"
    MixedMarket(ledger_url).run().store.close()
    store = LedgerStore.read_only(ledger_url)
    stepped, whole = ReadModel(db_url), ReadModel(f"sqlite:///{tmp_path / 'whole.db'}")
    rng = random.Random(5)
    seen_closed: list[int] = []
    while True:
        result = stepped.sync(store, max_entries=rng.randint(1, 40))
        seen_closed += result.closed
        if result.applied == 0:
            break
    once = whole.rebuild(store)
    assert once.tree_size == stepped.applied_size() == store.size()
    assert list(once.closed) == seen_closed
    expected = dict(table_rows(whole.engine))
    assert dict(table_rows(stepped.engine)) == expected
    assert stepped.rebuild(store).applied == store.size()
    assert dict(table_rows(stepped.engine)) == expected
    for rm in (stepped, whole):
        rm.close()
    store.close()


def test_the_figures_equal_those_recomputed_from_the_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    market = MixedMarket(url).run()
    market.store.close()
    store = LedgerStore.read_only(url)
    rm = ReadModel(ReadModel.default_url(url))
    rm.sync(store)
    entries = logged(store)
    by_kind = defaultdict(list)
    for e in entries:
        by_kind[e["kind"]].append(e)

    # Per interval: the clearing, the trades and the sums of the household rows.
    stats = {r["interval"]: r for r in _rows(rm, _tables.interval_stats)}
    for clearing in by_kind["clearing"]:
        row = stats[clearing["interval"]]
        for name in ("price_micro_per_kwh", "volume_wh", "orders", "rejected"):
            assert row[name] == clearing[name]
    trades = Counter(e["interval"] for e in by_kind["trade"])
    volume = Counter()
    for e in by_kind["trade"]:
        volume[e["interval"]] += e["quantity_wh"]
    assert {t: r["trades"] for t, r in stats.items() if r["trades"]} == dict(trades)
    assert all(stats[t]["volume_wh"] == v for t, v in volume.items())
    built = statements(store)
    sums: dict[int, Counter[str]] = defaultdict(Counter)
    for s in built.values():
        for r in s.rows:
            sums[r.interval]["households"] += 1
            if r.basis == "flagged":
                sums[r.interval]["flagged"] += 1
                continue
            sums[r.interval]["import_wh"] += r.import_wh
            sums[r.interval]["export_wh"] += r.export_wh
            sums[r.interval]["bought_wh"] += r.bought_wh
            sums[r.interval]["cost_micro"] += r.cost_micro
            sums[r.interval]["grid_only_cost_micro"] += r.grid_only_cost_micro
    for t, expected in sums.items():
        assert {k: stats[t][k] for k in expected} == dict(expected), t

    # Per household: the totals equal the statement's.
    totals = {r["household"]: r for r in _rows(rm, _tables.household_total)}
    assert set(totals) == set(built)
    for agent, s in built.items():
        want = s.totals()
        got = totals[agent]
        assert got["cost_micro"] == want["cost_micro"] == want["posted_micro"]
        for name in ("import_wh", "export_wh", "bought_wh", "sold_wh", "grid_only_cost_micro"):
            assert got[name] == want[name], (agent, name)
        assert got["intervals"] == len(s.rows)

    # Orders, checkpoints, keys and flags.
    orders = _rows(rm, _tables.book_order)
    assert len(orders) == len(by_kind["order"])
    assert {(o["household"], o["side"]) for o in orders} == {
        (e["signed"]["agent"], e["signed"]["body"]["side"]) for e in by_kind["order"]
    }
    got_checkpoints = _rows(rm, _tables.checkpoint)
    assert sorted((c["tree_size"], c["root"]) for c in got_checkpoints) == [
        (c.tree_size, c.root) for c in store.checkpoints()
    ]
    keys = {r["id"]: r for r in _rows(rm, _tables.household)}
    assert sorted(keys) == ["h001", "h002", "h003", "h004", "h005"]
    rotated = VerifyingKey.from_der(keys["h002"]["public_key_der"])
    assert rotated.kid == market.houses["h002"].key.kid == keys["h002"]["kid"]
    assert keys["h001"]["first_interval"] == T0
    (flag,) = by_kind["flag"]
    (anomaly,) = _rows(rm, _tables.anomaly)
    assert (anomaly["household"], anomaly["interval"], anomaly["kind"], anomaly["source"]) == (
        flag["agent"],
        flag["interval"],
        flag["reason"],
        "log",
    )
    state = {r["key"]: r["value"] for r in _rows(rm, _tables.sync_state)}
    assert state["market_id"] == "test" and state["origin"] == "wattmesh/test"
    assert state["operator_kid"] == market.ledger.operator_key.kid
    rm.close()
    store.close()


def test_the_ledger_database_is_never_written(tmp_path: Path) -> None:
    """The ledger file's bytes and time stay as they were through sync, rebuild and every
    query; the store the dashboard opens refuses a write."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    MixedMarket(url).run().store.close()
    path = tmp_path / "ledger.db"
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    store = LedgerStore.read_only(url)
    rm = ReadModel(ReadModel.default_url(url))
    rm.sync(store)
    rm.rebuild(store)
    q.overview(rm, now_s=T0)
    q.entry_proof(rm, store, 3)
    for agent in ("h001", "h004"):
        q.statement(rm, agent)
        q.household_detail(rm, agent)
    with pytest.raises(sa.exc.OperationalError) as refused, store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE intruder (x INTEGER)"))
    assert isinstance(refused.value.orig, sqlite3.OperationalError)
    assert "readonly" in str(refused.value.orig)
    rm.close()
    store.close()
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert Path(f"{path}.dashboard.db").is_file()


def test_where_the_read_model_lives(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    ledger = f"sqlite:///{tmp_path / 'x' / 'ledger.db'}"
    LedgerStore(ledger).close()
    assert ReadModel.default_url(ledger) == f"sqlite:///{tmp_path / 'x' / 'ledger.db'}.dashboard.db"
    pg = "postgresql://u@db.example/wattmesh"
    assert ReadModel.default_url(pg) == pg
    with pytest.raises(ReadModelError, match="in-memory"):
        ReadModel.default_url("sqlite://")
    with pytest.raises(ReadModelError, match="holds a ledger"):
        ReadModel(ledger)
    with pytest.raises(ReadModelError, match="unable to open"):
        ReadModel(f"sqlite:///{tmp_path / 'missing' / 'rm.db'}")


@pytest.mark.slow
async def test_a_simulated_day_folds_to_the_simulations_figures(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    """`simulate` over a real Mosquitto (3 households, 1 day): the read model, synced in
    two steps, agrees with the run's report and with the ledger's statements."""
    config = SimulationConfig(
        households=3,
        days=1,
        seed=7,
        pv_share=0.7,
        forecaster="naive",
        history_days=7,
        workdir=tmp_path,
        gate_timeout_s=30.0,
        broker=mosquitto.url,
    )
    report = await run_simulation(config)
    url = report["db"]
    store = LedgerStore.read_only(url)
    rm = ReadModel(ReadModel.default_url(url))
    half = rm.sync(store, max_entries=store.size() // 2)
    rest = rm.sync(store)
    assert half.tree_size + rest.applied == store.size() == report["ledger_entries"]
    assert len(half.closed) + len(rest.closed) == report["intervals"]
    view = q.overview(rm, now_s=T0)
    assert view["ledger"]["trades"] == report["trades"] > 0
    assert view["market_id"] == "sim"
    rows = {r["household"]: r for r in q.households_table(rm)["households"]}
    for h in report["per_household"]:
        row = rows[h["agent"]]
        assert (row["import_wh"], row["export_wh"]) == (h["import_wh"], h["export_wh"])
        assert (row["bought_wh"], row["sold_wh"]) == (h["p2p_bought_wh"], h["p2p_sold_wh"])
        assert row["bill_micro"] == h["community_micro"]
        assert row["grid_only_bill_micro"] == h["grid_only_micro"]
    for agent, built in statements(store).items():
        assert q.statement(rm, agent).to_csv() == built.to_csv()
    rm.close()
    store.close()


def test_a_failing_database_is_named_in_one_line(tmp_path: Path) -> None:
    """A damaged ledger file is the ledger's StoreError; a damaged read model file is a
    ReadModelError; neither is a traceback of driver errors."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    MixedMarket(url, intervals=2).run().store.close()
    store = LedgerStore.read_only(url)
    rm = ReadModel(f"sqlite:///{tmp_path / 'rm.db'}")
    rm.sync(store, max_entries=5)
    rm.engine.dispose()  # its connections closed (SQLite checkpoints the WAL), then:
    (tmp_path / "rm.db").write_bytes(b"not a database at all" * 500)
    with pytest.raises(
        ReadModelError, match=r"^read model sqlite:///.*rm\.db: file is not a database$"
    ):
        rm.sync(store)
    rm.close()
    rm = ReadModel(f"sqlite:///{tmp_path / 'rm2.db'}")
    store.engine.dispose()
    (tmp_path / "ledger.db").write_bytes(b"not a database at all" * 500)
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp_path / 'ledger.db'}{suffix}").unlink(missing_ok=True)
    with pytest.raises(
        StoreError, match=r"^database sqlite:///.*ledger\.db: file is not a database$"
    ):
        rm.sync(store)
    rm.close()
    store.close()
