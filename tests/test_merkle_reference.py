"""ledger.merkle against a reference written straight from the text of RFC 9162."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from wattmesh.ledger._merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

# ----------------------------------------------------------------- RFC reference


def _ref_mth(hashes: Sequence[bytes]) -> bytes:
    """MTH of RFC 9162 2.1.1, written recursively straight from the text."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _ref_mth(hashes[:k]) + _ref_mth(hashes[k:])).digest()


def _ref_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1."""
    n = len(hashes)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_ref_path(m, hashes[:k]), _ref_mth(hashes[k:])]
    return [*_ref_path(m - k, hashes[k:]), _ref_mth(hashes[:k])]


def _ref_subproof(m: int, hashes: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 2.1.4.1."""
    n = len(hashes)
    if m == n:
        return [] if whole else [_ref_mth(hashes)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_ref_subproof(m, hashes[:k], whole), _ref_mth(hashes[k:])]
    return [*_ref_subproof(m - k, hashes[k:], False), _ref_mth(hashes[:k])]


def test_every_root_and_proof_up_to_33_leaves_matches_rfc_reference() -> None:
    leaves = [b"leaf %d" % i for i in range(33)]
    hashes = [leaf_hash(data) for data in leaves]
    for size in range(len(leaves) + 1):
        prefix, prefix_hashes = leaves[:size], hashes[:size]
        root = _ref_mth(prefix_hashes)
        assert root_hash(prefix) == root
        for index in range(size):
            proof = inclusion_proof(prefix, index)
            assert proof == _ref_path(index, prefix_hashes)
            assert verify_inclusion(prefix[index], index, size, proof, root)
        for old_size in range(1, size + 1):
            proof = consistency_proof(prefix, old_size)
            assert proof == _ref_subproof(old_size, prefix_hashes, True)
            assert verify_consistency(old_size, size, _ref_mth(hashes[:old_size]), root, proof)


def test_compact_range_matches_reference_at_every_size_up_to_300() -> None:
    accumulator = CompactRange()
    hashes: list[bytes] = []
    for i in range(300):
        h = leaf_hash(i.to_bytes(4, "big"))
        hashes.append(h)
        accumulator.append_leaf_hash(h)
        assert accumulator.size == i + 1
        assert accumulator.root() == root_from_leaf_hashes(hashes)
