"""The log records its own checkpoints: each interval starts with a reference to the
signed checkpoint before it, and `ledger verify` holds the references to the log."""

from __future__ import annotations

import json

import pytest

from tests.ledgerkit import STEP, T0, TARIFF, House, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.ledger._merkle import root_hash
from wattmesh.ledger.entries import EntryKind, checkpoint_ref_entry, clearing_entry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.verify import verify_ledger


def _ledger(db_url: str) -> tuple[Ledger, list[House]]:
    houses = [House("h001"), House("h002")]
    ledger = new_ledger(db_url, SigningKey.generate(), houses)
    for n in range(3):
        ledger.open_interval(T0 + n * STEP, TARIFF)
        for house in houses:
            ledger.ingest(house.reading(T0 + n * STEP))
            ledger.ingest(house.order(T0 + n * STEP, Side.BUY, 100, 200_000))
        ledger.close_interval()
    return ledger, houses


def test_each_interval_starts_with_a_reference_to_the_checkpoint_before(db_url: str) -> None:
    ledger, _ = _ledger(db_url)
    try:
        entries = list(ledger.store.iter_entries())
        sizes = {cp.tree_size: cp.root for cp in ledger.store.checkpoints()}
        refs = [e for e in entries if e.kind == EntryKind.CHECKPOINT_REF]
        assert [e.interval for e in refs] == [T0, T0 + STEP, T0 + 2 * STEP]
        leaves = [e.data for e in entries]
        for ref in refs:
            obj = json.loads(ref.data)
            assert obj["tree_size"] == ref.idx  # it refers to everything before it
            assert bytes.fromhex(obj["root"]) == sizes[ref.idx] == root_hash(leaves[: ref.idx])
        assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    finally:
        ledger.store.close()


@pytest.mark.parametrize(
    ("forge", "problem"),
    [
        ("wrong_root", "does not name the log before it"),
        ("wrong_size", "does not name the log before it"),
        ("unsigned_size", "no signed checkpoint at size"),
    ],
)
def test_a_false_reference_signed_by_the_operator_fails_verify(
    db_url: str, forge: str, problem: str
) -> None:
    ledger, _ = _ledger(db_url)
    try:
        size, root, at = ledger.size, ledger.root, T0 + 3 * STEP
        if forge == "wrong_root":
            entries = [checkpoint_ref_entry(interval=at, tree_size=size, root=b"\x01" * 32)]
            bad_index = size
        elif forge == "wrong_size":
            entries = [checkpoint_ref_entry(interval=at, tree_size=size - 1, root=root)]
            bad_index = size
        else:  # a reference in the middle of an append: no checkpoint covers that size
            filler = clearing_entry(
                interval=at,
                tariff=TARIFF,
                price_micro_per_kwh=None,
                volume_wh=0,
                orders=0,
                rejected=0,
            )
            probe = ledger._tree.copy()
            probe.append(filler.data)
            entries = [
                filler,
                checkpoint_ref_entry(interval=at, tree_size=size + 1, root=probe.root()),
            ]
            bad_index = size + 1
        ledger._append(entries, at)  # the operator's own key signs the checkpoint after it
        report = verify_ledger(ledger.store, ledger.operator_key.verifying)
        assert not report.ok
        assert report.first_bad_entry == bad_index
        assert problem in (report.problem or "")
    finally:
        ledger.store.close()
