"""``ledger verify`` notices every changed, removed or inserted row (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ledgerkit import House, drop_append_only_triggers, new_ledger
from tests.test_ledger import _run_two_intervals
from wattmesh.broker.keys import SigningKey
from wattmesh.ledger._merkle import leaf_hash
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.verify import verify_ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def built(db_url: str) -> tuple[str, Ledger]:
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    ledger = new_ledger(db_url, SigningKey.generate(), houses.values())
    _run_two_intervals(ledger, houses)
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    return db_url, ledger


def _entry(ledger: Ledger, kind: str) -> tuple[int, bytes]:
    for entry in ledger.store.iter_entries():
        if entry.kind == kind:
            return entry.idx, entry.data
    raise AssertionError(f"no {kind} entry")


def _exec(ledger: Ledger, sql: str, **params: object) -> None:
    with ledger.store.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _tamper(ledger: Ledger, sql: str, **params: object) -> None:
    """Run an UPDATE or DELETE on a log table: the database refuses it while the
    append-only triggers are in place, so drop them first, as an admin could."""
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        _exec(ledger, sql, **params)
    drop_append_only_triggers(ledger.store.engine)
    _exec(ledger, sql, **params)


def _set_data(ledger: Ledger, idx: int, data: bytes, *, rehash: bool) -> None:
    if rehash:
        _tamper(
            ledger,
            "UPDATE log_entry SET data=:d, leaf_hash=:h WHERE idx=:i",
            d=data,
            h=leaf_hash(data),
            i=idx,
        )
    else:
        _tamper(ledger, "UPDATE log_entry SET data=:d WHERE idx=:i", d=data, i=idx)


def _change_order_quantity(ledger: Ledger) -> int:
    idx, data = _entry(ledger, "order")
    obj = json.loads(data)
    obj["signed"]["body"]["quantity_wh"] += 1
    _set_data(ledger, idx, json.dumps(obj).encode(), rehash=True)
    return idx


def _change_bytes_without_rehash(ledger: Ledger) -> int:
    idx, data = _entry(ledger, "settlement")
    _set_data(ledger, idx, data.replace(b'"kind"', b'"kind" '), rehash=False)
    return idx


def _delete_row(ledger: Ledger) -> int:
    idx, _data = _entry(ledger, "reading")
    _tamper(ledger, "DELETE FROM log_entry WHERE idx=:i", i=idx)
    return idx


def _insert_row(ledger: Ledger) -> int:
    data = b'{"kind":"clearing"}'
    _exec(
        ledger,
        "INSERT INTO log_entry (idx, interval, kind, data, leaf_hash) "
        "VALUES (:i, 0, 'clearing', :d, :h)",
        i=ledger.size,
        d=data,
        h=leaf_hash(data),
    )
    return ledger.size


def _change_agent_column(ledger: Ledger) -> int:
    idx, _data = _entry(ledger, "order")
    _tamper(ledger, "UPDATE log_entry SET agent='h009' WHERE idx=:i", i=idx)
    return idx


def _swap_key(ledger: Ledger) -> int:
    idx, data = _entry(ledger, "key")
    obj = json.loads(data)
    intruder = SigningKey.generate().verifying
    import base64

    obj["public_key"] = base64.b64encode(intruder.der()).decode()
    obj["kid"] = intruder.kid
    _set_data(ledger, idx, json.dumps(obj).encode(), rehash=True)
    return idx


def _unbalance_posting(ledger: Ledger) -> int:
    """A posting whose lines no longer sum to zero (rehashed: only its checks see it)."""
    idx, data = _entry(ledger, "posting")
    obj = json.loads(data)
    obj["lines"][0]["amount_micro"] += 1
    _set_data(ledger, idx, json.dumps(obj).encode(), rehash=True)
    return idx


TAMPERS: dict[str, Callable[[Ledger], int]] = {
    "signed-order-changed": _change_order_quantity,
    "bytes-changed": _change_bytes_without_rehash,
    "row-deleted": _delete_row,
    "row-inserted": _insert_row,
    "column-changed": _change_agent_column,
    "posting-unbalanced": _unbalance_posting,
}


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "2-workers"])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_verify_names_the_first_bad_entry(
    built: tuple[str, Ledger], tamper: str, workers: int
) -> None:
    _url, ledger = built
    bad = TAMPERS[tamper](ledger)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying, workers=workers)
    assert not report.ok
    assert report.first_bad_entry == bad, report.problem
    ledger.store.close()


def test_a_swapped_key_breaks_the_checkpoint_that_covered_it(built: tuple[str, Ledger]) -> None:
    _url, ledger = built
    _swap_key(ledger)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok
    # The first message signed under the real key no longer verifies.
    first_reading, _ = _entry(ledger, "reading")
    assert report.first_bad_entry is not None and report.first_bad_entry <= first_reading
    ledger.store.close()


def test_a_changed_unsigned_entry_fails_its_checkpoint(built: tuple[str, Ledger]) -> None:
    _url, ledger = built
    idx, data = _entry(ledger, "trade")
    obj = json.loads(data)
    obj["quantity_wh"] += 1
    _set_data(ledger, idx, json.dumps(obj).encode(), rehash=True)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok and report.first_bad_entry is not None
    assert report.first_bad_entry >= idx
    assert "checkpoint" in (report.problem or "")
    ledger.store.close()


def test_a_changed_checkpoint_fails(built: tuple[str, Ledger]) -> None:
    _url, ledger = built
    _tamper(ledger, "UPDATE checkpoint SET root=:r WHERE tree_size=:s", r=b"\1" * 32, s=ledger.size)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok and "checkpoint" in (report.problem or "")
    ledger.store.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_cli_verify_exit_codes(built: tuple[str, Ledger]) -> None:
    url, ledger = built
    kid = ledger.operator_key.kid
    good = _cli("ledger", "verify", "--db", url, "--operator-key-id", kid)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith(f"ok: {ledger.size} entries")
    assert good.stdout.rstrip().endswith(f"replayed 2 closes, operator key {kid}")
    bad_idx = _change_order_quantity(ledger)
    ledger.store.close()
    bad = _cli("ledger", "verify", "--db", url, "--operator-key-id", kid)
    assert bad.returncode == 1
    assert f"entry {bad_idx}:" in bad.stderr
    assert "Traceback" not in bad.stderr
