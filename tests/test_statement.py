"""`wattmesh ledger statement` on real SQLite and PostgreSQL ledgers: the household's
figures per interval, and totals that reconcile exactly with its postings."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.ledgerkit import STEP, T0, TARIFF, House, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.cli import main
from wattmesh.ledger.accounts import Posting, household_account
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.statement import StatementError, build_statement

DAY = datetime.fromtimestamp(T0, UTC).date()


def _build(db_url: str) -> Ledger:
    """Three households over three intervals and a closing round.

    a sells 500 Wh to b in the first interval; b's reading closing it arrives one
    interval late (estimated, then corrected); c's import register goes backwards.
    """
    a, b, c = House("h001"), House("h002"), House("h003")
    ledger = new_ledger(db_url, SigningKey.generate(), (a, b, c))
    c.meter(import_wh=1_000)

    def interval(t: int, houses: tuple[House, ...], *, trading: bool = True) -> None:
        ledger.open_interval(t, TARIFF, trading=trading)
        for house in houses:
            ledger.ingest(house.reading(t))
        if trading:
            for house in (a, b, c):
                if t == T0 and house is not c:
                    side = Side.SELL if house is a else Side.BUY
                    ledger.ingest(house.order(t, side, 500, 100_000 if house is a else 250_000))
                else:
                    ledger.ingest(house.order(t, Side.BUY, 0, 250_000))

    interval(T0, (a, b, c))
    ledger.close_interval()
    a.meter(export_wh=800)
    b.meter(import_wh=450)
    held = b.reading(T0 + STEP)
    c.import_wh -= 10
    interval(T0 + STEP, (a, c))
    ledger.close_interval()
    b.meter(import_wh=100)
    c.meter(import_wh=50)
    interval(T0 + 2 * STEP, (a, b, c))
    ledger.ingest(held)
    ledger.close_interval()
    b.meter(import_wh=200)
    interval(T0 + 3 * STEP, (a, b, c), trading=False)
    ledger.close_interval()
    return ledger


def _posted(ledger: Ledger, agent: str) -> int:
    """The household's balance, straight from the logged postings."""
    account = household_account(agent)
    return sum(
        Posting.from_json(json.loads(e.data)).amount_for(account)
        for e in ledger.store.iter_entries()
        if e.kind == "posting"
    )


def _statement(
    capsys: pytest.CaptureFixture[str], db_url: str, agent: str, *extra: str
) -> dict[str, Any]:
    assert main(["ledger", "statement", "--db", db_url, "--household", agent, *extra]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_statement_reconciles_with_the_postings(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _build(db_url)
    b = _statement(capsys, db_url, "h002")
    rows = {r["interval"]: r for r in b["rows"]}
    assert sorted(rows) == [T0, T0 + STEP, T0 + 2 * STEP]
    first = rows[T0]
    assert first["start"] == datetime.fromtimestamp(T0, UTC).isoformat().replace("+00:00", "Z")
    # Estimated on its traded position first, corrected by the backfilled reading.
    assert (first["basis"], first["corrections"]) == ("metered", 1)
    assert (first["metered_net_wh"], first["traded_net_wh"], first["deviation_wh"]) == (
        450,
        500,
        -50,
    )
    assert first["price_micro_per_kwh"] == 175_000
    assert (first["p2p_cost_micro"], first["grid_cost_micro"]) == (87_500, -4_000)
    assert first["grid_only_cost_micro"] == 135_000
    assert [rows[t]["cost_micro"] for t in (T0 + STEP, T0 + 2 * STEP)] == [30_000, 60_000]
    totals = b["totals"]
    assert totals["cost_micro"] == 87_500 - 4_000 + 30_000 + 60_000
    assert totals["cost_micro"] == totals["posted_micro"] == _posted(ledger, "h002")
    assert totals["grid_only_cost_micro"] == 135_000 + 30_000 + 60_000
    assert totals["savings_micro"] == totals["grid_only_cost_micro"] - totals["cost_micro"]
    assert totals["deviation_wh"] == totals["metered_net_wh"] - totals["traded_net_wh"]

    # c: the interval whose import register went backwards is flagged and costs nothing.
    c = _statement(capsys, db_url, "h003")
    flagged, settled, idle = c["rows"]
    assert (idle["basis"], idle["import_wh"], idle["cost_micro"]) == ("metered", 0, 0)
    assert (flagged["basis"], flagged["flag_reason"], flagged["cost_micro"]) == (
        "flagged",
        "register_backwards",
        0,
    )
    assert flagged["import_wh"] == -10
    assert settled["cost_micro"] == 15_000 == c["totals"]["cost_micro"] == _posted(ledger, "h003")
    for agent in ("h001", "h002", "h003"):
        s = build_statement(
            (json.loads(e.data) for e in ledger.store.iter_entries()), household=agent
        )
        assert s.totals()["cost_micro"] == _posted(ledger, agent)
    ledger.store.close()


def test_csv_and_date_range(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = _build(db_url)
    ledger.store.close()
    as_json = _statement(capsys, db_url, "h002", "--from", str(DAY), "--to", str(DAY))
    args = ["ledger", "statement", "--db", db_url, "--household", "h002", "--format", "csv"]
    assert main(args) == 0
    lines = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    *rows, total = lines
    assert [int(r["interval"]) for r in rows] == [r["interval"] for r in as_json["rows"]]
    assert [int(r["cost_micro"]) for r in rows] == [r["cost_micro"] for r in as_json["rows"]]
    assert total["start"] == "total"
    assert int(total["cost_micro"]) == as_json["totals"]["cost_micro"]
    assert int(total["deviation_wh"]) == as_json["totals"]["deviation_wh"]
    later = str(DAY + timedelta(days=1))
    assert _statement(capsys, db_url, "h002", "--from", later)["rows"] == []
    earlier = str(DAY - timedelta(days=1))
    assert _statement(capsys, db_url, "h002", "--to", earlier)["rows"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--household", "h999"], "household 'h999' is not registered"),
        (["--household", "h002", "--from", "2025-13-01"], "--from must be a date"),
        (["--household", "h002", "--to", "2025-06-15T00:00"], "--to must be a date"),
        (["--household", "h002", "--from", "2025-06-16", "--to", "2025-06-15"], "is after"),
        (["--household", "h002", "--format", "xml"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    _build(url).store.close()
    try:
        code = main(["ledger", "statement", "--db", url, *extra])
    except SystemExit as exit_:  # argparse's own errors
        code = int(str(exit_.code))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_missing_database_is_not_created(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.db"
    assert main(["ledger", "statement", "--db", f"sqlite:///{path}", "--household", "h"]) == 2
    assert "no ledger database" in capsys.readouterr().err
    assert not path.exists()


def test_a_statement_that_does_not_reconcile_exits_1(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _build(db_url)
    # A signed, balanced posting that no settlement explains.
    stray = Posting.from_json(
        {
            "interval": T0,
            "agent": "h002",
            "cause": "correction",
            "lines": [
                {"account": "household/h002", "amount_micro": 1},
                {"account": "grid", "amount_micro": -1},
            ],
        }
    )
    data = json.dumps({"kind": "posting", **stray.to_json()}, sort_keys=True).encode()
    ledger._append([NewEntry("posting", T0, "h002", None, data)], T0 + 3 * STEP)
    with pytest.raises(StatementError, match="differs from the postings"):
        build_statement((json.loads(e.data) for e in ledger.store.iter_entries()), household="h002")
    ledger.store.close()
    assert main(["ledger", "statement", "--db", db_url, "--household", "h002"]) == 1
    assert "does not reconcile" in capsys.readouterr().err
