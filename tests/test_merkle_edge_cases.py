"""ledger.merkle at the edges: single entries, empty trees, malformed proofs and hashes,
and arguments that make no sense.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from tests.merklekit import (
    CONSISTENCY_VECTORS,
    INCLUSION_VECTORS,
    LEAF_INPUTS,
    NODE_HASHES,
    ROOT_HASHES,
    SOME_HASH,
)
from wattmesh.ledger._merkle import (
    EMPTY_ROOT_HASH,
    HASH_SIZE,
    CompactRange,
    consistency_proof,
    consistency_proof_from_hashes,
    inclusion_proof,
    inclusion_proof_from_hashes,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    root_hash,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)

# ----------------------------------------------------------------- edge cases


def test_single_entry_inclusion() -> None:
    # proof/verify_test.go TestVerifyInclusionSingleEntry: root == leaf hash, empty proof.
    h = leaf_hash(b"data")
    assert verify_inclusion_hash(h, 0, 1, [], h)
    assert verify_inclusion(b"data", 0, 1, [], h)
    assert not verify_inclusion_hash(b"", 0, 1, [], h)
    assert not verify_inclusion_hash(h, 0, 1, [], b"")
    assert not verify_inclusion_hash(b"", 0, 1, [], b"")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_probes_with_bad_root_or_leaf(index: int, size: int) -> None:
    # proof/verify_test.go TestVerifyInclusion: none of these may verify.
    assert not verify_inclusion_hash(SOME_HASH, index, size, [], b"")
    assert not verify_inclusion_hash(b"", index, size, [], EMPTY_ROOT_HASH)
    assert not verify_inclusion_hash(SOME_HASH, index, size, [], EMPTY_ROOT_HASH)


def test_inclusion_index_at_or_beyond_size_is_false_not_error() -> None:
    proof = INCLUSION_VECTORS[1][2]
    assert not verify_inclusion(LEAF_INPUTS[0], 8, 8, proof, ROOT_HASHES[8])
    assert not verify_inclusion(LEAF_INPUTS[0], 2**64 - 1, 8, proof, ROOT_HASHES[8])


def test_inclusion_rejects_malformed_proof_elements() -> None:
    index, size, proof = INCLUSION_VECTORS[1]
    root = ROOT_HASHES[size]
    assert not verify_inclusion(LEAF_INPUTS[index], index, size, [*proof[:2], b"x" * 31], root)
    assert not verify_inclusion(
        LEAF_INPUTS[index], index, size, [*proof[:2], proof[2] + b"\0"], root
    )
    assert not verify_inclusion(LEAF_INPUTS[index], index, size, proof, root[:-1])


_R1 = hashlib.sha256(b"don't care 1").digest()
_R2 = hashlib.sha256(b"don't care 2").digest()


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof", "expected"),
    [
        # Adapted from proof/verify_test.go TestVerifyConsistency (32-byte stand-in roots).
        (1, 1, _R2, _R2, [], True),
        (5, 5, _R1, _R1, [], True),
        (1, 1, _R1, _R2, [], False),
        (1, 1, EMPTY_ROOT_HASH, _R2, [], False),
        (1, 1, EMPTY_ROOT_HASH, EMPTY_ROOT_HASH, [EMPTY_ROOT_HASH], False),
        (1, 0, _R1, _R2, [], False),
        (2, 1, _R1, _R2, [], False),
        (1, 2, _R1, _R2, [], False),
        # A proof from the empty tree never verifies (Go also refuses 0 -> n > 0).
        (0, 0, _R1, _R1, [], False),
        (0, 0, EMPTY_ROOT_HASH, EMPTY_ROOT_HASH, [], False),
        (0, 1, _R1, _R2, [], False),
        (0, 1, EMPTY_ROOT_HASH, EMPTY_ROOT_HASH, [EMPTY_ROOT_HASH], False),
        # Equal sizes with malformed (non-32-byte) but equal roots.
        (1, 1, b"root", b"root", [], False),
    ],
)
def test_consistency_edge_cases(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: list[bytes],
    expected: bool,
) -> None:
    assert verify_consistency(old_size, new_size, old_root, new_root, proof) is expected


def test_consistency_rejects_malformed_proof_elements() -> None:
    old_size, new_size, proof = CONSISTENCY_VECTORS[2]
    r1, r2 = ROOT_HASHES[old_size], ROOT_HASHES[new_size]
    assert not verify_consistency(old_size, new_size, r1, r2, [*proof[:2], proof[2][:16]])
    assert not verify_consistency(old_size, new_size, r1[:31], r2, proof)
    assert not verify_consistency(old_size, new_size, r1, r2 + b"\0", proof)


def test_consistency_proof_to_same_size_is_empty() -> None:
    assert consistency_proof(LEAF_INPUTS, len(LEAF_INPUTS)) == []
    assert verify_consistency(8, 8, ROOT_HASHES[8], ROOT_HASHES[8], [])


_SHORT = b"\x01" * (HASH_SIZE - 1)
_H0 = NODE_HASHES[0][0]


@pytest.mark.parametrize(
    "call",
    [
        lambda: inclusion_proof(LEAF_INPUTS, -1),
        lambda: inclusion_proof(LEAF_INPUTS, 8),
        lambda: inclusion_proof([], 0),
        lambda: inclusion_proof_from_hashes(NODE_HASHES[0], 8),
        lambda: inclusion_proof_from_hashes(NODE_HASHES[0], -1),
        lambda: inclusion_proof_from_hashes([_H0, _SHORT], 0),
        lambda: consistency_proof(LEAF_INPUTS, 0),
        lambda: consistency_proof(LEAF_INPUTS, -1),
        lambda: consistency_proof(LEAF_INPUTS, 9),
        lambda: consistency_proof([], 0),
        lambda: consistency_proof_from_hashes(NODE_HASHES[0], 0),
        lambda: consistency_proof_from_hashes(NODE_HASHES[0], 9),
        lambda: consistency_proof_from_hashes([_H0, _SHORT], 1),
        lambda: verify_inclusion(b"", -1, 8, [], ROOT_HASHES[8]),
        lambda: verify_inclusion(b"", 0, -1, [], ROOT_HASHES[8]),
        lambda: verify_inclusion_hash(_H0, -1, 1, [], _H0),
        lambda: verify_consistency(-1, 8, ROOT_HASHES[1], ROOT_HASHES[8], []),
        lambda: verify_consistency(1, -1, ROOT_HASHES[1], ROOT_HASHES[8], []),
        lambda: node_hash(_SHORT, _H0),
        lambda: node_hash(_H0, _H0 + b"\0"),
        lambda: root_from_leaf_hashes([_H0, _SHORT]),
        lambda: CompactRange().append_leaf_hash(_SHORT),
    ],
)
def test_nonsensical_arguments_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        call()


def test_compact_range_rejects_malformed_hash_without_changing_state() -> None:
    accumulator = CompactRange()
    accumulator.append(b"a")
    with pytest.raises(ValueError, match="32-byte"):
        accumulator.append_leaf_hash(b"")
    assert accumulator.size == 1
    assert accumulator.root() == root_hash([b"a"])
