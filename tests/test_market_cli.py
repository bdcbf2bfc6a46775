"""``wattmesh market clear`` on real files: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_clearing import HAND_BOOK
from wattmesh.cli import main
from wattmesh.ledger.clearing import GridTariff, Order
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import MECHANISMS, Mechanism

GRID = {"retail_micro_per_kwh": 300_000, "feed_in_micro_per_kwh": 80_000}
ORDERS = [
    {"id": o.order_ref, "side": o.side.value, "quantity_wh": o.quantity_wh,
     "price_micro_per_kwh": o.price_micro_per_kwh}
    for o in HAND_BOOK
]  # fmt: skip


def _write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "book.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def _clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: Any, *args: str
) -> tuple[int, str, str]:
    rc = main(["market", "clear", *args, str(_write(tmp_path, doc))])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", sorted(MECHANISMS))
def test_every_mechanism_prints_what_the_library_clears(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {"grid": GRID, "orders": ORDERS, "network_fee_micro_per_kwh": 10_000}
    rc, out, err = _clear(tmp_path, capsys, doc, "--mechanism", name)
    assert (rc, err) == (0, "")
    got = json.loads(out)
    book = [
        Order(o.order_ref, o.side, o.quantity_wh, o.price_micro_per_kwh, o.order_ref)
        for o in HAND_BOOK
    ]
    expected = Mechanism(name, MarketRules(network_fee_micro_per_kwh=10_000)).clear(
        book, GridTariff(300_000, 80_000)
    )
    assert got["mechanism"] == name
    assert got["network_fee_micro_per_kwh"] == 10_000
    assert got["price_micro_per_kwh"] == expected.price_micro_per_kwh
    assert [
        (t["buy"], t["sell"], t["quantity_wh"], t["price_micro_per_kwh"]) for t in got["trades"]
    ] == [(f.buy_ref, f.sell_ref, f.quantity_wh, f.price_micro_per_kwh) for f in expected.fills]
    assert [(g["order"], g["quantity_wh"], g["price_micro_per_kwh"]) for g in got["grid"]] == [
        (g.order_ref, g.quantity_wh, g.price_micro_per_kwh) for g in expected.grid
    ]
    # Every order's Wh is traded or with the grid; money sums to zero.
    for o in ORDERS:
        local = sum(t["quantity_wh"] for t in got["trades"] if o["id"] in (t["buy"], t["sell"]))
        grid = sum(g["quantity_wh"] for g in got["grid"] if g["order"] == o["id"])
        assert local + grid == o["quantity_wh"]
    accounts = got["accounts_micro"]
    assert sum(accounts["orders"].values()) + accounts["grid"] + accounts["operator"] == 0


def test_uniform_hand_book_with_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _clear(tmp_path, capsys, {"grid": GRID, "orders": ORDERS, "k": "1/3"})
    got = json.loads(out)
    assert rc == 0
    assert (got["mechanism"], got["k"]) == ("uniform", "1/3")
    assert got["price_micro_per_kwh"] == 216_666  # 200_000 + 50_000 / 3
    assert got["volume_wh"] == 1300
    first = {"order": "A", "side": "buy", "quantity_wh": 200, "price_micro_per_kwh": 300_000}
    assert got["grid"][0] == {**first, "cost_micro": 60_000}


def _order(**changes: Any) -> dict[str, Any]:
    """A book whose first order is changed (or, with a None value, loses a field)."""
    first = {k: v for k, v in {**ORDERS[0], **changes}.items() if v is not None}
    return {"grid": GRID, "orders": [first, *ORDERS[1:]]}


def _top(**changes: Any) -> dict[str, Any]:
    return {"grid": GRID, "orders": [], **changes}


NAN = '{"grid": {"retail_micro_per_kwh": NaN, "feed_in_micro_per_kwh": 0}, "orders": []}'
HUGE = '{"grid": {"retail_micro_per_kwh": ' + "9" * 40 + ', "feed_in_micro_per_kwh": 0}}'
BAD = [
    ("not json", "{grid", "not JSON"),
    ("not an object", "[1, 2]", "book: must be an object"),
    ("float price", _order(price_micro_per_kwh=2.5e5), "non-integer number 250000.0"),
    ("float tariff", _top(grid={**GRID, "retail_micro_per_kwh": 0.3}), "non-integer number 0.3"),
    ("NaN", NAN, "invalid JSON constant NaN"),
    ("duplicate key", '{"grid": {}, "grid": {}, "orders": []}', "duplicate JSON key 'grid'"),
    (
        "negative quantity",
        _order(quantity_wh=-5),
        "orders[0].quantity_wh: must be in 0..10000000, got -5",
    ),
    (
        "bool quantity",
        _order(quantity_wh=True),
        "orders[0].quantity_wh: must be an integer, got true",
    ),
    ("string price", _order(price_micro_per_kwh="1"), 'must be an integer, got "1"'),
    ("huge integer", HUGE, "integer with 40 characters"),
    ("duplicate id", _order(id="B"), "orders[1].id: duplicate id 'B'"),
    ("empty id", _order(id=""), "orders[0].id: must be a string of 1..200 characters"),
    ("bad side", _order(side="hold"), 'orders[0].side: must be "buy" or "sell", got "hold"'),
    (
        "missing field",
        _order(price_micro_per_kwh=None),
        "orders[0]: missing field 'price_micro_per_kwh'",
    ),
    ("unknown field", _order(agent="h1"), "orders[0]: unknown field 'agent'"),
    ("unknown top field", _top(mode=1), "book: unknown field 'mode'"),
    ("no grid", {"orders": []}, "book: missing field 'grid'"),
    ("orders not a list", _top(orders={}), "orders: must be a list"),
    (
        "feed-in above retail",
        _top(grid={"retail_micro_per_kwh": 1, "feed_in_micro_per_kwh": 2}),
        "must not exceed",
    ),
    ("k above one", _top(k="3/2"), "k: must lie in [0, 1]"),
    ("k as a number", _top(k=1), 'k: must be a string "n/d"'),
    ("k zero denominator", _top(k="1/0"), "k: zero denominator"),
    (
        "negative fee",
        _top(network_fee_micro_per_kwh=-1),
        "book.network_fee_micro_per_kwh: must be in",
    ),
]


@pytest.mark.parametrize(("doc", "reason"), [(d, r) for _, d, r in BAD], ids=[i for i, _, _ in BAD])
def test_invalid_books_exit_2_with_one_line(
    doc: Any, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _clear(tmp_path, capsys, doc)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"wattmesh: error: {tmp_path / 'book.json'}: ")
    assert reason in err


def test_k_for_a_community_scheme_and_unknown_mechanisms_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _clear(
        tmp_path, capsys, {"grid": GRID, "orders": [], "k": "1/2"}, "--mechanism", "sdr"
    )
    assert rc == 2
    assert "k: applies to pay-as-bid and uniform, not sdr" in err
    rc, out, err = _clear(tmp_path, capsys, {"grid": GRID, "orders": []}, "--mechanism", "vickrey")
    assert (rc, out) == (2, "")
    assert (
        err
        == "wattmesh: error: unknown mechanism 'vickrey' (known: uniform, pay-as-bid, sdr, mmr)\n"
    )


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["market", "clear", str(tmp_path / "nope.json")])
    _, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith("wattmesh: error: cannot read ")
    assert err.count("\n") == 1


def test_the_installed_command_in_a_subprocess(tmp_path: Path) -> None:
    good = _write(tmp_path, {"grid": GRID, "orders": ORDERS})
    cmd = [sys.executable, "-m", "wattmesh.cli", "market", "clear", "--mechanism", "pay-as-bid"]
    done = subprocess.run(
        [*cmd, str(good)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["price_micro_per_kwh"] == 207_692
    bad = tmp_path / "bad.json"
    bad.write_text('{"grid": {"retail_micro_per_kwh": 1.0}}', encoding="utf-8")
    done = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().endswith("non-integer number 1.0 (amounts are integers)")
    done = subprocess.run(
        [*cmd[:-2], "--mechanism"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 2  # usage error from argparse
