"""The stored Merkle tree (SQLite and PostgreSQL): proofs from O(log n) stored nodes equal
the in-memory RFC 9162 proofs, the log tables are append-only in the database, and
``ledger verify`` checks the stored nodes and the proof paths."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ledgerkit import T0, House, drop_append_only_triggers, new_ledger
from tests.test_ledger import _run_two_intervals
from wattmesh.broker.keys import SigningKey
from wattmesh.ledger import verify
from wattmesh.ledger._merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
)
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.proofs import (
    LeafListSource,
    completed_nodes,
    consistency_proof_from_source,
    inclusion_proof_from_source,
    range_nodes,
    root_from_source,
)
from wattmesh.ledger.store import APPEND_ONLY_TABLES, Checkpoint, LedgerStore
from wattmesh.ledger.verify import verify_ledger

BATCHES = (1, 2, 5, 1, 8, 3, 13, 4)  # 37 leaves, appended in uneven transactions


def _leaves(n: int) -> list[bytes]:
    return [f'{{"kind":"clearing","n":{i}}}'.encode() for i in range(n)]


def _fill(store: LedgerStore) -> list[bytes]:
    """Append the leaves in BATCHES, with the nodes each batch completes."""
    leaves = _leaves(sum(BATCHES))
    tree, key, at = CompactRange(), SigningKey.generate(), 0
    for size in BATCHES:
        batch = leaves[at : at + size]
        nodes = [n for data in batch for n in tree.append_leaf_hash_nodes(leaf_hash(data))]
        entries = [NewEntry("clearing", T0, None, None, data) for data in batch]
        store.append(
            at, entries, Checkpoint(at + size, T0, tree.root(), key.kid, b"s"), nodes=nodes
        )
        at += size
    return leaves


def test_stored_proofs_equal_in_memory_proofs(db_url: str) -> None:
    store = LedgerStore(db_url)
    leaves = _fill(store)
    n = len(leaves)
    assert store.node_count() == n - n.bit_count()
    for size in range(1, n + 1):
        assert root_from_source(store, size) == root_hash(leaves[:size])
        for index in range(0, size, 3):
            got = inclusion_proof_from_source(store, index, size)
            assert got == inclusion_proof(leaves[:size], index)
        for old in range(1, size + 1, 4):
            got = consistency_proof_from_source(store, old, size)
            assert got == consistency_proof(leaves[:size], old)
    with pytest.raises(LookupError):
        inclusion_proof_from_source(store, 0, n + 2)
    store.close()


class _Counting:
    """A hash source that records how many nodes each call asks for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def node_hashes(self, nodes: Sequence[tuple[int, int]]) -> list[bytes]:
        self.asked.append(len(nodes))
        return [bytes(32)] * len(nodes)


def test_an_inclusion_proof_reads_only_logarithmically_many_nodes() -> None:
    size = 10_000_000
    for index in (0, 1, 4_999_999, 9_999_998, 9_999_999):
        source = _Counting()
        inclusion_proof_from_source(source, index, size)
        assert len(source.asked) == 1 and source.asked[0] <= 2 * size.bit_length()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_hash_source_algorithm_matches_rfc_proofs(size: int, data: st.DataObject) -> None:
    leaves = _leaves(size)
    source = LeafListSource([leaf_hash(x) for x in leaves])
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    assert inclusion_proof_from_source(source, index, size) == inclusion_proof(leaves, index)
    assert consistency_proof_from_source(source, old, size) == consistency_proof(leaves, old)
    assert root_from_source(source, size) == root_hash(leaves)


def test_compact_range_reports_exactly_the_completed_nodes() -> None:
    leaves = _leaves(70)
    tree = CompactRange()
    reported = [(lv, i) for d in leaves for lv, i, _h in tree.append_leaf_hash_nodes(leaf_hash(d))]
    assert reported == completed_nodes(0, 70)
    source = LeafListSource([leaf_hash(x) for x in leaves])
    tree = CompactRange()
    for d in leaves:
        for lv, i, h in tree.append_leaf_hash_nodes(leaf_hash(d)):
            assert source.node_hashes([(lv, i)]) == [h]


def test_range_nodes_refuses_unaligned_ranges() -> None:
    assert range_nodes(8, 15) == [(2, 2), (1, 6), (0, 14)]
    with pytest.raises(ValueError, match="aligned"):
        range_nodes(3, 7)


# --------------------------------------------------------------------------- append-only


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_log_tables_refuse_update_and_delete(db_url: str, table: str) -> None:
    store = LedgerStore(db_url)
    _fill(store)
    LedgerStore(db_url).close()  # opening again (re-installing triggers) is harmless
    column = {"log_entry": "kind", "checkpoint": "kid", "merkle_node": "level"}[table]
    value = 9 if table == "merkle_node" else "x"
    statements = [f"UPDATE {table} SET {column} = :v", f"DELETE FROM {table}"]
    if store.engine.dialect.name == "postgresql":
        statements.append(f"TRUNCATE {table}")
    for sql in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(sa.text(sql), {"v": value})
    with store.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() > 0
    store.close()


# --------------------------------------------------------------------------- verify


@pytest.fixture
def ledger(db_url: str) -> Ledger:
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    ledger = new_ledger(db_url, SigningKey.generate(), houses.values())
    _run_two_intervals(ledger, houses)
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    return ledger


def _admin(ledger: Ledger, sql: str, **params: object) -> None:
    """Rewrite rows as a database admin would: drop the append-only triggers first."""
    drop_append_only_triggers(ledger.store.engine)
    with ledger.store.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_verify_finds_a_changed_stored_node(ledger: Ledger) -> None:
    _admin(ledger, "UPDATE merkle_node SET hash=:h WHERE level=2 AND idx=1", h=b"\7" * 32)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok
    assert report.problem == "stored tree node (2, 1) does not match the entries"
    assert report.first_bad_entry == 7  # the entry that completes node (2, 1)
    ledger.store.close()


def test_verify_finds_a_missing_and_an_extra_node(ledger: Ledger) -> None:
    _admin(ledger, "DELETE FROM merkle_node WHERE level=1 AND idx=0")
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok and report.problem == "stored tree node (1, 0) is missing the entries"
    _admin(ledger, "INSERT INTO merkle_node (level, idx, hash) VALUES (1, 0, :h)", h=b"\0" * 32)
    _admin(ledger, "UPDATE merkle_node SET hash=:h WHERE level=1 AND idx=0", h=_node_1_0(ledger))
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    _admin(ledger, "INSERT INTO merkle_node (level, idx, hash) VALUES (1, 999, :h)", h=b"\0" * 32)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying)
    assert not report.ok and report.problem == "stored tree holds nodes beyond the log"
    ledger.store.close()


def _node_1_0(ledger: Ledger) -> bytes:
    hashes = ledger.store.node_hashes([(0, 0), (0, 1)])
    return LeafListSource(hashes).node_hashes([(1, 0)])[0]


def test_parallel_signature_checks_name_the_same_first_bad_entry(ledger: Ledger) -> None:
    orders = [e for e in ledger.store.iter_entries() if e.kind == "order"]
    target = orders[1]
    signed = target.data[target.data.index(b'"signed":') :]
    forged_sig = SigningKey.generate().sign(b"other")  # wrong signature, same layout
    import base64

    data = b'{"kind":"order","sig":"' + base64.b64encode(forged_sig) + b'",' + signed
    _admin(
        ledger,
        "UPDATE log_entry SET data=:d, leaf_hash=:h WHERE idx=:i",
        d=data,
        h=leaf_hash(data),
        i=target.idx,
    )
    inline = verify_ledger(ledger.store, ledger.operator_key.verifying, workers=1)
    parallel = verify_ledger(ledger.store, ledger.operator_key.verifying, workers=2)
    assert not inline.ok and not parallel.ok
    assert inline.first_bad_entry == parallel.first_bad_entry == target.idx
    assert parallel.problem == "signature check failed: signature does not verify"
    ledger.store.close()


def _move_a_posting(ledger: Ledger) -> int:
    """A posting's agent column no longer names its household: only the posting's row
    check sees that (the column is outside the leaf hash)."""
    posting = next(e for e in ledger.store.iter_entries() if e.kind == "posting")
    _admin(ledger, "UPDATE log_entry SET agent='h009' WHERE idx=:i", i=posting.idx)
    return posting.idx


@pytest.mark.parametrize("workers", [1, 2], ids=["inline", "2-workers"])
def test_a_proof_path_failure_is_reported_after_the_checks_before_it(
    ledger: Ledger, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proof paths are checked while the workers finish (no stored tree here fails
    them once its nodes all match, so the failure is injected): their failure or error
    is reported only when every check that comes before them holds."""

    def failing(walk: verify._Walk) -> None:
        raise verify._Bad(1, "stored tree gives another root at size 2")

    def erring(walk: verify._Walk) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(verify._Walk, "_check_proof_paths", failing)
    report = verify_ledger(ledger.store, ledger.operator_key.verifying, workers=workers)
    assert (report.ok, report.first_bad_entry) == (False, 1)
    assert report.problem == "stored tree gives another root at size 2"
    monkeypatch.setattr(verify._Walk, "_check_proof_paths", erring)
    with pytest.raises(RuntimeError, match="went away"):
        verify_ledger(ledger.store, ledger.operator_key.verifying, workers=workers)
    bad = _move_a_posting(ledger)  # a row check fails (on the workers, with 2)
    for check in (failing, erring):
        monkeypatch.setattr(verify._Walk, "_check_proof_paths", check)
        report = verify_ledger(ledger.store, ledger.operator_key.verifying, workers=workers)
        assert not report.ok and report.first_bad_entry == bad
        assert report.problem == "posting columns do not match its data"
    ledger.store.close()
