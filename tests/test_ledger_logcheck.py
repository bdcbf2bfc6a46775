"""A restarted ledger never appends to a log that does not verify (SQLite and PostgreSQL).

At start the restore checks what it reads (the entries after the snapshot, the key
entries the snapshot names, the signed checkpoint the tree ends at); the rest of the
log is checked in the background (:mod:`ledger.logcheck`). One byte is changed in a
log row as an admin who dropped the append-only triggers could; the entry's leaf hash
is left alone (``rehash=False``) or recomputed (``rehash=True``, only the tree and the
checkpoints then tell).
"""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa

from tests.ledgerkit import MARKET, STEP, T0, House, drop_append_only_triggers
from tests.test_ledger_snapshot import _market
from wattmesh.broker.keys import SigningKey
from wattmesh.ledger._merkle import leaf_hash
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.logcheck import Leadership, LogCheck, SnapshotDisagrees, check_log
from wattmesh.ledger.startcheck import LogDamaged
from wattmesh.ledger.store import SNAPSHOT_TABLE, LedgerStore


def _restart(db_url: str, operator: SigningKey) -> Ledger:
    store = LedgerStore(db_url)
    try:
        return Ledger(store, market_id=MARKET, operator_key=operator)
    except LogDamaged:
        store.close()
        raise


def _rows(db_url: str) -> tuple[int, int]:
    store = LedgerStore.read_only(db_url)
    try:
        return store.size(), len(store.checkpoints())
    finally:
        store.close()


def _change_byte(db_url: str, idx: int, *, rehash: bool) -> None:
    """One byte of entry ``idx``'s data changed (a digit of a number, so it still parses)."""
    store = LedgerStore(db_url)
    entry = store.entry(idx)
    assert entry is not None
    data = bytearray(entry.data)
    at = next(k for k in range(len(data) - 1, 0, -1) if chr(data[k]).isdigit())
    data[at] = ord("7") if data[at] != ord("7") else ord("3")
    drop_append_only_triggers(store.engine)
    with store.engine.begin() as conn:
        if rehash:
            conn.execute(
                sa.text("UPDATE log_entry SET data=:d, leaf_hash=:h WHERE idx=:i"),
                {"d": bytes(data), "h": leaf_hash(bytes(data)), "i": idx},
            )
        else:
            conn.execute(
                sa.text("UPDATE log_entry SET data=:d WHERE idx=:i"), {"d": bytes(data), "i": idx}
            )
    store.close()


def _first_of(db_url: str, kind: str, *, below: int | None = None) -> int:
    store = LedgerStore(db_url)
    try:
        for entry in store.iter_entries():
            if entry.kind == kind and (below is None or entry.idx < below):
                return entry.idx
    finally:
        store.close()
    raise AssertionError(f"no {kind} entry")


def _snapshot_size(db_url: str) -> int:
    store = LedgerStore(db_url)
    stored = store.latest_snapshot()
    store.close()
    assert stored is not None
    return stored[0]


def _market_with_late_key(db_url: str) -> tuple[SigningKey, int]:
    """Four intervals, then a household registered after the last close: its key entry
    is after the snapshot (the restore replays it)."""
    ledger, operator, _houses = _market(db_url, 4)
    late = House("h009")
    ledger.register({"h009": late.key.verifying}, interval=T0 + 4 * STEP)
    ledger.store.close()
    return operator, _last_entry(db_url)


def _last_entry(db_url: str) -> int:
    size, _ = _rows(db_url)
    return size - 1


@pytest.mark.parametrize("rehash", [False, True], ids=["leaf-hash-kept", "rehashed"])
def test_a_changed_entry_after_the_snapshot_stops_the_restore(db_url: str, rehash: bool) -> None:
    operator, late_key = _market_with_late_key(db_url)
    assert late_key >= _snapshot_size(db_url)
    _change_byte(db_url, late_key, rehash=rehash)
    before = _rows(db_url)
    with pytest.raises(LogDamaged) as caught:
        _restart(db_url, operator)
    if rehash:  # the tree no longer has the signed checkpoint's root
        assert "does not match the log" in caught.value.problem
    else:
        assert caught.value.first_bad_entry == late_key
        assert "leaf hash" in caught.value.problem
    assert _rows(db_url) == before


@pytest.mark.parametrize("rehash", [False, True], ids=["leaf-hash-kept", "rehashed"])
def test_a_changed_key_entry_the_snapshot_names_stops_the_restore(
    db_url: str, rehash: bool
) -> None:
    ledger, operator, _houses = _market(db_url, 4)
    ledger.store.close()
    key_entry = _first_of(db_url, "key")
    assert key_entry < _snapshot_size(db_url)  # read through the snapshot's key_entries
    _change_byte(db_url, key_entry, rehash=rehash)
    before = _rows(db_url)
    with pytest.raises(LogDamaged) as caught:
        _restart(db_url, operator)
    assert caught.value.first_bad_entry == key_entry, caught.value.problem
    assert _rows(db_url) == before


def test_a_changed_checkpoint_signature_stops_the_restore(db_url: str) -> None:
    ledger, operator, _houses = _market(db_url, 4)
    size = ledger.size
    ledger.store.close()
    store = LedgerStore(db_url)
    drop_append_only_triggers(store.engine)
    with store.engine.begin() as conn:
        sig = conn.execute(
            sa.text("SELECT signature FROM checkpoint WHERE tree_size=:s"), {"s": size}
        ).scalar_one()
        changed = bytes([sig[0] ^ 1]) + bytes(sig[1:])
        conn.execute(
            sa.text("UPDATE checkpoint SET signature=:g WHERE tree_size=:s"),
            {"g": changed, "s": size},
        )
    store.close()
    before = _rows(db_url)
    with pytest.raises(LogDamaged, match=f"checkpoint at size {size} has a bad signature"):
        _restart(db_url, operator)
    assert _rows(db_url) == before


@pytest.mark.parametrize("snapshot", ["kept", "garbage", "deleted"])
def test_a_changed_entry_before_the_snapshot(db_url: str, snapshot: str) -> None:
    """With its snapshot, the restore does not read an old settlement: the background
    check names it. Without a usable snapshot the restore replays it and stops."""
    ledger, operator, _houses = _market(db_url, 4)
    ledger.store.close()
    old = _first_of(db_url, "settlement")
    assert old < _snapshot_size(db_url)
    _change_byte(db_url, old, rehash=False)
    store = LedgerStore(db_url)
    with store.engine.begin() as conn:
        if snapshot == "garbage":
            conn.execute(sa.text(f"UPDATE {SNAPSHOT_TABLE} SET data = :d"), {"d": b"{not json"})
        elif snapshot == "deleted":
            conn.execute(sa.text(f"DELETE FROM {SNAPSHOT_TABLE}"))
    store.close()
    if snapshot == "kept":
        restarted = _restart(db_url, operator)  # what the restore reads holds
        size = restarted.size
        restarted.store.close()
        report = check_log(db_url, size, operator.verifying)
        assert (report.first_bad_entry, report.entries) == (old, old), report.problem
        assert "leaf hash" in str(report.problem)
    else:
        with pytest.raises(LogDamaged) as caught:
            _restart(db_url, operator)
        assert caught.value.first_bad_entry == old


def test_the_background_check_reads_only_up_to_its_size_and_gates(db_url: str) -> None:
    """Entries appended while it runs are not its business; a clean log passes, a damaged
    one sets the gate, which then refuses the lease check the operator makes."""
    ledger, operator, _houses = _market(db_url, 3)
    size = ledger.size
    ledger.register({"h009": House("h009").key.verifying}, interval=T0 + 3 * STEP)
    assert ledger.size > size
    report = check_log(db_url, size, operator.verifying)
    assert report.problem is None and report.entries == size
    ledger.store.close()

    class Lease:
        checks = 0

        def check(self) -> None:
            Lease.checks += 1

    async def watch(check: LogCheck) -> tuple[bool, Leadership]:
        stop = asyncio.Event()
        gate = check.gate(Lease())
        await asyncio.wait_for(check.watch(stop), 60)
        return stop.is_set(), gate

    store = LedgerStore(db_url)
    clean = LogCheck(db_url, size, operator.verifying)
    try:
        stopped, gate = asyncio.run(watch(clean))
        gate.check()  # passes
        assert not stopped and Lease.checks == 1
    finally:
        clean.close(store)
    _change_byte(db_url, _first_of(db_url, "posting"), rehash=True)
    damaged = LogCheck(db_url, size, operator.verifying)
    try:
        stopped, gate = asyncio.run(watch(damaged))
        assert stopped
        with pytest.raises(LogDamaged, match="background check"):
            gate.check()
        assert Lease.checks == 1  # not asked: nothing is written
    finally:
        damaged.close(store)
    store.close()


def _doctor_snapshot(db_url: str) -> tuple[int, bytes]:
    """The stored snapshot with one household's last seq lowered: its tree is still the
    signed checkpoint's, so a restart takes it (the snapshot table is not append-only)."""
    store = LedgerStore(db_url)
    stored = store.latest_snapshot()
    assert stored is not None
    size, data = stored
    obj = json.loads(data)
    agent = sorted(obj["last_seqs"])[0]
    obj["last_seqs"][agent] -= 1
    doctored = json.dumps(obj, separators=(",", ":")).encode()
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {SNAPSHOT_TABLE} SET data=:d WHERE tree_size=:s"),
            {"d": doctored, "s": size},
        )
    store.close()
    return size, doctored


def test_a_snapshot_that_disagrees_with_a_log_that_verifies_is_found_and_deleted(
    db_url: str,
) -> None:
    ledger, operator, _houses = _market(db_url, 4)
    ledger.store.close()
    reader = LedgerStore.read_only(db_url)
    intact = reader.latest_snapshot()
    reader.close()
    assert intact is not None
    assert check_log(db_url, intact[0], operator.verifying, snapshot=intact).problem is None
    size, doctored = _doctor_snapshot(db_url)
    restarted = _restart(db_url, operator)  # taken: its tree is the signed checkpoint's
    restarted.store.close()
    report = check_log(db_url, size, operator.verifying, snapshot=(size, doctored))
    assert report.snapshot_size == size and report.first_bad_entry is None
    assert report.problem is not None and "(last_seqs)" in report.problem
    unusable = (size, b"{not json")  # the restore replayed the log: nothing to compare
    assert check_log(db_url, size, operator.verifying, snapshot=unusable).problem is None

    async def watch(check: LogCheck) -> bool:
        stop = asyncio.Event()
        await asyncio.wait_for(check.watch(stop), 60)
        return stop.is_set()

    store = LedgerStore(db_url)
    check = LogCheck(db_url, size, operator.verifying, snapshot=(size, doctored))
    try:
        assert asyncio.run(watch(check))
        with pytest.raises(SnapshotDisagrees, match=r"disagrees .* \(last_seqs\): it is deleted"):
            check.check()
    finally:
        check.close(store)
    assert store.latest_snapshot() is None  # the next start replays the log
    store.close()
