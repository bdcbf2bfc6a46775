"""ledger.merkle against the published vectors (tests/merklekit.py), and their corruptions.

The other files in the ``testdata`` folders of transparency-dev/merkle are corruptions of
the happy paths made by ``corruptInclusionProof`` / ``corruptConsistencyProof`` in
``proof/verify_test.go``; :func:`_inclusion_corruptions` and
:func:`_consistency_corruptions` rebuild the same probes (with Go's uint64 wrap-around
for ``index - 1``) and all must be rejected.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.merklekit import (
    CONSISTENCY_VECTORS,
    INCLUSION_VECTORS,
    LEAF_INPUTS,
    NODE_HASHES,
    ROOT_HASHES,
    SOME_HASH,
    flip,
)
from wattmesh.ledger._merkle import (
    EMPTY_ROOT_HASH,
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

_U64 = 1 << 64


def _vector_id(vector: tuple[int, int, list[bytes]]) -> str:
    return f"{vector[0]}-{vector[1]}"


# ----------------------------------------------------------------- published vectors


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT_HASH == ROOT_HASHES[0] == hashlib.sha256(b"").digest()
    assert root_hash([]) == ROOT_HASHES[0]
    assert root_from_leaf_hashes([]) == ROOT_HASHES[0]
    assert CompactRange().root() == ROOT_HASHES[0]


def test_leaf_hashes_match_published_node_hashes() -> None:
    assert [leaf_hash(data) for data in LEAF_INPUTS] == NODE_HASHES[0]


def test_node_hashes_match_published_levels() -> None:
    for level in range(1, len(NODE_HASHES)):
        below = NODE_HASHES[level - 1]
        computed = [node_hash(below[2 * i], below[2 * i + 1]) for i in range(len(below) // 2)]
        assert computed == NODE_HASHES[level]


@pytest.mark.parametrize("size", range(len(ROOT_HASHES)))
def test_roots_match_published(size: int) -> None:
    leaves = LEAF_INPUTS[:size]
    assert root_hash(leaves) == ROOT_HASHES[size]
    assert root_from_leaf_hashes([leaf_hash(data) for data in leaves]) == ROOT_HASHES[size]


def test_compact_range_matches_published_roots_at_every_size() -> None:
    accumulator = CompactRange()
    roots = [accumulator.root()]
    for data in LEAF_INPUTS:
        accumulator.append(data)
        roots.append(accumulator.root())
    assert roots == ROOT_HASHES
    assert accumulator.size == len(LEAF_INPUTS)


@pytest.mark.parametrize("vector", INCLUSION_VECTORS, ids=_vector_id)
def test_inclusion_proofs_match_published(vector: tuple[int, int, list[bytes]]) -> None:
    index, size, published = vector
    leaves = LEAF_INPUTS[:size]
    hashes = [leaf_hash(data) for data in leaves]
    assert inclusion_proof(leaves, index) == published
    assert inclusion_proof_from_hashes(hashes, index) == published
    assert verify_inclusion(leaves[index], index, size, published, ROOT_HASHES[size])
    assert verify_inclusion_hash(NODE_HASHES[0][index], index, size, published, ROOT_HASHES[size])


@pytest.mark.parametrize("vector", CONSISTENCY_VECTORS, ids=_vector_id)
def test_consistency_proofs_match_published(vector: tuple[int, int, list[bytes]]) -> None:
    old_size, new_size, published = vector
    leaves = LEAF_INPUTS[:new_size]
    hashes = [leaf_hash(data) for data in leaves]
    assert consistency_proof(leaves, old_size) == published
    assert consistency_proof_from_hashes(hashes, old_size) == published
    assert verify_consistency(
        old_size, new_size, ROOT_HASHES[old_size], ROOT_HASHES[new_size], published
    )


def _inclusion_corruptions(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """The probes of Go's corruptInclusionProof: (desc, index, size, leaf hash, proof, root)."""
    probes = [
        ("leafIndex - 1", (index - 1) % _U64, size, leaf, proof, root),
        ("leafIndex + 1", index + 1, size, leaf, proof, root),
        ("leafIndex ^ 2", index ^ 2, size, leaf, proof, root),
        ("treeSize * 2", index, size * 2, leaf, proof, root),
        ("treeSize / 2", index, size // 2, leaf, proof, root),
        ("wrong leaf", index, size, b"WrongLeaf", proof, root),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT_HASH),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], root),
        ("trailing root", index, size, leaf, [*proof, root], root),
        ("preceding garbage", index, size, leaf, [b"", *proof], root),
        ("preceding root", index, size, leaf, [root, *proof], root),
    ]
    for i in range(len(proof)):
        modified = [*proof[:i], flip(proof[i], 0, 0x08), *proof[i + 1 :]]
        probes.append((f"modified proof[{i}] bit 3", index, size, leaf, modified, root))
    if proof:
        probes.append(("removed component", index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        inserted = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted component", index, size, leaf, inserted, root))
    return probes


@pytest.mark.parametrize("vector", INCLUSION_VECTORS, ids=_vector_id)
def test_corrupted_published_inclusion_proofs_are_rejected(
    vector: tuple[int, int, list[bytes]],
) -> None:
    index, size, proof = vector
    probes = _inclusion_corruptions(index, size, proof, ROOT_HASHES[size], NODE_HASHES[0][index])
    assert len(probes) >= 12
    accepted = [
        desc for desc, i, s, leaf, p, root in probes if verify_inclusion_hash(leaf, i, s, p, root)
    ]
    assert accepted == []


def _consistency_corruptions(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """The probes of Go's corruptConsistencyProof: (desc, sizes, roots, proof)."""
    wrong = b"WrongRoot"
    probes = [
        ("size1 - 1", (old_size - 1) % _U64, new_size, old_root, new_root, proof),
        ("size1 + 1", old_size + 1, new_size, old_root, new_root, proof),
        ("size1 ^ 2", old_size ^ 2, new_size, old_root, new_root, proof),
        ("size2 * 2", old_size, new_size * 2, old_root, new_root, proof),
        ("size2 / 2", old_size, new_size // 2, old_root, new_root, proof),
        ("wrong root1", old_size, new_size, wrong, new_root, proof),
        ("wrong root2", old_size, new_size, old_root, wrong, proof),
        ("swapped roots", old_size, new_size, new_root, old_root, proof),
        ("empty proof", old_size, new_size, old_root, new_root, []),
        ("trailing garbage", old_size, new_size, old_root, new_root, [*proof, b""]),
        ("trailing root1", old_size, new_size, old_root, new_root, [*proof, old_root]),
        ("trailing root2", old_size, new_size, old_root, new_root, [*proof, new_root]),
        ("preceding garbage", old_size, new_size, old_root, new_root, [b"", *proof]),
        ("preceding root1", old_size, new_size, old_root, new_root, [old_root, *proof]),
        ("preceding root2", old_size, new_size, old_root, new_root, [new_root, *proof]),
        ("preceding proof[0]", old_size, new_size, old_root, new_root, [proof[0], *proof]),
        ("truncated proof", old_size, new_size, old_root, new_root, proof[:-1]),
    ]
    for i in range(len(proof)):
        modified = [*proof[:i], flip(proof[i], 0, 0x10), *proof[i + 1 :]]
        probes.append(
            (f"modified proof[{i}] bit 4", old_size, new_size, old_root, new_root, modified)
        )
    return probes


@pytest.mark.parametrize(
    "vector", [v for v in CONSISTENCY_VECTORS if v[2]], ids=_vector_id
)  # like Go, only non-trivial proofs are corrupted
def test_corrupted_published_consistency_proofs_are_rejected(
    vector: tuple[int, int, list[bytes]],
) -> None:
    old_size, new_size, proof = vector
    probes = _consistency_corruptions(
        old_size, new_size, ROOT_HASHES[old_size], ROOT_HASHES[new_size], proof
    )
    accepted = [desc for desc, m, n, r1, r2, p in probes if verify_consistency(m, n, r1, r2, p)]
    assert accepted == []
