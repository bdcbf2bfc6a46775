"""``ledger verify``: check a whole ledger from its tables and a trusted operator key.

Hashes, signatures, Merkle roots, stored tree nodes, checkpoints (their signed notes)
and the proofs between them; and the market re-executed from the log's signed inputs
(:mod:`ledger.replay`): every clearing, trade, settlement, correction, flag and posting
must be what the logged orders, readings and market parameters make.

The operator key the checkpoints must verify under comes from outside the database
(anchored trust, docs/protocol.md): the caller passes it, or its key id. The key the
database stores must be that key, or the ledger fails; a database alone (its key and
checkpoints both replaced) can never satisfy the check.

Used by ``wattmesh ledger verify``. Any changed, removed or inserted row shows up as
the first entry (or checkpoint) that does not hold. A stored tree node that disagrees
with the entries is reported at the next checkpoint unless that checkpoint itself
fails (then the entries, not the node, were changed after signing).
"""

from __future__ import annotations

import hashlib
import json
import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import pairwise

from wattmesh.broker.errors import FailureError, LedgerError, RejectReason, WattmeshError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.tlog import EMPTY_ROOT_HASH, verify_consistency, verify_inclusion_hash
from wattmesh.ledger._entrycheck import RowChecker
from wattmesh.ledger._merkle import CompactRange, leaf_hash
from wattmesh.ledger.checkpoint import verify_checkpoint
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.keyring import KEY_KINDS, KeyLogError, KeyRing
from wattmesh.ledger.meta import META_MARKET, META_OPERATOR_KEY, META_ORIGIN
from wattmesh.ledger.proofs import (
    NodeRef,
    consistency_proof_from_source,
    inclusion_proof_from_source,
    root_from_source,
)
from wattmesh.ledger.replay import Replay, ReplayMismatch
from wattmesh.ledger.store import Checkpoint, LedgerStore, StoredEntry

__all__ = ["VerifyReport", "stored_operator_key", "verify_ledger"]

PARALLEL_FROM_ENTRIES = 20_000
"""Below this many entries, entries are checked inline (starting workers costs more)."""


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int
    checkpoints: int
    root: bytes
    first_bad_entry: int | None = None
    problem: str | None = None
    key_id: str = ""
    """The trusted operator key id the checkpoints were checked against."""
    replayed: int | None = None  # closes re-executed (None: the replay was not run)
    unparameterised: int = 0  # of them, before the log's first market_params entry


class _Bad(LedgerError, FailureError):
    def __init__(self, idx: int | None, problem: str, *, replay: bool = False) -> None:
        super().__init__(problem)
        self.idx = idx
        self.problem = problem
        self.replay = replay  # the replay's: an entry's own problem at its index comes first


def _add(state: _State, entry: StoredEntry, der: bytes | None) -> None:
    idx, interval, kind, agent, agent_seq, data, _leaf_hash = entry
    failed = state.rows.add((idx, kind, agent, agent_seq, interval, data, der))
    if failed is not None:
        raise _Bad(*failed)


def _check_ordered(entry: StoredEntry, state: _State) -> None:
    """Key entries and trades: they change or consult the walk's state."""
    idx, _interval, kind, agent, _agent_seq, data, _leaf_hash = entry
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Bad(idx, "entry data is not JSON") from exc
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise _Bad(idx, "entry kind does not match its data")
    if kind == EntryKind.TRADE:
        for ref in (obj.get("buy_order"), obj.get("sell_order")):
            if ref not in state.order_ids:
                raise _Bad(idx, f"trade refers to an order that is not in the log: {ref}")
    elif kind in KEY_KINDS:
        try:
            state.keys.apply(kind, agent, obj, at=idx)
        except KeyLogError as exc:
            raise _Bad(idx, str(exc)) from exc


def _node_problem(nodes: list[tuple[int, int, bytes]], stored: dict[NodeRef, bytes]) -> _Bad | None:
    """The first of the tree ``nodes`` (in the order the entries completed them) that
    ``stored`` lacks or holds otherwise, as the problem of the entry that completed it."""
    get = stored.get
    for level, index, h in nodes:
        if get((level, index)) != h:
            what = "is missing" if (level, index) not in stored else "does not match"
            last_leaf = ((index + 1) << level) - 1
            return _Bad(last_leaf, f"stored tree node ({level}, {index}) {what} the entries")
    return None


@dataclass
class _State:
    market: str
    rows: RowChecker
    keys: KeyRing = field(default_factory=KeyRing)
    order_ids: set[str] = field(default_factory=set)
    replay: Replay | None = None


_SIGNED_SEP = b'","signed":'
_KID = b'"kid":"'
_MESSAGE_KINDS = frozenset({EntryKind.READING, EntryKind.ORDER})
_ORDERED_KINDS = KEY_KINDS | {EntryKind.TRADE, EntryKind.CHECKPOINT_REF}


_MESSAGE_PREFIXES = {kind: b'{"kind":"' + kind.encode() + b'","sig":"' for kind in _MESSAGE_KINDS}


def _check_message(entry: StoredEntry, state: _State) -> None:
    """A reading or order: the exact layout ``message_entry`` writes and the key valid
    for its agent here; the rest (a canonical signed envelope whose header matches the
    columns, signed by that key) is checked by :mod:`ledger._entrycheck`."""
    idx, kind, data = entry[0], entry[2], entry[5]
    prefix = _MESSAGE_PREFIXES[kind]
    cut = data.find(_SIGNED_SEP, len(prefix))
    if not data.startswith(prefix) or cut < 0 or not data.endswith(b"}"):
        raise _Bad(idx, "stored message is not in the log's message layout")
    agent = str(entry[3])
    keys = state.keys
    der = keys.valid_der.get(agent)
    if der is None or agent in keys.retired_agents:
        _check_kid_valid(idx, agent, data[cut + len(_SIGNED_SEP) : -1], keys)
    if der is None:
        raise _Bad(idx, f"no registered key for {agent} before this entry")
    _add(state, entry, der)
    if kind == EntryKind.ORDER:
        signed = memoryview(data)[cut + len(_SIGNED_SEP) : -1]
        state.order_ids.add(hashlib.sha256(signed).hexdigest())


def _check_kid_valid(idx: int, agent: str, signed: bytes, keys: KeyRing) -> None:
    """A message signed with a key rotated out or revoked before it: say so.

    Only the error message depends on this: the signature check (key id and signature
    against the agent's valid key) refuses such a message anyway. The kid is the first
    ``"kid":"`` in the canonical signed bytes (the bodies of readings and orders hold
    no strings that could contain it).
    """
    at = signed.find(_KID)
    if at < 0:
        return
    kid = signed[at + len(_KID) : at + len(_KID) + 64].decode("ascii", "replace")
    gone = keys.retired.get((agent, kid))
    if gone is not None:
        what = "revoked" if gone.kind is RejectReason.REVOKED_KEY else "rotated out"
        raise _Bad(idx, f"signed with key {kid[:16]} of {agent}, {what} at entry {gone.at}")
    if agent in keys.current and agent not in keys.valid_der:
        raise _Bad(idx, f"{agent} has no valid key here: its key was revoked")


def default_workers(entries: int) -> int:
    """Checking processes worth starting for a log of ``entries`` entries: one per core
    (at most four) for large logs; below :data:`PARALLEL_FROM_ENTRIES`, or on one
    core, the checks run inline (starting workers would cost more than they win)."""
    cores = os.cpu_count() or 1
    if entries < PARALLEL_FROM_ENTRIES or cores < 2:
        return 1
    return min(cores, 4)


def stored_operator_key(store: LedgerStore) -> VerifyingKey | None:
    """The operator key the ledger's meta table records (None: none, or not a key).
    Never trust it on its own: compare it with a key from outside the database."""
    pem = store.get_meta(META_OPERATOR_KEY)
    if pem is None:
        return None
    try:
        return VerifyingKey.from_pem(pem.encode())
    except (ValueError, WattmeshError):
        return None


def _anchor(
    store: LedgerStore, trusted: VerifyingKey | str
) -> tuple[str, VerifyingKey | None, str | None]:
    """The trusted key id, the key to check checkpoints with (the trusted key, or for a
    trusted key id the stored key that has it) and the problem (None: the stored key is
    the trusted one)."""
    kid = trusted.kid if isinstance(trusted, VerifyingKey) else trusted.lower()
    if store.get_meta(META_OPERATOR_KEY) is None:
        return kid, None, "ledger has no metadata"
    stored = stored_operator_key(store)
    if stored is None:
        return kid, None, "the ledger's stored operator key is not a P-256 public key"
    if stored.kid != kid:
        problem = f"the ledger's stored operator key {stored.kid} is not the trusted key {kid}"
        return kid, None, problem
    return kid, trusted if isinstance(trusted, VerifyingKey) else stored, None


def verify_ledger(
    store: LedgerStore,
    operator_key: VerifyingKey | str,
    *,
    workers: int | None = None,
    size: int | None = None,
    replay: bool = True,
) -> VerifyReport:
    """Recompute every hash, signature, root, stored tree node and checkpoint, check every
    checkpoint's signed note and the consistency proofs between consecutive checkpoints;
    stop at the first failure. ``operator_key``: the key trusted from outside the
    database, or its whole key id (64 hex digits: SHA-256 of its DER public key); the
    ledger's stored key must be it. ``workers``: message-checking processes (default:
    by size and idle cores, see :func:`default_workers`). ``size``: check the first
    ``size`` entries and the checkpoints up to that size only (a log another process
    appends to while this one reads it; the stored nodes beyond are not counted).
    """
    market = store.get_meta(META_MARKET)
    origin = store.get_meta(META_ORIGIN)
    kid, key, problem = _anchor(store, operator_key)
    checkpoints = store.checkpoints()
    if size is not None:
        checkpoints = [cp for cp in checkpoints if cp.tree_size <= size]
    if market is None or origin is None or key is None:
        problem = problem if market and origin else "ledger has no metadata"
        return VerifyReport(False, 0, len(checkpoints), EMPTY_ROOT_HASH, None, problem, kid)
    if workers is None:
        workers = default_workers(checkpoints[-1].tree_size if checkpoints else 0)
    state = _State(market, RowChecker(market, workers), replay=Replay() if replay else None)
    walk = _Walk(store, origin, key, checkpoints, state, size=size)
    try:
        walk.run()
    except _Bad as bad:
        failed = walk.state.rows.drain()
        if failed is not None and (
            bad.idx is None or failed[0] < bad.idx or (bad.replay and failed[0] == bad.idx)
        ):
            bad = _Bad(*failed)
        return VerifyReport(
            False, walk.count, len(checkpoints), walk.tree.root(), bad.idx, bad.problem, kid
        )
    finally:
        walk.state.rows.close()
    replayed = state.replay
    if replayed is None:
        return VerifyReport(True, walk.count, len(checkpoints), walk.tree.root(), key_id=kid)
    return VerifyReport(
        True,
        walk.count,
        len(checkpoints),
        walk.tree.root(),
        key_id=kid,
        replayed=replayed.closes,
        unparameterised=replayed.unparameterised,
    )


class _Walk:
    """One pass over the log in index order, then the proof paths between checkpoints
    (while the workers finish the rows queued last)."""

    def __init__(
        self,
        store: LedgerStore,
        origin: str,
        key: VerifyingKey,
        checkpoints: list[Checkpoint],
        state: _State,
        *,
        size: int | None = None,
    ) -> None:
        self.store, self.origin, self.key, self.state = store, origin, key, state
        self.size = size
        self.checkpoints = checkpoints
        self.checkpoint_sizes = {cp.tree_size for cp in checkpoints}
        self.sorted_sizes = sorted(self.checkpoint_sizes)
        self.pending = list(reversed(checkpoints))
        self.tree = CompactRange()
        self.count = 0
        self.node_problem: _Bad | None = None  # reported at the next checkpoint that holds

    def run(self) -> None:
        self._checkpoints_due()
        for whole in self.store.iter_stored_batches():
            batch = whole if self.size is None else whole[: self.size - self.count]
            if not batch:
                break
            stored = self.store.nodes_completed_in(self.count, self.count + len(batch))
            for lo, hi in self._segments(batch):
                self._walk_segment(batch[lo:hi], stored)
        self._replay_finish()
        # The proof paths need only the stored tree: check them while the workers finish
        # the queued rows, and report their outcome where it falls in the order below.
        self.state.rows.hand_over()
        proof_problem = self._proof_paths_problem()
        failed = self.state.rows.drain()
        if failed is not None:
            raise _Bad(*failed)
        if self.pending:
            size = self.pending[-1].tree_size
            raise _Bad(self.count, f"checkpoint at size {size} covers entries that are missing")
        cps = self.checkpoints
        if not cps or cps[-1].tree_size != self.count:
            at = cps[-1].tree_size if cps else 0
            raise _Bad(
                at, "entries after the last checkpoint are not covered by any signed checkpoint"
            )
        if self.node_problem is not None:
            raise self.node_problem
        expected_nodes = self.count - self.count.bit_count()
        if self.size is None and self.store.node_count() != expected_nodes:
            raise _Bad(self.count, "stored tree holds nodes beyond the log")
        if proof_problem is not None:
            raise proof_problem

    def _segments(self, batch: list[StoredEntry]) -> list[tuple[int, int]]:
        """``batch`` (entries from ``self.count`` on) cut into ``(lo, hi)`` ranges at every
        checkpoint size (there the root is checked) and before every checkpoint
        reference (which names the root before it)."""
        start, end = self.count, self.count + len(batch)
        sizes = self.sorted_sizes
        inside = sizes[bisect_right(sizes, start) : bisect_left(sizes, end)]
        cuts = {size - start for size in inside}
        ref = EntryKind.CHECKPOINT_REF
        cuts.update(k for k, entry in enumerate(batch) if entry[2] == ref and k)
        bounds = [0, *sorted(cuts), len(batch)]
        return list(pairwise(bounds))

    def _walk_segment(self, segment: list[StoredEntry], stored: dict[NodeRef, bytes]) -> None:
        """Check what depends on the log's order in ``segment`` (the entries from
        ``self.count`` on, holding no checkpoint size inside it and a checkpoint reference
        first or nowhere; the rest goes to ``state.rows``), grow the tree by it, compare
        the nodes it completes with ``stored`` and check the checkpoints due. As entry by
        entry: when an entry fails, the walk holds exactly the entries before it."""
        start, state = self.count, self.state
        expected = start
        try:
            for expected, entry in enumerate(segment, start):
                idx = entry[0]
                if idx != expected:
                    what = "missing" if idx > expected else "duplicated"
                    raise _Bad(expected, f"entry {expected} is {what}")
                if leaf_hash(entry[5]) != entry[6]:
                    raise _Bad(idx, "stored leaf hash does not match the entry's data")
                kind = entry[2]
                if kind in _MESSAGE_KINDS:
                    _check_message(entry, state)
                elif kind in _ORDERED_KINDS:
                    _check_ordered(entry, state)
                    if kind == EntryKind.CHECKPOINT_REF:
                        self._check_reference(entry)
                else:
                    _add(state, entry, None)
        except _Bad:
            self.count = expected
            self.tree.extend_nodes([entry[6] for entry in segment[: expected - start]])
            raise
        nodes = self.tree.extend_nodes([entry[6] for entry in segment])
        if self.node_problem is None:
            self.node_problem = _node_problem(nodes, stored)
        self.count = start + len(segment)
        replay = state.replay
        if replay is not None:
            try:
                for entry in segment:
                    replay.add(entry)
            except ReplayMismatch as exc:
                raise _Bad(exc.idx, exc.problem, replay=True) from exc
        self._checkpoints_due()

    def _replay_finish(self) -> None:
        replay = self.state.replay
        if replay is not None:
            try:
                replay.finish()
            except ReplayMismatch as exc:
                raise _Bad(exc.idx, exc.problem, replay=True) from exc

    def _check_reference(self, entry: StoredEntry) -> None:
        """A checkpoint reference names the size and root a signed checkpoint had then
        (it comes first in its segment, so the tree is the log before it)."""
        idx, interval, data = entry[0], entry[1], entry[5]
        obj = json.loads(data)
        if set(obj) != {"kind", "interval", "tree_size", "root"} or obj["interval"] != interval:
            raise _Bad(idx, "checkpoint reference is malformed")
        if obj["tree_size"] != idx or obj["root"] != self.tree.root().hex():
            raise _Bad(idx, "checkpoint reference does not name the log before it")
        if idx not in self.checkpoint_sizes:
            raise _Bad(idx, f"no signed checkpoint at size {idx} to refer to")

    def _checkpoints_due(self) -> None:
        while self.pending and self.pending[-1].tree_size == self.count:
            cp = self.pending.pop()
            at = max(self.count - 1, 0)
            if cp.root != self.tree.root():
                raise _Bad(at, f"checkpoint at size {self.count} does not match the log")
            if not verify_checkpoint(cp, origin=self.origin, key=self.key):
                raise _Bad(at, f"checkpoint at size {self.count} has a bad signature")
            if self.node_problem is not None:
                raise self.node_problem

    def _proof_paths_problem(self) -> Exception | None:
        """What :meth:`_check_proof_paths` raises (a ``_Bad``, or any error), or None."""
        try:
            self._check_proof_paths()
        except Exception as exc:  # raised later, in its place in the order of the checks
            return exc
        return None

    def _check_proof_paths(self) -> None:
        """Proofs from the stored tree: each checkpoint's root, the consistency proof from
        the previous checkpoint, and the inclusion of the checkpoint's last entry."""
        source = self.store
        previous: Checkpoint | None = None
        for cp in self.checkpoints:
            n, at = cp.tree_size, max(cp.tree_size - 1, 0)
            try:
                if root_from_source(source, n) != cp.root:
                    raise _Bad(at, f"stored tree gives another root at size {n}")
                if n and previous is not None and previous.tree_size:
                    m = previous.tree_size
                    proof = consistency_proof_from_source(source, m, n)
                    if not verify_consistency(m, n, previous.root, cp.root, proof):
                        raise _Bad(at, f"no consistency proof from checkpoint {m} to {n}")
                if n:
                    last = source.node_hashes([(0, n - 1)])[0]
                    path = inclusion_proof_from_source(source, n - 1, n)
                    if not verify_inclusion_hash(last, n - 1, n, path, cp.root):
                        raise _Bad(at, f"inclusion proof of entry {n - 1} fails at size {n}")
            except LookupError as exc:
                raise _Bad(at, f"stored tree is incomplete: {exc}") from exc
            previous = cp
