"""The dashboard's read functions over a read model folded from a real ledger: each
answer's shape and figures, recomputed independently from the log; proofs that verify
against the signed checkpoint; and what the bus records."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from tests.dashkit import MixedMarket, logged, statements
from tests.ledgerkit import STEP, T0
from wattmesh.broker.bodies import ForecastBody
from wattmesh.broker.forecast_bodies import HEALTH_COUNTERS, HealthBody, TrainedOn
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.tlog import verify_inclusion
from wattmesh.dashboard import _tables as t
from wattmesh.dashboard import queries as q
from wattmesh.dashboard._tables import PG_SCHEMA
from wattmesh.dashboard._tables import forecast as forecast_table
from wattmesh.dashboard.readmodel import ReadModel
from wattmesh.ledger.checkpoint import checkpoint_text
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.statement import Statement, StatementError, build_statement
from wattmesh.ledger.store import LedgerStore

Folded = tuple[ReadModel, LedgerStore, MixedMarket]


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Folded]:
    """One mixed market's ledger (SQLite) and its read model, shared by the module's
    read-only tests (each test that records something makes its own)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('q') / 'ledger.db'}"
    market = MixedMarket(url).run()
    market.store.close()
    store = LedgerStore.read_only(url)
    rm = ReadModel(ReadModel.default_url(url))
    rm.sync(store)
    yield rm, store, market
    rm.close()
    store.close()


def _fresh(tmp_path: Path, *, intervals: int = 4) -> tuple[ReadModel, LedgerStore]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    MixedMarket(url, intervals=intervals).run().store.close()
    store = LedgerStore.read_only(url)
    rm = ReadModel(ReadModel.default_url(url))
    rm.sync(store)
    return rm, store


def _cleared(store: LedgerStore) -> list[dict[str, object]]:
    return [e for e in logged(store) if e["kind"] == "clearing"]


def test_overview_figures(folded: Folded) -> None:
    rm, store, market = folded
    now = T0 + market.intervals * STEP + 100
    view = q.overview(rm, now_s=now)
    assert view["market_id"] == "test"
    assert (view["interval_s"], view["current_interval"]) == (STEP, now - 100)
    assert view["next_close_s"] == now - 100 + STEP
    last_clearing = _cleared(store)[-1]
    last = view["last"]
    assert last["interval"] == last_clearing["interval"]
    assert last["price_micro_per_kwh"] == last_clearing["price_micro_per_kwh"]
    assert last["volume_wh"] == last_clearing["volume_wh"]
    assert (last["retail_micro_per_kwh"], last["feed_in_micro_per_kwh"]) == (300_000, 80_000)
    # The run's figures from the statements: non-flagged rows, by interval.
    rows = [r for s in statements(store).values() for r in s.rows if r.basis != "flagged"]
    drawn = Counter[int]()
    fed = Counter[int]()
    for r in rows:
        drawn[r.interval] += r.import_wh
        fed[r.interval] += r.export_wh
    run = view["run"]
    total_import = sum(drawn.values())
    assert run["import_wh"] == total_import > 0
    assert run["export_wh"] == sum(fed.values())
    shared = sum(min(drawn[t], fed[t]) for t in drawn)
    assert run["self_sufficiency"] == pytest.approx(shared / total_import)
    assert run["p2p_share"] == pytest.approx(sum(r.bought_wh for r in rows) / total_import)
    assert run["cost_micro"] == sum(r.cost_micro for r in rows)
    assert run["grid_only_cost_micro"] == sum(r.grid_only_cost_micro for r in rows)
    assert run["savings_micro"] == run["grid_only_cost_micro"] - run["cost_micro"]
    assert run["savings_pct"] == pytest.approx(
        100 * run["savings_micro"] / run["grid_only_cost_micro"]
    )
    assert run["p2p_wh"] == sum(int(str(c["volume_wh"])) for c in _cleared(store))
    assert run["grid_import_wh"] == sum(
        max(r.metered_net_wh - r.traded_net_wh, 0) for r in rows if r.basis != "unsettled"
    )
    assert view["today"] == run  # the whole run is within one UTC day
    cp = store.latest_checkpoint()
    assert cp is not None
    assert view["ledger"] == {
        "tree_size": cp.tree_size,
        "root_hex": cp.root.hex(),
        "kid": cp.kid,
        "trades": sum(1 for e in logged(store) if e["kind"] == "trade"),
        "last_verify": None,
    }
    assert view["agents"] == {"online": 0, "known": 5}
    (anomaly,) = view["anomalies"]
    assert (anomaly["household"], anomaly["kind"]) == ("h004", "register_backwards")
    json.dumps(view)


def test_an_empty_read_model_answers_without_data(tmp_path: Path) -> None:
    rm = ReadModel(f"sqlite:///{tmp_path / 'empty.db'}")
    view = q.overview(rm, now_s=1_000_000)
    assert view["last"] is None and view["run"]["self_sufficiency"] == 0.0
    assert view["ledger"]["tree_size"] == 0 and view["market_id"] is None
    assert q.market_series(rm)["intervals"] == []
    assert q.households_table(rm) == {"households": []}
    assert q.trades(rm) == {"trades": []}
    assert q.checkpoints(rm)["checkpoints"] == []
    assert q.health(rm, now_s=5, ledger_ok=True, ledger_problem=None)["read_model"] == {
        "applied_size": 0,
        "lag_entries": 0,
        "lag_s": None,
    }
    forecaster = q.health(rm, now_s=5, ledger_ok=True, ledger_problem=None)["forecaster"]
    assert (forecaster["heard"], forecaster["state"], forecaster["age_s"]) == (
        False,
        "not heard",
        None,
    )
    rm.close()


def test_market_series_and_interval_detail(folded: Folded) -> None:
    rm, store, _market = folded
    cleared = _cleared(store)
    series = q.market_series(rm)
    assert series["intervals"] == [c["interval"] for c in cleared]
    assert series["price_micro_per_kwh"] == [c["price_micro_per_kwh"] for c in cleared]
    assert series["p2p_wh"] == [c["volume_wh"] for c in cleared]
    assert {len(v) for v in series.values()} == {len(cleared)}
    part = q.market_series(rm, start=T0 + STEP, end=T0 + 3 * STEP)
    assert part["intervals"] == [T0 + STEP, T0 + 2 * STEP]
    with pytest.raises(q.BadRequest):
        q.market_series(rm, start=T0 + STEP, end=T0)

    traded = next(c for c in cleared if c["volume_wh"])
    t = int(str(traded["interval"]))
    detail = q.interval_detail(rm, t)
    orders = [
        e["signed"] for e in logged(store) if e["kind"] == "order" and e["signed"]["interval"] == t
    ]
    sells = [o["body"] for o in orders if o["body"]["side"] == "sell"]
    buys = [o["body"] for o in orders if o["body"]["side"] == "buy"]
    assert detail["supply"][-1][0] == sum(o["quantity_wh"] for o in sells)
    assert detail["demand"][-1][0] == sum(o["quantity_wh"] for o in buys)
    supply_prices = [p for _, p in detail["supply"]]
    demand_prices = [p for _, p in detail["demand"]]
    assert supply_prices == sorted(set(supply_prices))
    assert demand_prices == sorted(set(demand_prices), reverse=True)
    assert detail["clearing"] == {
        "volume_wh": traded["volume_wh"],
        "price_micro_per_kwh": traded["price_micro_per_kwh"],
    }
    fills = [e for e in logged(store) if e["kind"] == "trade" and e["interval"] == t]
    assert [(x["buyer"], x["seller"], x["quantity_wh"]) for x in detail["trades"]] == [
        (f["buyer"], f["seller"], f["quantity_wh"]) for f in fills
    ]
    assert sum(x["quantity_wh"] for x in detail["trades"]) == traded["volume_wh"]
    with pytest.raises(q.NotFound):
        q.interval_detail(rm, T0 - STEP)


def test_households_table_and_detail(folded: Folded) -> None:
    rm, store, _market = folded
    built = statements(store)
    table = q.households_table(rm)["households"]
    assert [r["household"] for r in table] == sorted(built)
    for row in table:
        totals = built[row["household"]].totals()
        assert row["bill_micro"] == totals["cost_micro"]
        assert row["grid_only_bill_micro"] == totals["grid_only_cost_micro"]
        assert row["savings_micro"] == totals["savings_micro"]
        for name in ("bought_wh", "sold_wh", "import_wh", "export_wh"):
            assert row[name] == totals[name]
        assert 0.0 <= row["self_sufficiency"] <= 1.0
    assert q.households_table(rm, only="h002")["households"] == [table[1]]
    with pytest.raises(q.NotFound):
        q.households_table(rm, only="nobody")

    detail = q.household_detail(rm, "h003")
    rows = built["h003"].rows
    assert detail["series"]["intervals"] == [r.interval for r in rows]
    assert detail["series"]["actual_net_wh"] == [r.metered_net_wh for r in rows]
    assert detail["series"]["bought_wh"] == [r.bought_wh for r in rows]
    assert detail["series"]["forecast_net_wh"] == [None] * len(rows)
    assert detail["totals"] == built["h003"].totals()
    mine = [
        e for e in logged(store) if e["kind"] == "trade" and "h003" in (e["buyer"], e["seller"])
    ]
    assert len(detail["trades"]) == len(mine) > 0
    with pytest.raises(q.NotFound):
        q.household_detail(rm, "nobody")
    assert isinstance(q.statement(rm, "h003"), Statement)


def test_checkpoints_trades_and_proofs(folded: Folded) -> None:
    rm, store, market = folded
    listed = q.checkpoints(rm, limit=3)
    stored = store.checkpoints()
    assert [c["tree_size"] for c in listed["checkpoints"]] == [
        c.tree_size for c in reversed(stored[-3:])
    ]
    operator = listed["operator"]
    key = VerifyingKey.from_der(base64.b64decode(operator["public_key_spki_b64"]))
    assert key.kid == operator["kid"] == market.ledger.operator_key.kid
    assert operator["origin"] == "wattmesh/test"
    with pytest.raises(q.BadRequest):
        q.checkpoints(rm, limit=0)

    every = q.trades(rm, limit=1000)["trades"]
    assert len(every) == sum(1 for e in logged(store) if e["kind"] == "trade")
    assert [x["idx"] for x in every] == sorted((x["idx"] for x in every), reverse=True)
    assert len(q.trades(rm, limit=2)["trades"]) == 2
    some = every[0]
    assert all(
        x["interval"] == some["interval"] for x in q.trades(rm, interval=some["interval"])["trades"]
    )
    assert all(
        "h001" in (x["buyer"], x["seller"]) for x in q.trades(rm, household="h001")["trades"]
    )

    latest = stored[-1]
    for idx in (0, some["idx"], latest.tree_size - 1):
        proof = q.entry_proof(rm, store, idx)
        entry = base64.b64decode(proof["entry_b64"])
        path = [bytes.fromhex(h) for h in proof["path_hex"]]
        root = bytes.fromhex(proof["root_hex"])
        assert (proof["tree_size"], root) == (latest.tree_size, latest.root)
        assert verify_inclusion(entry, idx, proof["tree_size"], path, root)
        text = proof["checkpoint_text"].encode()
        assert text == checkpoint_text("wattmesh/test", latest.tree_size, latest.root)
        signature = base64.b64decode(proof["signature_der_b64"])
        assert key.verify(signature, text)
        assert proof["kind"] == json.loads(entry)["kind"]
    tampered = bytearray(base64.b64decode(q.entry_proof(rm, store, some["idx"])["entry_b64"]))
    tampered[-3] ^= 1
    proof = q.entry_proof(rm, store, some["idx"])
    assert not verify_inclusion(
        bytes(tampered),
        some["idx"],
        proof["tree_size"],
        [bytes.fromhex(h) for h in proof["path_hex"]],
        bytes.fromhex(proof["root_hex"]),
    )
    for missing in (-1, latest.tree_size):
        with pytest.raises(q.NotFound):
            q.entry_proof(rm, store, missing)


def test_entry_owner(folded: Folded) -> None:
    rm, store, _market = folded
    owners: dict[str, set[str | None]] = {}
    for e in store.iter_entries():
        owners.setdefault(e.kind, set()).add(q.entry_owner(rm, store, e.idx))
    for kind in ("trade", "clearing", "checkpoint_ref", "key", "key_rotation"):
        assert owners[kind] == {None}, kind
    for kind in ("reading", "order", "settlement", "correction", "flag", "posting"):
        assert None not in owners[kind] and owners[kind] <= {"h001", "h002", "h003", "h004", "h005"}
    first_order = next(e for e in store.iter_entries() if e.kind == "order")
    assert (
        q.entry_owner(rm, store, first_order.idx) == json.loads(first_order.data)["signed"]["agent"]
    )
    with pytest.raises(q.NotFound):
        q.entry_owner(rm, store, 10**9)


def test_what_the_bus_records_shows(tmp_path: Path) -> None:
    rm, store = _fresh(tmp_path)
    last = _cleared(store)[-1]["interval"]
    assert isinstance(last, int)
    rm.record_summary(last, {"bad_signature": 2, "late": 1})
    rm.record_summary(last, {"bad_signature": 3})  # a repeated summary replaces
    rm.record_presence("h001", online=True, at_s=last)
    rm.record_presence("h002", online=True, at_s=last)
    rm.record_presence("h002", online=False, at_s=last + 5)
    rm.record_verify(ok=True, problem=None, tree_size=store.size(), kid="ab", at_s=last)
    rm.record_broker(connected=False, at_s=last)
    forecast = ForecastBody(T0 + STEP, STEP, (500, 400), (200, 0), "naive", None)
    rm.record_forecast("h002", forecast, issued_s=T0)
    view = q.overview(rm, now_s=last + 10)
    assert view["rejections"] == [{"interval": last, "reason": "bad_signature", "count": 3}]
    assert view["agents"] == {"online": 1, "known": 4}
    assert view["ledger"]["last_verify"] == {
        "ok": True,
        "problem": None,
        "tree_size": store.size(),
        "kid": "ab",
        "at_s": last,
        "anchored": True,
    }
    detail = q.household_detail(rm, "h002")
    at = detail["series"]["intervals"].index(T0 + STEP)
    assert detail["series"]["forecast_net_wh"][at] == 300
    health = q.health(rm, now_s=10**10, ledger_ok=True, ledger_problem=None)
    assert health["status"] == "degraded"  # the broker is configured and disconnected
    assert health["broker"] == {"configured": True, "connected": False}
    assert health["read_model"]["lag_entries"] == 0
    assert health["last_interval_closed"] == last
    rm.record_broker(connected=True, at_s=last + 1)
    assert q.health(rm, now_s=last, ledger_ok=True, ledger_problem=None)["status"] == "ok"
    bad = q.health(rm, now_s=last, ledger_ok=False, ledger_problem="unreachable")
    assert (bad["status"], bad["ledger"]["problem"]) == ("degraded", "unreachable")
    rm.close()
    store.close()


def test_forecast_bands_and_model_show_on_the_household_page(tmp_path: Path) -> None:
    rm, store = _fresh(tmp_path)
    trained = TrainedOn(12, "cd" * 32)
    banded = ForecastBody(
        T0 + STEP, STEP, (500, 400), (200, 0), "prophet", None, version="3", issued_s=T0,
        trained_on=trained, demand_p10_wh=(420, 300), demand_p90_wh=(650, 500),
        pv_p10_wh=(120, 0), pv_p90_wh=(260, 0),
    )  # fmt: skip
    rm.record_forecast("h002", banded, issued_s=T0 + 5)
    plain = ForecastBody(T0 + 2 * STEP, STEP, (300,), (100,), "naive-day", None)
    rm.record_forecast("h002", plain, issued_s=T0 + 1)  # issued earlier: not the latest
    detail = q.household_detail(rm, "h002")
    series = detail["series"]
    at = series["intervals"].index(T0 + STEP)
    assert series["forecast_net_wh"][at] == 300  # 500 - 200
    assert series["forecast_net_p10_wh"][at] == 420 - 260
    assert series["forecast_net_p90_wh"][at] == 650 - 120
    band = {k: series[f"forecast_{k}"][at] for k in ("demand_p10_wh", "demand_p90_wh")}
    assert band == {"demand_p10_wh": 420, "demand_p90_wh": 650}
    assert (series["forecast_pv_p10_wh"][at], series["forecast_pv_p90_wh"][at]) == (120, 260)
    later = series["intervals"].index(T0 + 2 * STEP)  # no spread given: the band is the median
    assert series["forecast_net_p10_wh"][later] == series["forecast_net_p90_wh"][later] == 200
    assert all(series["forecast_net_p10_wh"][i] is None for i in range(at))
    assert detail["forecast"] == {
        "interval": T0 + STEP,
        "model": "prophet",
        "version": "3",
        "issued_s": T0 + 5,
        "trained_on": {"tree_size": 12, "root": "cd" * 32},
    }
    assert q.household_detail(rm, "h001")["forecast"] is None
    # The neighbourhood's net import beside the sum of the forecasts heard.
    other = ForecastBody(T0 + STEP, STEP, (100,), (0,), "naive-day", None)
    rm.record_forecast("h001", other, issued_s=T0)
    market = q.market_series(rm)
    at = market["intervals"].index(T0 + STEP)
    assert (market["forecast_net_wh"][at], market["forecast_households"][at]) == (400, 2)
    assert market["forecast_net_wh"][0] is None and market["forecast_households"][0] == 0
    metered = 0
    for row in q.households_table(rm)["households"]:
        own = q.household_detail(rm, row["household"])["series"]
        if T0 + STEP in own["intervals"]:
            metered += own["actual_net_wh"][own["intervals"].index(T0 + STEP)]
    assert market["metered_net_wh"][at] == metered
    rm.close()
    store.close()


def test_the_forecasters_health_shows_with_its_age(tmp_path: Path) -> None:
    rm = ReadModel(f"sqlite:///{tmp_path / 'rm.db'}")
    counters = dict.fromkeys(HEALTH_COUNTERS, 0) | {"households": 7, "fits": 14}
    body = HealthBody("ok", T0, counters, TrainedOn(40, "ab" * 32), T0 + 60)
    rm.record_forecaster_health(body, at_s=T0 + 100)
    shown = q.health(rm, now_s=T0 + 130, ledger_ok=True, ledger_problem=None)["forecaster"]
    assert shown == {
        "configured": True,
        "heard": True,
        "state": "ok",
        "started_s": T0,
        "last_refit_s": T0 + 60,
        "households": 7,
        "counters": counters,
        "trained_on": {"tree_size": 40, "root": "ab" * 32},
        "heard_s": T0 + 100,
        "age_s": 30,
    }
    rm.close()


def test_an_older_read_model_gets_the_new_forecast_columns(db_url: str) -> None:
    """A read model made before the PV quantiles and the model's version were kept."""
    engine = create_engine(db_url)
    table = "forecast"
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f'CREATE SCHEMA "{PG_SCHEMA}"'))
            table = f'"{PG_SCHEMA}".forecast'
        conn.execute(
            text(
                f"CREATE TABLE {table} (household VARCHAR(128), interval BIGINT,"
                " demand_wh BIGINT, pv_wh BIGINT, demand_p10_wh BIGINT, demand_p90_wh BIGINT,"
                " model VARCHAR(64), issued_s BIGINT, PRIMARY KEY (household, interval))"
            )
        )
        conn.execute(text(f"INSERT INTO {table} VALUES ('h1', 900, 5, 1, NULL, NULL, 'naive', 1)"))
    engine.dispose()
    rm = ReadModel(db_url)
    schema = PG_SCHEMA if engine.dialect.name == "postgresql" else None
    have = {c["name"] for c in inspect(rm.engine).get_columns("forecast", schema=schema)}
    assert have >= {"pv_p10_wh", "pv_p90_wh", "version", "trained_on_size", "trained_on_root"}
    body = ForecastBody(1800, 900, (5,), (1,), "naive", None, trained_on=TrainedOn(3, "ef" * 32))
    f = forecast_table
    rm.record_forecast("h1", body, issued_s=2)
    with rm.engine.connect() as conn:
        rows = conn.execute(select(f.c.interval, f.c.pv_p90_wh, f.c.trained_on_size))
        assert sorted(tuple(r) for r in rows) == [(900, None, None), (1800, 1, 3)]
    rm.close()
    ReadModel(db_url).close()  # opening it again adds nothing


def test_a_statement_that_does_not_reconcile_fails_as_the_ledgers_does(tmp_path: Path) -> None:
    """A signed, balanced posting no settlement explains: the read model's statement
    raises the same StatementError as the ledger's builder."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    market = MixedMarket(url, intervals=3).run()
    stray = {
        "kind": "posting",
        "interval": T0,
        "agent": "h002",
        "cause": "correction",
        "lines": [
            {"account": "household/h002", "amount_micro": 1},
            {"account": "grid", "amount_micro": -1},
        ],
    }
    data = json.dumps(stray, sort_keys=True).encode()
    market.ledger._append([NewEntry("posting", T0, "h002", None, data)], T0 + 3 * STEP)
    market.store.close()
    store = LedgerStore.read_only(url)
    rm = ReadModel(ReadModel.default_url(url))
    rm.sync(store)
    with pytest.raises(StatementError) as expected:
        build_statement(logged(store), household="h002")
    with pytest.raises(StatementError) as got:
        q.statement(rm, "h002")
    assert str(got.value) == str(expected.value)
    assert "differs from the postings" in str(got.value)
    rm.close()
    store.close()


def test_the_neighbourhood_forecast_is_the_sum_of_the_rows_heard(tmp_path: Path) -> None:
    """The market's forecast column is kept as forecasts arrive (a replaced forecast
    replaces its share), equals the sum over the forecast rows, and is filled from them
    for a read model made before the totals were kept."""
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    rm = ReadModel(url)
    heard = [
        ("h001", T0, (500,), (100,)),
        ("h002", T0, (300,), (700,)),
        ("h001", T0, (450,), (0,)),  # a newer forecast for the same interval
        ("h001", T0 + STEP, (200,), (0,)),
    ]
    for household, start, demand, pv in heard:
        body = ForecastBody(start, STEP, demand, pv, "naive", None)
        rm.record_forecast(household, body, issued_s=1)
    f, total = forecast_table, t.forecast_total
    with rm.engine.connect() as conn:
        kept = dict(conn.execute(select(total.c.interval, total.c.net_wh)).all())
        counts = dict(conn.execute(select(total.c.interval, total.c.households)).all())
        summed = dict(
            conn.execute(
                select(f.c.interval, func.sum(f.c.demand_wh - f.c.pv_wh)).group_by(f.c.interval)
            ).all()
        )
    assert kept == summed == {T0: 450 - 400, T0 + STEP: 200}
    assert counts == {T0: 2, T0 + STEP: 1}
    with rm.engine.begin() as conn:
        conn.execute(total.delete())  # as before the totals were kept
    rm.close()
    again = ReadModel(url)
    with again.engine.connect() as conn:
        assert dict(conn.execute(select(total.c.interval, total.c.net_wh)).all()) == summed
    again.close()
