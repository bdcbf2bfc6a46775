"""Tests of ledger.merkle: published RFC 6962/9162 vectors, an RFC reference, and properties.

Published vectors come from transparency-dev/merkle (Apache-2.0):

* ``testonly/constants.go``: ``LeafInputs``, ``NodeHashes``, ``RootHashes``, ``EmptyRootHash``;
* ``proof/verify_test.go`` (``inclusionProofs``, ``consistencyProofs``; leaf numbers there
  are 1-based, here 0-based) which are also the ``happy-path.json`` files under
  ``testdata/inclusion/{0..4}`` and ``testdata/consistency/{0..4}``;
* the other files in those ``testdata`` folders are corruptions of the happy paths made
  by ``corruptInclusionProof`` / ``corruptConsistencyProof`` in ``proof/verify_test.go``;
  :func:`_inclusion_corruptions` and :func:`_consistency_corruptions` rebuild the same
  probes (with Go's uint64 wrap-around for ``index - 1``) and all must be rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.merkle import (
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


def _hx(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# testonly/constants.go: LeafInputs()
LEAF_INPUTS = _hx(
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)

# testonly/constants.go: NodeHashes() -- [level][index] of every perfect subtree.
NODE_HASHES = [
    _hx(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ),
    _hx(
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ),
    _hx(
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ),
    _hx("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# testonly/constants.go: RootHashes(), indexed by tree size 0..8.
ROOT_HASHES = _hx(
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)

# proof/verify_test.go: sha256SomeHash, used by the "random root"/"inserted component" probes.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")

# proof/verify_test.go inclusionProofs = testdata/inclusion/{0..4}/happy-path.json:
# (zero-based leaf index, tree size, proof).
INCLUSION_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (0, 1, []),
    (
        0,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hx(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hx(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# proof/verify_test.go consistencyProofs = testdata/consistency/{0..4}/happy-path.json:
# (old size, new size, proof).
CONSISTENCY_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        _hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hx(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

_U64 = 1 << 64


def _vector_id(vector: tuple[int, int, list[bytes]]) -> str:
    return f"{vector[0]}-{vector[1]}"


def _flip(value: bytes, position: int, mask: int = 0x08) -> bytes:
    mutable = bytearray(value)
    mutable[position] ^= mask
    return bytes(mutable)


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
        modified = [*proof[:i], _flip(proof[i], 0, 0x08), *proof[i + 1 :]]
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
        modified = [*proof[:i], _flip(proof[i], 0, 0x10), *proof[i + 1 :]]
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
    assert not verify_inclusion(leaf, index, size, proof, _flip(root, position, mask))
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        mutated = list(proof)
        mutated[element] = _flip(proof[element], position, mask)
        assert not verify_inclusion(leaf, index, size, mutated, root)
        assert not verify_inclusion(leaf, index, size, proof[:-1], root)
    wrong_leaf = b"\x00"
    if leaf:
        wrong_leaf = _flip(leaf, data.draw(st.integers(0, len(leaf) - 1), label="byte"), mask)
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
        old_size, new_size, _flip(old_root, position, mask), new_root, proof
    )
    assert not verify_consistency(
        old_size, new_size, old_root, _flip(new_root, position, mask), proof
    )
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        mutated = list(proof)
        mutated[element] = _flip(proof[element], position, mask)
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
