"""ledger.merkle properties: proofs verify, and every mutation of a proof, root or leaf fails."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.merklekit import flip
from wattmesh.ledger._merkle import (
    HASH_SIZE,
    CompactRange,
    consistency_proof,
    consistency_proof_from_hashes,
    inclusion_proof,
    inclusion_proof_from_hashes,
    leaf_hash,
    root_from_leaf_hashes,
    root_hash,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)

# ----------------------------------------------------------------- properties

# Distinct leaves: with duplicates a proof can legitimately verify at another index.
_leaves = st.lists(st.binary(max_size=12), min_size=1, max_size=48, unique=True)


@given(leaves=_leaves, data=st.data())
def test_inclusion_proofs_verify_and_every_mutation_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    root = root_hash(leaves)
    proof = inclusion_proof(leaves, index)
    leaf = leaves[index]
    assert verify_inclusion(leaf, index, size, proof, root)

    mask = data.draw(st.integers(1, 255), label="mask")
    position = data.draw(st.integers(0, HASH_SIZE - 1), label="position")
    assert not verify_inclusion(leaf, index, size, proof, flip(root, position, mask))
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        mutated = list(proof)
        mutated[element] = flip(proof[element], position, mask)
        assert not verify_inclusion(leaf, index, size, mutated, root)
        assert not verify_inclusion(leaf, index, size, proof[:-1], root)
    wrong_leaf = b"\x00"
    if leaf:
        wrong_leaf = flip(leaf, data.draw(st.integers(0, len(leaf) - 1), label="byte"), mask)
    assert not verify_inclusion(wrong_leaf, index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, [*proof, root], root)
    other = data.draw(st.integers(0, 2 * size).filter(lambda i: i != index), label="other")
    assert not verify_inclusion(leaf, other, size, proof, root)


@given(leaves=_leaves, data=st.data())
def test_consistency_proofs_verify_and_every_mutation_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    new_size = len(leaves)
    old_size = data.draw(st.integers(1, new_size), label="old_size")
    old_root, new_root = root_hash(leaves[:old_size]), root_hash(leaves)
    proof = consistency_proof(leaves, old_size)
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)

    mask = data.draw(st.integers(1, 255), label="mask")
    position = data.draw(st.integers(0, HASH_SIZE - 1), label="position")
    assert not verify_consistency(
        old_size, new_size, flip(old_root, position, mask), new_root, proof
    )
    assert not verify_consistency(
        old_size, new_size, old_root, flip(new_root, position, mask), proof
    )
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        mutated = list(proof)
        mutated[element] = flip(proof[element], position, mask)
        assert not verify_consistency(old_size, new_size, old_root, new_root, mutated)
        assert not verify_consistency(old_size, new_size, old_root, new_root, proof[:-1])
    assert not verify_consistency(old_size, new_size, old_root, new_root, [*proof, new_root])
    other = data.draw(st.integers(0, new_size + 2).filter(lambda m: m != old_size), label="other")
    assert not verify_consistency(other, new_size, old_root, new_root, proof)


@given(leaves=st.lists(st.binary(max_size=8), max_size=80))
def test_compact_range_root_equals_root_hash_at_every_size(leaves: list[bytes]) -> None:
    accumulator = CompactRange()
    assert accumulator.root() == root_hash([])
    for size, data in enumerate(leaves, start=1):
        accumulator.append(data)
        assert accumulator.size == size
        assert accumulator.root() == root_hash(leaves[:size])


@given(leaves=st.lists(st.binary(max_size=8), min_size=1, max_size=48), data=st.data())
def test_hash_level_helpers_agree_with_raw_ones(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    old_size = data.draw(st.integers(1, size), label="old_size")
    root = root_hash(leaves)
    assert root_from_leaf_hashes(hashes) == root
    proof = inclusion_proof_from_hashes(hashes, index)
    assert proof == inclusion_proof(leaves, index)
    assert verify_inclusion_hash(hashes[index], index, size, proof, root)
    assert consistency_proof_from_hashes(hashes, old_size) == consistency_proof(leaves, old_size)
