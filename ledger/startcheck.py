"""What a restart relies on, checked before the ledger opens an interval.

:mod:`ledger._restore` rebuilds the state from the latest snapshot and the entries
after it (or, without a usable snapshot, from every entry). Each entry it reads is
checked here against its stored leaf hash, and the tree it ends with against the
latest signed checkpoint (same size, same root, the operator's signature), so a
restarted ledger never appends to a log whose recent part, or whose key entries,
were changed. The key entries a snapshot names are read from anywhere in the log:
each is proved, with the stored tree nodes, to be a leaf of the snapshot's tree,
whose root is that of the signed checkpoint at its size. The rest of the log (the
entries a snapshot spares the restart) is checked by :mod:`ledger.logcheck` in the
background.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from wattmesh.broker.errors import FailureError, LedgerError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.ledger._merkle import CompactRange, leaf_hash
from wattmesh.ledger.checkpoint import verify_checkpoint
from wattmesh.ledger.meta import META_OPERATOR_KEY, META_ORIGIN
from wattmesh.ledger.proofs import NodeRef, range_nodes
from wattmesh.ledger.store import Checkpoint, LedgerStore, LogEntry

__all__ = ["LogDamaged"]

_NODE_PREFIX = b"\x01"


class LogDamaged(LedgerError, FailureError):
    """The log does not verify: ``first_bad_entry`` (or the checkpoint after it) does
    not hold; nothing may be appended to it."""

    def __init__(self, first_bad_entry: int | None, problem: str) -> None:
        where = "" if first_bad_entry is None else f"entry {first_bad_entry}: "
        super().__init__(f"the log does not verify: {where}{problem}")
        self.first_bad_entry = first_bad_entry
        self.problem = problem

    def __reduce__(self) -> tuple[type[LogDamaged], tuple[int | None, str]]:
        # Picklable with its context (default pickling passes only the message).
        return (type(self), (self.first_bad_entry, self.problem))


class MissingNodes(LedgerError, FailureError, LookupError):
    """The stored tree lacks a node a proof needs (a ledger older than the stored tree)."""


def check_leaf(entry: LogEntry, expected_idx: int) -> None:
    """``entry`` is at the position the restore expects and its data hashes to its
    stored leaf hash."""
    if entry.idx != expected_idx:
        what = "missing" if entry.idx > expected_idx else "duplicated"
        raise LogDamaged(expected_idx, f"entry {expected_idx} is {what}")
    if leaf_hash(entry.data) != entry.leaf_hash:
        raise LogDamaged(entry.idx, "stored leaf hash does not match the entry's data")


def operator_key_of(store: LedgerStore) -> tuple[str, VerifyingKey] | None:
    """The log's origin and operator key, as its meta table records them."""
    origin, pem = store.get_meta(META_ORIGIN), store.get_meta(META_OPERATOR_KEY)
    if origin is None or pem is None:
        return None
    return origin, VerifyingKey.from_pem(pem.encode())


def check_signed(store: LedgerStore, checkpoint: Checkpoint) -> None:
    """``checkpoint`` carries the operator's signature over its size and root."""
    signer = operator_key_of(store)
    at = max(checkpoint.tree_size - 1, 0)
    if signer is None:
        raise LogDamaged(None, "ledger has no metadata")
    origin, key = signer
    if not verify_checkpoint(checkpoint, origin=origin, key=key):
        raise LogDamaged(at, f"checkpoint at size {checkpoint.tree_size} has a bad signature")


def check_latest_checkpoint(store: LedgerStore, tree: CompactRange) -> None:
    """``tree`` (the restored log) is the latest signed checkpoint's: every entry is
    covered, the root is the checkpoint's, and the operator signed it."""
    size = tree.size
    latest = store.latest_checkpoint()
    if latest is None:
        if size:
            raise LogDamaged(
                0, "entries after the last checkpoint are not covered by any signed checkpoint"
            )
        return
    if latest.tree_size < size:
        raise LogDamaged(
            latest.tree_size,
            "entries after the last checkpoint are not covered by any signed checkpoint",
        )
    if latest.tree_size > size:
        raise LogDamaged(
            size, f"checkpoint at size {latest.tree_size} covers entries that are missing"
        )
    if latest.root != tree.root():
        raise LogDamaged(max(size - 1, 0), f"checkpoint at size {size} does not match the log")
    check_signed(store, latest)


def check_in_tree(store: LedgerStore, entries: Sequence[LogEntry], tree: CompactRange) -> None:
    """Each of ``entries`` hashes to its stored leaf hash, and that leaf is where the tree
    of ``tree.size`` leaves with ``tree``'s peaks has it: one multi-leaf proof from the
    stored nodes (read in one batch; MissingNodes if the stored tree lacks one)."""
    peaks = dict(zip(range_nodes(0, tree.size), tree.peaks, strict=True)) if tree.size else {}
    values: dict[NodeRef, bytes] = {}
    for entry in entries:
        if entry.idx >= tree.size:
            raise LogDamaged(entry.idx, f"entry is not in the tree of {tree.size} leaves")
        if leaf_hash(entry.data) != entry.leaf_hash:
            raise LogDamaged(entry.idx, "stored leaf hash does not match the entry's data")
        values[(0, entry.idx)] = entry.leaf_hash
    siblings = _siblings(set(values), peaks)
    try:
        values.update(zip(siblings, store.node_hashes(siblings), strict=True))
    except LookupError as exc:
        raise MissingNodes(str(exc)) from exc
    level = set(values) - set(siblings)
    while level:
        up: set[NodeRef] = set()
        for lv, i in sorted(level):
            if (lv, i) in peaks:
                if values[(lv, i)] != peaks[(lv, i)]:
                    lo, hi = i << lv, (i + 1) << lv
                    first = min(e.idx for e in entries if lo <= e.idx < hi)
                    raise LogDamaged(
                        first, "entry is not the leaf the signed checkpoint's tree has there"
                    )
                continue
            parent = (lv + 1, i >> 1)
            if parent not in up:
                left, right = values[(lv, i & ~1)], values[(lv, i | 1)]
                values[parent] = _hash_node(left, right)
                up.add(parent)
        level = up


def _siblings(leaves: set[NodeRef], peaks: dict[NodeRef, bytes]) -> list[NodeRef]:
    """The nodes a proof of ``leaves`` up to their ``peaks`` must read, sorted."""
    needed: set[NodeRef] = set()
    level = leaves
    while level:
        up: set[NodeRef] = set()
        for lv, i in level:
            if (lv, i) in peaks:
                continue
            if (lv, i ^ 1) not in level:
                needed.add((lv, i ^ 1))
            up.add((lv + 1, i >> 1))
        level = up
    return sorted(needed)


def _hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()
