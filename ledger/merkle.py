"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and verification.

The ledger commits to its entries with the Merkle tree hash of RFC 9162 section 2.1:

* leaf hash ``SHA-256(0x00 || data)``,
* interior node hash ``SHA-256(0x01 || left || right)``,
* the hash of the empty tree is ``SHA-256("")``,
* a tree of ``n > 1`` leaves splits at ``k``, the largest power of two below ``n``.

Units and conventions: every hash is a 32-byte SHA-256 digest (``bytes``); tree sizes and
leaf indices are counts of leaves (``int``, zero-based indices). Proofs are lists of
32-byte hashes ordered from the leaf level upwards, exactly as RFC 9162 sections 2.1.3
and 2.1.4 define them, so they interoperate with other RFC 6962/9162 implementations.

Functions whose argument is raw leaf data (``root_hash``, ``inclusion_proof``,
``verify_inclusion``, ``consistency_proof``) have hash-level twins working on
precomputed leaf hashes, for callers that keep only the hashes. :class:`CompactRange`
maintains the root of an append-only log incrementally in O(log n) per operation.

Builders raise :class:`ValueError` for nonsensical arguments (negative or out-of-range
sizes and indices, malformed hashes). Verifiers raise :class:`ValueError` only for
negative sizes or indices; any proof that does not verify -- wrong length, malformed
hash, index beyond the tree, mismatching root -- makes them return ``False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT_HASH",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "consistency_proof_from_hashes",
    "inclusion_proof",
    "inclusion_proof_from_hashes",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_hash",
]

HASH_SIZE: Final = 32
"""Length in bytes of every hash: a SHA-256 digest."""

EMPTY_ROOT_HASH: Final = hashlib.sha256(b"").digest()
"""Root hash of the tree with no leaves: SHA-256 of the empty string."""

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_sha256 = hashlib.sha256


# --------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    """Return the 32-byte leaf hash ``SHA-256(0x00 || data)`` of raw leaf data."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the 32-byte interior hash ``SHA-256(0x01 || left || right)``.

    Raises ValueError unless both children are 32-byte hashes.
    """
    _require_hash(left, "left")
    _require_hash(right, "right")
    return _node(left, right)


def _node(left: bytes, right: bytes) -> bytes:
    """Interior hash without argument checks, for internal hot paths."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _require_hash(value: object, what: str) -> None:
    if not _is_hash(value):
        raise ValueError(f"{what} must be a {HASH_SIZE}-byte hash")


def _require_hashes(hashes: Sequence[bytes]) -> None:
    for position, value in enumerate(hashes):
        if not _is_hash(value):
            raise ValueError(f"leaf hash at position {position} is not a {HASH_SIZE}-byte hash")


def _require_non_negative(value: int, what: str) -> None:
    if value < 0:
        raise ValueError(f"{what} must be non-negative, got {value}")


def _split_point(size: int) -> int:
    """Largest power of two strictly below ``size`` (leaves); requires ``size > 1``."""
    return 1 << ((size - 1).bit_length() - 1)


def _subtree_root(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """Merkle tree hash of the leaf hashes ``hashes[start:end]``.

    Pairs neighbours level by level and promotes an unpaired last node unchanged, which
    yields exactly the RFC 9162 tree (split at the largest power of two below n).
    """
    if start == end:
        return EMPTY_ROOT_HASH
    level = list(hashes[start:end])
    while len(level) > 1:
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


# --------------------------------------------------------------------------- roots


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 root of a tree whose leaves have the given 32-byte leaf hashes.

    Raises ValueError if any element is not a 32-byte hash.
    """
    _require_hashes(hashes)
    return _subtree_root(hashes, 0, len(hashes))


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 root of a tree over raw leaf data (``EMPTY_ROOT_HASH`` if empty)."""
    hashes = [leaf_hash(data) for data in leaves]
    return _subtree_root(hashes, 0, len(hashes))


# --------------------------------------------------------------------------- inclusion


def inclusion_proof_from_hashes(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the RFC 9162 inclusion proof (audit path) of leaf ``index`` over leaf hashes.

    The proof lists sibling subtree hashes from the leaf level up to the root. Raises
    ValueError unless ``0 <= index < len(hashes)`` and every element is a 32-byte hash.
    """
    size = len(hashes)
    _require_non_negative(index, "index")
    if index >= size:
        raise ValueError(f"index {index} is outside a tree of {size} leaves")
    _require_hashes(hashes)
    return _inclusion_path(hashes, index)


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return the RFC 9162 inclusion proof of leaf ``index`` in a tree over raw leaf data.

    Raises ValueError unless ``0 <= index < len(leaves)``.
    """
    _require_non_negative(index, "index")
    if index >= len(leaves):
        raise ValueError(f"index {index} is outside a tree of {len(leaves)} leaves")
    return _inclusion_path([leaf_hash(data) for data in leaves], index)


def _inclusion_path(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 2.1.3.1, walked from the root down, then reversed."""
    path: list[bytes] = []
    start, end = 0, len(hashes)
    while end - start > 1:
        middle = start + _split_point(end - start)
        if index < middle:
            path.append(_subtree_root(hashes, middle, end))
            end = middle
        else:
            path.append(_subtree_root(hashes, start, middle))
            start = middle
    path.reverse()
    return path


def verify_inclusion_hash(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an RFC 9162 inclusion proof for a 32-byte leaf hash (algorithm 2.1.3.2).

    ``index`` is the zero-based leaf index and ``size`` the tree size in leaves. Returns
    False for any proof that does not verify (including ``index >= size``, wrong proof
    length, malformed hashes). Raises ValueError for a negative index or size.
    """
    _require_non_negative(index, "index")
    _require_non_negative(size, "size")
    if index >= size or not _is_hash(leaf_hash) or not _is_hash(root):
        return False
    fn, sn = index, size - 1
    result = leaf_hash
    for sibling in proof:
        if sn == 0 or not _is_hash(sibling):
            return False
        if fn & 1 or fn == sn:
            result = _node(sibling, result)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            result = _node(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an RFC 9162 inclusion proof for raw leaf data; see :func:`verify_inclusion_hash`."""
    return verify_inclusion_hash(leaf_hash(leaf), index, size, proof, root)


# --------------------------------------------------------------------------- consistency


def consistency_proof_from_hashes(hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof from the first ``old_size`` leaves to all of them.

    Raises ValueError unless ``0 < old_size <= len(hashes)`` and every element is a
    32-byte hash. The proof for ``old_size == len(hashes)`` is empty.
    """
    _check_old_size(old_size, len(hashes))
    _require_hashes(hashes)
    return _consistency_path(hashes, old_size)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the RFC 9162 consistency proof from the first ``old_size`` raw leaves to all.

    Raises ValueError unless ``0 < old_size <= len(leaves)``.
    """
    _check_old_size(old_size, len(leaves))
    return _consistency_path([leaf_hash(data) for data in leaves], old_size)


def _check_old_size(old_size: int, new_size: int) -> None:
    if old_size <= 0:
        raise ValueError(f"old_size must be positive, got {old_size}")
    if old_size > new_size:
        raise ValueError(f"old_size {old_size} exceeds the tree size {new_size}")


def _consistency_path(hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """SUBPROOF(m, D[n], true) of RFC 9162 2.1.4.1, walked from the root down, then reversed."""
    path: list[bytes] = []
    start, end = 0, len(hashes)
    remaining = old_size  # m, relative to ``start``
    whole_old_tree = True  # the flag b: this subtree is the whole old tree
    while remaining != end - start:
        middle = start + _split_point(end - start)
        if remaining <= middle - start:
            path.append(_subtree_root(hashes, middle, end))
            end = middle
        else:
            path.append(_subtree_root(hashes, start, middle))
            remaining -= middle - start
            start = middle
            whole_old_tree = False
    if not whole_old_tree:
        path.append(_subtree_root(hashes, start, end))
    path.reverse()
    return path


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check an RFC 9162 consistency proof between two tree sizes (algorithm 2.1.4.2).

    Sizes are in leaves, roots are 32-byte hashes. Returns True only if ``proof`` shows
    that the tree of ``new_size`` leaves with ``new_root`` extends the tree of
    ``old_size`` leaves with ``old_root``. ``old_size == new_size > 0`` verifies with an
    empty proof and equal roots. A proof from the empty tree (``old_size == 0``) is
    meaningless and never verifies; neither does ``old_size > new_size``. Raises
    ValueError only for a negative size.
    """
    _require_non_negative(old_size, "old_size")
    _require_non_negative(new_size, "new_size")
    well_formed = (
        0 < old_size <= new_size
        and _is_hash(old_root)
        and _is_hash(new_root)
        and all(_is_hash(node) for node in proof)
    )
    if not well_formed:
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    return len(proof) > 0 and _chain_consistency(old_size, new_size, old_root, new_root, proof)


def _chain_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Steps 2-7 of RFC 9162 2.1.4.2 for well-formed input with ``0 < old_size < new_size``."""
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a perfect subtree of the new one
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_result = new_result = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            old_result = _node(node, old_result)
            new_result = _node(node, new_result)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            new_result = _node(new_result, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and old_result == old_root and new_result == new_root


# --------------------------------------------------------------------------- accumulator


class CompactRange:
    """Incremental RFC 9162 root of an append-only sequence of leaves.

    Keeps one hash per perfect subtree of the current tree (one per set bit of the size,
    largest first), so appending costs amortised O(1) hashes and :meth:`root` costs
    O(log n) hashes; memory is O(log n).
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def copy(self) -> CompactRange:
        """An independent copy (to compute a prospective root without changing this one)."""
        other = CompactRange()
        other._size = self._size
        other._stack = list(self._stack)
        return other

    def append_leaf_hash(self, h: bytes) -> None:
        """Append a leaf given its 32-byte leaf hash; raises ValueError for a malformed hash."""
        _require_hash(h, "leaf hash")
        self._push(h)

    def append(self, data: bytes) -> None:
        """Append a leaf given its raw data."""
        self._push(leaf_hash(data))

    def _push(self, h: bytes) -> None:
        stack = self._stack
        carry = self._size
        while carry & 1:  # merge equal-sized perfect subtrees, like binary addition
            h = _node(stack.pop(), h)
            carry >>= 1
        stack.append(h)
        self._size += 1

    def root(self) -> bytes:
        """Return the RFC 9162 root hash of all leaves appended so far (32 bytes)."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT_HASH
        result = stack[-1]
        for h in reversed(stack[:-1]):
            result = _node(h, result)
        return result
