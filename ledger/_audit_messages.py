"""What the operator publishes for households to audit the log after each interval.

:func:`audit_messages` turns one :class:`~ledger.ledger.IntervalOutcome` into the
signed checkpoint body (note plus RFC 9162 consistency proof from the tree size before
the interval) and one or more receipt bodies per household (its entries of the
interval with inclusion proofs against the new checkpoint). Proofs come from the
store's subtree hashes through :mod:`ledger.proofs`; the nodes the interval wrote are
read in one query, the few older ones (the left edge of the tree) once and cached.
Receipts are not log entries: publishing them changes nothing in the log.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from wattmesh.broker.audit_bodies import (
    MAX_RECEIPT_ENTRIES,
    CheckpointNoteBody,
    ReceiptBody,
    ReceiptEntry,
)
from wattmesh.broker.tlog import leaf_hash
from wattmesh.ledger.checkpoint import checkpoint_note
from wattmesh.ledger.entries import EntryKind, NewEntry
from wattmesh.ledger.proofs import (
    HashSource,
    NodeRef,
    consistency_proof_from_source,
    inclusion_proof_from_source,
)
from wattmesh.ledger.store import Checkpoint, LedgerStore


class IntervalSource:
    """A hash source over the store that knows the nodes one append wrote.

    Nodes of level >= 1 completed by leaves ``[first, size)`` are read in one query,
    the new leaf hashes are computed from ``entries``; any other node (older subtrees)
    is read from the store on first use and then cached.
    """

    def __init__(self, store: LedgerStore, first: int, entries: Sequence[NewEntry]) -> None:
        self._store = store
        end = first + len(entries)
        self._known: dict[NodeRef, bytes] = store.nodes_completed_in(first, end) if entries else {}
        for offset, entry in enumerate(entries):
            self._known[(0, first + offset)] = leaf_hash(entry.data)

    def node_hashes(self, nodes: Sequence[NodeRef]) -> list[bytes]:
        missing = sorted({ref for ref in nodes if ref not in self._known})
        if missing:
            self._known.update(zip(missing, self._store.node_hashes(missing), strict=True))
        return [self._known[ref] for ref in nodes]


def household_entries(first: int, entries: Sequence[NewEntry]) -> dict[str, list[int]]:
    """Log indices per household: entries naming it (readings, orders, settlements,
    corrections, flags, postings) and trades it is buyer or seller of, in log order."""
    out: dict[str, list[int]] = {}
    for offset, entry in enumerate(entries):
        if entry.kind == EntryKind.TRADE:
            obj = json.loads(entry.data)
            parties = sorted({str(obj["buyer"]), str(obj["seller"])})
        elif entry.agent is not None and entry.kind != EntryKind.KEY:
            parties = [entry.agent]
        else:
            continue
        for agent in parties:
            out.setdefault(agent, []).append(first + offset)
    return out


@dataclass(frozen=True)
class AuditMessages:
    """One interval's checkpoint body and the receipts per household (in parts)."""

    checkpoint: CheckpointNoteBody
    receipts: dict[str, tuple[ReceiptBody, ...]]


def checkpoint_body(
    source: HashSource, checkpoint: Checkpoint, *, origin: str, old_size: int
) -> CheckpointNoteBody:
    """The signed note of ``checkpoint`` with a consistency proof from ``old_size``
    (0, or equal to the checkpoint's size: no proof)."""
    size = checkpoint.tree_size
    proof: list[bytes] = []
    if 0 < old_size < size:
        proof = consistency_proof_from_source(source, old_size, size)
    return CheckpointNoteBody(
        checkpoint_note(checkpoint, origin=origin), old_size if old_size < size else 0, tuple(proof)
    )


def audit_messages(
    store: LedgerStore,
    checkpoint: Checkpoint,
    *,
    origin: str,
    first: int,
    entries: Sequence[NewEntry],
    households: Sequence[str],
) -> AuditMessages:
    """Checkpoint and receipts for the append of ``entries`` at ``first`` (which
    ``checkpoint`` covers); receipts only for the registered ``households``."""
    source = IntervalSource(store, first, entries)
    size = checkpoint.tree_size
    registered = set(households)
    receipts: dict[str, tuple[ReceiptBody, ...]] = {}
    for agent, indices in sorted(household_entries(first, entries).items()):
        if agent not in registered:
            continue
        items = [
            ReceiptEntry(
                i, entries[i - first].data, tuple(inclusion_proof_from_source(source, i, size))
            )
            for i in indices
        ]
        chunks = [
            tuple(items[k : k + MAX_RECEIPT_ENTRIES])
            for k in range(0, len(items), MAX_RECEIPT_ENTRIES)
        ]
        receipts[agent] = tuple(
            ReceiptBody(agent, size, n + 1, len(chunks), chunk) for n, chunk in enumerate(chunks)
        )
    body = checkpoint_body(source, checkpoint, origin=origin, old_size=first)
    return AuditMessages(body, receipts)
