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

The verifiers (and the hashing) live in :mod:`broker.tlog`, where household agents can
import them, and are re-exported here unchanged. Proofs are built by the hash-source
algorithm of :mod:`ledger.proofs`, which the SQL store shares.

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

from wattmesh.broker.tlog import (
    EMPTY_ROOT_HASH,
    HASH_SIZE,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)
from wattmesh.ledger.proofs import (
    LeafListSource,
    consistency_proof_from_source,
    inclusion_proof_from_source,
)

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

_NODE_PREFIX: Final = b"\x01"
_sha256 = hashlib.sha256


# --------------------------------------------------------------------------- hashing


def _node(left: bytes, right: bytes) -> bytes:
    """Interior hash without argument checks, for internal hot paths."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _require_hash(value: object, what: str) -> None:
    if not _is_hash(value):
        raise ValueError(f"{what} must be a {HASH_SIZE}-byte hash")


def _require_hashes(hashes: Sequence[bytes]) -> None:
    if set(map(type, hashes)) <= {bytes} and set(map(len, hashes)) <= {HASH_SIZE}:
        return  # the common case, in C; else find the first that is not a hash
    for position, value in enumerate(hashes):
        if not _is_hash(value):
            raise ValueError(f"leaf hash at position {position} is not a {HASH_SIZE}-byte hash")


def _require_non_negative(value: int, what: str) -> None:
    if value < 0:
        raise ValueError(f"{what} must be non-negative, got {value}")


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
    """PATH(index, D[n]) of RFC 9162 2.1.3.1, by the shared hash-source algorithm."""
    return inclusion_proof_from_source(LeafListSource(hashes), index, len(hashes))


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
    """SUBPROOF(m, D[n], true) of RFC 9162 2.1.4.1, by the shared hash-source algorithm."""
    return consistency_proof_from_source(LeafListSource(hashes), old_size, len(hashes))


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

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """The hash of each perfect subtree, largest first (one per set bit of the size)."""
        return tuple(self._stack)

    @classmethod
    def from_peaks(cls, size: int, peaks: Sequence[bytes]) -> CompactRange:
        """The range of ``size`` leaves whose perfect subtrees have these hashes (as
        :attr:`peaks` gives them); ValueError when they cannot be."""
        if size < 0 or len(peaks) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {max(size, 0).bit_count()} peaks")
        for peak in peaks:
            _require_hash(peak, "peak")
        other = cls()
        other._size = size
        other._stack = list(peaks)
        return other

    def append(self, data: bytes) -> None:
        """Append a leaf given its raw data."""
        self._push(leaf_hash(data))

    def append_leaf_hash_nodes(self, h: bytes) -> list[tuple[int, int, bytes]]:
        """Append a leaf hash; return the subtrees it completes as ``(level, index, hash)``.

        Those are the complete aligned subtrees of level >= 1 whose last leaf is the new
        one, lowest level first: exactly the rows a stored tree gains (see
        :mod:`ledger.proofs`). Raises ValueError for a malformed hash.
        """
        _require_hash(h, "leaf hash")
        stack = self._stack
        carry = self._size
        level = 0
        completed: list[tuple[int, int, bytes]] = []
        while carry & 1:
            h = _node(stack.pop(), h)
            carry >>= 1
            level += 1
            completed.append((level, ((self._size + 1) >> level) - 1, h))
        stack.append(h)
        self._size += 1
        return completed

    def extend_nodes(self, hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Append many leaf hashes; return every subtree they complete, in order.

        The same as :meth:`append_leaf_hash_nodes` for each hash in turn, in one loop
        (the ledger appends thousands per interval). Raises ValueError for a malformed
        hash before changing anything.
        """
        _require_hashes(hashes)
        stack = self._stack
        size = self._size
        completed: list[tuple[int, int, bytes]] = []
        add = completed.append
        for leaf in hashes:
            h = leaf
            carry = size
            size += 1
            level = 0
            while carry & 1:
                h = _sha256(_NODE_PREFIX + stack.pop() + h).digest()
                carry >>= 1
                level += 1
                add((level, (size >> level) - 1, h))
            stack.append(h)
        self._size = size
        return completed

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
