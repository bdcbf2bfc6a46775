"""Check a whole ledger from its tables alone: hashes, signatures, Merkle roots, checkpoints.

Used by ``wattmesh ledger verify``. Any changed, removed or inserted row shows up as
the first entry (or checkpoint) that does not hold.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from broker.errors import MessageError
from broker.keys import VerifyingKey
from broker.messages import decode_message
from ledger.accounts import Posting, UnbalancedPosting
from ledger.checkpoint import verify_checkpoint
from ledger.entries import EntryKind, parse_flag, parse_revision
from ledger.merkle import CompactRange, leaf_hash
from ledger.store import LedgerStore, LogEntry

META_MARKET = "market_id"
META_ORIGIN = "origin"
META_OPERATOR_KEY = "operator_public_key"


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    entries: int
    checkpoints: int
    root: bytes
    first_bad_entry: int | None = None
    problem: str | None = None


class _Bad(Exception):
    def __init__(self, idx: int | None, problem: str) -> None:
        super().__init__(problem)
        self.idx = idx
        self.problem = problem


def _check_entry(entry: LogEntry, expected_idx: int, state: _State) -> None:
    idx = entry.idx
    if idx != expected_idx:
        what = "missing" if idx > expected_idx else "duplicated"
        raise _Bad(expected_idx, f"entry {expected_idx} is {what}")
    if leaf_hash(entry.data) != entry.leaf_hash:
        raise _Bad(idx, "stored leaf hash does not match the entry's data")
    try:
        obj = json.loads(entry.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Bad(idx, "entry data is not JSON") from exc
    if not isinstance(obj, dict) or obj.get("kind") != entry.kind:
        raise _Bad(idx, "entry kind does not match its data")
    if entry.kind == EntryKind.KEY:
        _check_key(entry, obj, state)
    elif entry.kind in (EntryKind.READING, EntryKind.ORDER):
        _check_message(entry, obj, state)
    elif entry.kind == EntryKind.TRADE:
        for ref in (obj.get("buy_order"), obj.get("sell_order")):
            if ref not in state.order_ids:
                raise _Bad(idx, f"trade refers to an order that is not in the log: {ref}")
    elif entry.kind == EntryKind.POSTING:
        _check_posting(entry, obj)
    elif entry.kind in (EntryKind.SETTLEMENT, EntryKind.CORRECTION, EntryKind.FLAG):
        _check_settlement(entry, obj)
    elif entry.kind != EntryKind.CLEARING:
        raise _Bad(idx, f"unknown entry kind {entry.kind!r}")


def _check_settlement(entry: LogEntry, obj: dict[str, Any]) -> None:
    """Settlements, corrections and flags must parse and match their columns."""
    try:
        if entry.kind == EntryKind.FLAG:
            flag = parse_flag(obj)
            agent, interval = flag.agent, flag.interval
        else:
            s = parse_revision(obj).settlement
            agent, interval = s.agent, s.interval
    except (KeyError, TypeError, ValueError) as exc:
        raise _Bad(entry.idx, f"{entry.kind} entry is malformed: {exc!r}") from exc
    if agent != entry.agent or interval != entry.interval:
        raise _Bad(entry.idx, f"{entry.kind} columns do not match its data")


def _check_posting(entry: LogEntry, obj: dict[str, Any]) -> None:
    """Every posting must balance: its lines sum to zero."""
    try:
        posting = Posting.from_json(obj)
    except UnbalancedPosting as exc:
        raise _Bad(entry.idx, f"posting does not balance: {exc}") from exc
    except ValueError as exc:
        raise _Bad(entry.idx, f"posting is malformed: {exc}") from exc
    if posting.agent != entry.agent or posting.interval != entry.interval:
        raise _Bad(entry.idx, "posting columns do not match its data")


@dataclass
class _State:
    market: str
    keys: dict[str, VerifyingKey]
    order_ids: set[str]


def _check_key(entry: LogEntry, obj: dict[str, Any], state: _State) -> None:
    try:
        key = VerifyingKey.from_der(base64.b64decode(obj["public_key"], validate=True))
    except (KeyError, ValueError, binascii.Error) as exc:
        raise _Bad(entry.idx, "key entry holds no valid public key") from exc
    if key.kid != obj.get("kid") or obj.get("agent") != entry.agent:
        raise _Bad(entry.idx, "key entry's key id or agent does not match")
    state.keys[str(entry.agent)] = key


def _check_message(entry: LogEntry, obj: dict[str, Any], state: _State) -> None:
    wire = json.dumps({"signed": obj.get("signed"), "sig": obj.get("sig")}).encode()
    try:
        message = decode_message(wire)
    except MessageError as exc:
        raise _Bad(entry.idx, f"stored message does not decode: {exc}") from exc
    header = message.header
    if header.kind != entry.kind or header.agent != entry.agent or header.seq != entry.agent_seq:
        raise _Bad(entry.idx, "entry columns do not match the signed message")
    if header.market != state.market or header.interval != entry.interval:
        raise _Bad(entry.idx, "signed message belongs to another market or interval")
    key = state.keys.get(header.agent)
    if key is None:
        raise _Bad(entry.idx, f"no registered key for {header.agent} before this entry")
    try:
        message.verify(key)
    except MessageError as exc:
        raise _Bad(entry.idx, f"signature check failed: {exc}") from exc
    if entry.kind == EntryKind.ORDER:
        state.order_ids.add(message.message_id)


def verify_ledger(store: LedgerStore, operator_key: VerifyingKey | None = None) -> VerifyReport:
    """Recompute every hash, signature, root and checkpoint; stop at the first failure."""
    market = store.get_meta(META_MARKET)
    origin = store.get_meta(META_ORIGIN)
    if operator_key is None:
        pem = store.get_meta(META_OPERATOR_KEY)
        operator_key = VerifyingKey.from_pem(pem.encode()) if pem else None
    tree = CompactRange()
    checkpoints = store.checkpoints()
    if market is None or origin is None or operator_key is None:
        return VerifyReport(False, 0, len(checkpoints), tree.root(), None, "ledger has no metadata")
    state = _State(market=market, keys={}, order_ids=set())
    pending = list(reversed(checkpoints))
    count = 0
    try:
        while pending and pending[-1].tree_size == 0:
            cp = pending.pop()
            if cp.root != tree.root() or not verify_checkpoint(cp, origin=origin, key=operator_key):
                raise _Bad(0, "checkpoint at size 0 does not hold")
        for entry in store.iter_entries():
            _check_entry(entry, count, state)
            tree.append_leaf_hash(entry.leaf_hash)
            count += 1
            while pending and pending[-1].tree_size == count:
                cp = pending.pop()
                if cp.root != tree.root():
                    raise _Bad(entry.idx, f"checkpoint at size {count} does not match the log")
                if not verify_checkpoint(cp, origin=origin, key=operator_key):
                    raise _Bad(entry.idx, f"checkpoint at size {count} has a bad signature")
        if pending:
            cp = pending[-1]
            raise _Bad(count, f"checkpoint at size {cp.tree_size} covers entries that are missing")
        if not checkpoints or checkpoints[-1].tree_size != count:
            raise _Bad(
                checkpoints[-1].tree_size if checkpoints else 0,
                "entries after the last checkpoint are not covered by any signed checkpoint",
            )
    except _Bad as bad:
        return VerifyReport(False, count, len(checkpoints), tree.root(), bad.idx, bad.problem)
    return VerifyReport(True, count, len(checkpoints), tree.root())
