"""Rebuilding the ledger's in-memory state after a restart.

From the latest usable snapshot (:mod:`ledger._snapshot`), then every log entry after
it, in order.

Without a usable snapshot the whole log is replayed, entry by entry, exactly as the
ledger applied it: key entries to the key ring, each household message's seq, readings
and settlements to the meter state (:func:`ledger._booking.replay`), the last clearing's
tariff and trades. The store is the only I/O.

Nothing is restored from a log that does not hold (:mod:`ledger.startcheck`,
:class:`LogDamaged`): every entry read must hash to its stored leaf hash and sit at its
position, the key entries a snapshot names must be leaves of the snapshot's tree, the
checkpoint at the snapshot's size must carry the operator's signature, and the tree
the restore ends with must be the latest signed checkpoint's. A snapshot that cannot be
used (another version, malformed, its tree not the checkpoint's, naming no key entry)
is derived state: it is ignored and the whole log replayed, as before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from wattmesh.broker.messages import ReadingBody, SignedMessage, decode_message
from wattmesh.ledger._booking import replay
from wattmesh.ledger._merkle import CompactRange
from wattmesh.ledger._snapshot import LedgerState, SnapshotError, decode_snapshot
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.keyring import KEY_KINDS, KeyLogError, KeyRing
from wattmesh.ledger.metering import Metering, MeteringConfig
from wattmesh.ledger.settlement import Registers
from wattmesh.ledger.startcheck import (
    LogDamaged,
    MissingNodes,
    check_in_tree,
    check_latest_checkpoint,
    check_leaf,
    check_signed,
)
from wattmesh.ledger.store import LedgerStore

__all__ = [
    "LogDamaged",
    "check_tail",
    "empty_state",
    "logged_message",
    "registers_of",
    "replay_state",
    "restore_state",
    "snapshot_state",
]

_LOG = logging.getLogger(__name__)


def restore_state(store: LedgerStore, metering: MeteringConfig | None) -> LedgerState:
    """The state after every entry of ``store``'s log; LogDamaged when what it reads
    does not verify (see the module doc)."""
    start, state = 0, empty_state(metering)
    stored = store.latest_snapshot()
    if stored is not None:
        try:
            state, start = snapshot_state(store, metering, stored), stored[0]
        except SnapshotError as exc:
            _LOG.warning(
                "state snapshot at %d not used (%s): replaying the whole log", stored[0], exc
            )
    before = state.tree.copy()
    try:
        restored = _replay(store, state, start, None)
    except LogDamaged:
        raise
    except Exception:  # an entry that does not apply: is the log what was signed?
        check_tail(store, before, start)  # LogDamaged if not
        raise
    check_latest_checkpoint(store, restored.tree)  # else the state is not used
    return restored


def replay_state(store: LedgerStore, metering: MeteringConfig | None, size: int) -> LedgerState:
    """The state after the first ``size`` entries, replayed from the first one (what a
    snapshot at ``size`` must hold; the entries are not checked here)."""
    return _replay(store, empty_state(metering), 0, size)


def empty_state(metering: MeteringConfig | None) -> LedgerState:
    return LedgerState(CompactRange(), KeyRing(), {}, Metering(metering), None, None, ())


def _replay(store: LedgerStore, state: LedgerState, start: int, end: int | None) -> LedgerState:
    """``state`` (of the first ``start`` entries) after the entries from ``start`` to
    ``end`` (the last one if None), applied as the ledger applied them."""
    tree, keyring, meters = state.tree, state.keyring, state.metering
    last_seqs = dict(state.last_seqs)
    last_interval, last_tariff, last_fills = (
        state.last_interval,
        state.last_tariff,
        state.last_fills,
    )
    latest: int | None = None
    for entry in store.iter_entries(start=start):
        if end is not None and entry.idx >= end:
            break
        check_leaf(entry, tree.size)
        tree.append_leaf_hash(entry.leaf_hash)
        obj = json.loads(entry.data)
        if entry.kind in KEY_KINDS:
            keyring.apply(entry.kind, entry.agent, obj, at=entry.idx)
        elif entry.kind in (EntryKind.READING, EntryKind.ORDER):
            agent, seq = str(entry.agent), int(entry.agent_seq or 0)
            last_seqs[agent] = max(last_seqs.get(agent, 0), seq)
            if entry.kind == EntryKind.READING:
                body = logged_message(obj).body_as(ReadingBody)
                meters.restore_reading(agent, entry.interval, registers_of(body))
        elif entry.kind == EntryKind.CLEARING:
            if entry.interval != last_interval:
                last_fills = ()
            last_interval = entry.interval
            last_tariff = GridTariff(obj["retail_micro_per_kwh"], obj["feed_in_micro_per_kwh"])
        elif entry.kind == EntryKind.TRADE:
            last_fills += (
                Fill(
                    obj["buyer"],
                    obj["seller"],
                    obj["quantity_wh"],
                    obj["price_micro_per_kwh"],
                    obj["buy_order"],
                    obj["sell_order"],
                ),
            )
        replay(meters, entry.kind, obj)
        latest = entry.interval if latest is None else max(latest, entry.interval)
    if latest is not None:
        meters.prune(latest)
    return LedgerState(tree, keyring, last_seqs, meters, last_interval, last_tariff, last_fills)


def check_tail(store: LedgerStore, tree: CompactRange, start: int) -> None:
    """The entries from ``start`` on, each at its place and hashing to its stored leaf
    hash, grow ``tree`` (the first ``start``) to the latest signed checkpoint's tree
    (what :func:`restore_state` checks as it applies them, without applying them)."""
    for entry in store.iter_entries(start=start):
        check_leaf(entry, tree.size)
        tree.append_leaf_hash(entry.leaf_hash)
    check_latest_checkpoint(store, tree)


def snapshot_state(
    store: LedgerStore, metering: MeteringConfig | None, stored: tuple[int, bytes]
) -> LedgerState:
    """The state of the snapshot ``stored`` (tree size, data), its key ring filled from
    the log; SnapshotError if it is not of this version, malformed, its tree not the
    signed checkpoint's at its size, or naming no key entries; LogDamaged if the log
    itself does not hold (that checkpoint's signature, a key entry's proof)."""
    size, data = stored
    decoded = decode_snapshot(data, metering)
    state = decoded.state
    checkpoint = store.checkpoint_at(size)
    if state.tree.size != size or checkpoint is None or checkpoint.root != state.tree.root():
        raise SnapshotError("its tree is not the signed checkpoint's at its size")
    check_signed(store, checkpoint)  # LogDamaged: the checkpoint, not the snapshot
    _apply_key_entries(store, state.keyring, decoded.key_entries, state)
    return state


def _apply_key_entries(
    store: LedgerStore, keyring: KeyRing, positions: tuple[int, ...], state: LedgerState
) -> None:
    """Fill ``keyring`` from the key entries at ``positions`` (all in ``state``'s tree,
    each proved to be its leaf there: LogDamaged if one is not)."""
    entries = store.entries_at(positions)
    if len(entries) != len(positions) or any(
        e.kind not in KEY_KINDS or e.idx >= state.tree.size for e in entries
    ):
        raise SnapshotError("it names log positions that hold no key entry")
    try:
        check_in_tree(store, entries, state.tree)
    except MissingNodes as exc:
        raise SnapshotError(f"its key entries cannot be proved: {exc}") from exc
    try:
        for entry in entries:
            keyring.apply(entry.kind, entry.agent, json.loads(entry.data), at=entry.idx)
    except KeyLogError as exc:
        raise SnapshotError(f"its key entries do not apply: {exc}") from exc


def logged_message(obj: Mapping[str, object]) -> SignedMessage:
    """The household message a logged reading or order entry holds."""
    return decode_message(json.dumps({"signed": obj["signed"], "sig": obj["sig"]}).encode())


def registers_of(body: ReadingBody) -> Registers:
    return Registers(body.meter_time, body.import_wh, body.export_wh)
