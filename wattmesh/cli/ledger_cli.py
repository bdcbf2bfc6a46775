"""``wattmesh ledger prove | consistency | check-proof``: proofs a third party can check.

``prove`` and ``consistency`` read the ledger's database (proofs come from the stored
tree, O(log n) rows); ``check-proof`` needs no database, only the proof document and the
operator's public key, and imports nothing heavier than ``broker/``.

Exit codes: 0 done (or: the proof holds); 1 the proof or the ledger does not hold;
2 bad arguments or a malformed document (see docs/protocol.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattmesh.ledger.store import LedgerStore

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"wattmesh: error: {message}", file=sys.stderr)
    return code


def _print_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2))


def _read_ledger(url: str, read: Callable[[LedgerStore], int]) -> int:
    """Run ``read`` on the ledger database at ``url``, opened read-only; a database
    failure is a StoreError (exit 1, one line), a stored tree with a gap exit 1."""
    from wattmesh.ledger.store import LedgerStore
    from wattmesh.ledger.store_open import store_failures

    store = LedgerStore.read_only(url)
    try:
        with store_failures(url):
            return read(store)
    except LookupError as exc:
        return _error(f"the stored tree is incomplete: {exc}", EXIT_FAILED)
    finally:
        store.close()


def run_prove(args: argparse.Namespace) -> int:
    """Print the inclusion proof of entry ``--entry`` against the latest checkpoint
    (or the one of ``--tree-size`` leaves)."""
    return _read_ledger(args.db, lambda store: _prove(store, args.entry, args.tree_size))


def _prove(store: LedgerStore, index: int, tree_size: int | None) -> int:
    from wattmesh.broker.tlog_json import inclusion_document
    from wattmesh.ledger.checkpoint import checkpoint_note
    from wattmesh.ledger.meta import META_ORIGIN
    from wattmesh.ledger.proofs import inclusion_proof_from_source

    origin = store.get_meta(META_ORIGIN)
    cp = store.latest_checkpoint() if tree_size is None else store.checkpoint_at(tree_size)
    if origin is None or cp is None:
        return _error("no such checkpoint in this ledger")
    if not 0 <= index < cp.tree_size:
        return _error(f"entry {index} is not in the checkpoint of size {cp.tree_size}")
    entry = store.entry(index)
    if entry is None:
        return _error(f"entry {index} is missing from the log", EXIT_FAILED)
    proof = inclusion_proof_from_source(store, index, cp.tree_size)
    _print_json(
        inclusion_document(
            origin=origin,
            leaf_index=index,
            tree_size=cp.tree_size,
            leaf_data=bytes(entry.data),
            leaf_hash_=bytes(entry.leaf_hash),
            proof=proof,
            checkpoint_note=checkpoint_note(cp, origin=origin),
        )
    )
    return EXIT_OK


def run_consistency(args: argparse.Namespace) -> int:
    """Print the consistency proof from ``--from`` to ``--to`` leaves (with the
    checkpoint notes of those sizes when the operator signed checkpoints there)."""
    return _read_ledger(args.db, lambda store: _consistency(store, args.from_size, args.to_size))


def _consistency(store: LedgerStore, old_size: int, new_size: int) -> int:
    from wattmesh.broker.tlog_json import consistency_document
    from wattmesh.ledger.checkpoint import checkpoint_note
    from wattmesh.ledger.meta import META_ORIGIN
    from wattmesh.ledger.proofs import consistency_proof_from_source, root_from_source

    origin = store.get_meta(META_ORIGIN)
    latest = store.latest_checkpoint()
    if origin is None or latest is None:
        return _error("this ledger has no checkpoints")
    if not 0 < old_size <= new_size <= latest.tree_size:
        return _error(f"need 0 < --from <= --to <= {latest.tree_size} (the latest checkpoint)")
    old_root = root_from_source(store, old_size)
    new_root = root_from_source(store, new_size)
    notes = []
    for size, root in ((old_size, old_root), (new_size, new_root)):
        cp = store.checkpoint_at(size)
        if cp is not None and cp.root != root:
            return _error(f"the stored tree disagrees with checkpoint {size}", EXIT_FAILED)
        notes.append(None if cp is None else checkpoint_note(cp, origin=origin))
    proof = consistency_proof_from_source(store, old_size, new_size)
    _print_json(
        consistency_document(
            origin=origin,
            old_size=old_size,
            new_size=new_size,
            old_root=old_root,
            new_root=new_root,
            proof=proof,
            old_checkpoint=notes[0],
            new_checkpoint=notes[1],
        )
    )
    return EXIT_OK


def run_check_proof(args: argparse.Namespace) -> int:
    """Check a proof document (file, or ``-`` for stdin) with the operator's public key."""
    from wattmesh.broker.keys import load_verifying_key
    from wattmesh.broker.tlog_json import ProofDocumentError, check_proof_document

    key = load_verifying_key(Path(args.operator_key))
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _error(f"cannot read {args.file}: {exc}")
    try:
        result = check_proof_document(json.loads(text), key)
    except json.JSONDecodeError as exc:
        return _error(f"{args.file} is not JSON: {exc}")
    except ProofDocumentError as exc:
        return _error(f"{args.file} is not a proof document: {exc}")
    if not result.ok:
        print(f"FAILED: {result.detail}", file=sys.stderr)
        return EXIT_FAILED
    print(f"ok: {result.detail}")
    return EXIT_OK


def add_proof_commands(ledger_sub: Any) -> None:
    """Register ``prove``, ``consistency`` and ``check-proof`` under ``wattmesh ledger``."""
    prove = ledger_sub.add_parser("prove", help="print an inclusion proof (JSON) of one entry")
    prove.add_argument("--db", required=True, help="database URL, e.g. sqlite:///out/ledger.db")
    prove.add_argument("--entry", required=True, type=int, help="entry index (0-based)")
    prove.add_argument("--tree-size", type=int, help="checkpoint size (default: the latest)")
    prove.set_defaults(func=run_prove)

    cons = ledger_sub.add_parser("consistency", help="print a consistency proof (JSON)")
    cons.add_argument("--db", required=True, help="database URL")
    cons.add_argument("--from", dest="from_size", required=True, type=int, help="old size")
    cons.add_argument("--to", dest="to_size", required=True, type=int, help="new size")
    cons.set_defaults(func=run_consistency)

    check = ledger_sub.add_parser("check-proof", help="check a proof with the operator's key")
    check.add_argument("file", help="proof document (JSON), or - for stdin")
    check.add_argument("--operator-key", required=True, help="the operator's public key (PEM)")
    check.set_defaults(func=run_check_proof)
