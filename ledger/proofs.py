"""RFC 9162 roots and proofs computed from stored subtree hashes (a "hash source").

A tree of ``n`` leaves is stored as its *complete aligned subtrees*: node ``(level,
index)`` is the Merkle hash of the ``2**level`` leaves ``[index * 2**level, (index + 1)
* 2**level)``; level 0 holds the leaf hashes. Every subtree an RFC 9162 proof needs is
either such a node or (at the right edge of the tree) the RFC 9162 hash of a range that
splits into a few of them, largest first. So a proof needs O(log n) node reads, done in
one batch: :func:`inclusion_proof_from_source` and :func:`consistency_proof_from_source`
plan which nodes they need, ask the source once, and fold them into the proof.

The SQL store (:class:`ledger.store.StoreHashSource`) and in-memory leaf lists
(:class:`LeafListSource`) implement the same :class:`HashSource` protocol, so both use
one algorithm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from wattmesh.broker.tlog import EMPTY_ROOT_HASH

__all__ = ["consistency_proof_from_source", "inclusion_proof_from_source", "root_from_source"]

NodeRef = tuple[int, int]
"""``(level, index)`` of a complete aligned subtree of ``2**level`` leaves."""

_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE_PREFIX + left + right).digest()


class HashSource(Protocol):
    """Gives the hashes of complete aligned subtrees, in the order asked for."""

    def node_hashes(self, nodes: Sequence[NodeRef]) -> list[bytes]:
        """Hash of each ``(level, index)``; raise LookupError for one that is not stored."""
        ...


class LeafListSource:
    """A hash source over an in-memory list of leaf hashes (computes nodes on demand)."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._hashes = leaf_hashes

    def node_hashes(self, nodes: Sequence[NodeRef]) -> list[bytes]:
        return [self._perfect(level, index) for level, index in nodes]

    def _perfect(self, level: int, index: int) -> bytes:
        start, width = index << level, 1 << level
        if start + width > len(self._hashes):
            raise LookupError(f"node ({level}, {index}) is beyond the leaves")
        layer = list(self._hashes[start : start + width])
        while len(layer) > 1:
            layer = [_node(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
        return layer[0]


def _split_point(size: int) -> int:
    """Largest power of two strictly below ``size`` (leaves); requires ``size > 1``."""
    return 1 << ((size - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeRef]:
    """The complete aligned subtrees, largest first, whose RFC 9162 fold is ``[start, end)``.

    Valid for every range an RFC 9162 recursion produces (``start`` is a multiple of the
    largest power of two not above ``end - start``); raises ValueError otherwise.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative leaf range [{start}, {end})")
    nodes: list[NodeRef] = []
    while start < end:
        size = end - start
        width = size if size & (size - 1) == 0 else _split_point(size)
        if start % width:
            raise ValueError(f"leaf range [{start}, {end}) is not aligned")
        level = width.bit_length() - 1
        nodes.append((level, start >> level))
        start += width
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 hash of a range from its decomposition's hashes (largest first)."""
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = _node(h, result)
    return result


def _resolve(source: HashSource, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The RFC 9162 hash of each leaf range, reading every needed node in one batch."""
    plans = [range_nodes(start, end) for start, end in ranges]
    wanted = sorted({ref for plan in plans for ref in plan})
    if not wanted:
        return []
    got = source.node_hashes(wanted)
    if len(got) != len(wanted):
        raise LookupError("the hash source returned the wrong number of hashes")
    table = dict(zip(wanted, got, strict=True))
    return [_fold([table[ref] for ref in plan]) for plan in plans]


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"tree size must be non-negative, got {size}")


def root_from_source(source: HashSource, size: int) -> bytes:
    """RFC 9162 root of the first ``size`` leaves (``EMPTY_ROOT_HASH`` for 0)."""
    _check_size(size)
    if size == 0:
        return EMPTY_ROOT_HASH
    return _resolve(source, [(0, size)])[0]


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges of the audit path PATH(index, D[size]) (RFC 9162 2.1.3.1), leaf first."""
    if index < 0 or index >= size:
        raise ValueError(f"index {index} is outside a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split_point(end - start)
        if index < middle:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            start = middle
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges of SUBPROOF(old_size, D[new_size], true) (RFC 9162 2.1.4.1), bottom first."""
    if old_size <= 0:
        raise ValueError(f"old_size must be positive, got {old_size}")
    if old_size > new_size:
        raise ValueError(f"old_size {old_size} exceeds the tree size {new_size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, new_size
    remaining = old_size
    whole_old_tree = True
    while remaining != end - start:
        middle = start + _split_point(end - start)
        if remaining <= middle - start:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            remaining -= middle - start
            start = middle
            whole_old_tree = False
    if not whole_old_tree:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def inclusion_proof_from_source(source: HashSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves.

    Raises ValueError unless ``0 <= index < size``; LookupError if the source lacks a node.
    """
    return _resolve(source, inclusion_ranges(index, size))


def consistency_proof_from_source(source: HashSource, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 consistency proof from ``old_size`` to ``new_size`` leaves (empty if equal).

    Raises ValueError unless ``0 < old_size <= new_size``; LookupError for a missing node.
    """
    return _resolve(source, consistency_ranges(old_size, new_size))


def completed_nodes(old_size: int, new_size: int) -> list[NodeRef]:
    """Nodes of level >= 1 that become complete when the tree grows to ``new_size``.

    In order of completion (by last leaf, then level): exactly the rows to store.
    """
    refs: list[NodeRef] = []
    for size in range(old_size + 1, new_size + 1):
        level = 1
        while size % (1 << level) == 0:
            refs.append((level, (size >> level) - 1))
            level += 1
    return refs


def nodes_ending_in(first_leaf: int, end_leaf: int, levels: int) -> list[tuple[int, int, int]]:
    """Per level ``1..levels``, the index range ``[lo, hi)`` of nodes whose last leaf is in
    ``[first_leaf, end_leaf)``; empty ranges are left out. Returns ``(level, lo, hi)``."""
    out = []
    for level in range(1, levels + 1):
        lo = -(-(first_leaf + 1) // (1 << level)) - 1  # ceil((first+1) / 2^L) - 1
        hi = end_leaf >> level  # last leaf (i+1)*2^L - 1 < end  <=>  i < floor(end / 2^L)
        if hi > lo:
            out.append((level, lo, hi))
    return out
