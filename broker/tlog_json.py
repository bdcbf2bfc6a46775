"""The JSON documents of ``wattmesh ledger prove`` and ``consistency``, and checking them.

A third party (a household agent, an auditor) checks a proof document with only the
operator's public key: :func:`check_proof_document` parses it, opens the checkpoint
notes with the key and runs the RFC 9162 verifier. Formats (docs/protocol.md)::

    {"format": "wattmesh-inclusion-proof/v1", "origin": str, "leaf_index": int,
     "tree_size": int, "leaf_data": base64 | null, "leaf_hash": hex,
     "proof": [hex, ...], "checkpoint": note}
    {"format": "wattmesh-consistency-proof/v1", "origin": str, "old_size": int,
     "new_size": int, "old_root": hex, "new_root": hex, "proof": [hex, ...],
     "old_checkpoint": note | null, "new_checkpoint": note | null}

Sizes count leaves, indices are zero-based, hashes are 32-byte SHA-256 in lowercase hex.

A household that keeps the last checkpoint it saw uses :func:`check_extends` (the new
signed tree extends *its* old one, not just the old one the document carries: that
is how a fork shows) and :func:`check_includes` (the proved leaf is *its* entry).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from wattmesh.broker.errors import BrokerError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.tlog import (
    HASH_SIZE,
    CheckpointBody,
    NoteError,
    leaf_hash,
    open_checkpoint,
    verify_consistency,
    verify_inclusion_hash,
)

__all__ = [
    "ProofDocumentError",
    "check_proof_document",
    "consistency_document",
    "inclusion_document",
]

INCLUSION_FORMAT: Final = "wattmesh-inclusion-proof/v1"
CONSISTENCY_FORMAT: Final = "wattmesh-consistency-proof/v1"


class ProofDocumentError(BrokerError):
    """A proof document that is not in the documented format."""


@dataclass(frozen=True)
class ProofCheck:
    """The outcome: ``ok`` only if the proof holds and every root it uses is signed."""

    ok: bool
    detail: str


def inclusion_document(
    *,
    origin: str,
    leaf_index: int,
    tree_size: int,
    leaf_data: bytes | None,
    leaf_hash_: bytes,
    proof: Sequence[bytes],
    checkpoint_note: str,
) -> dict[str, Any]:
    """The inclusion proof document (a JSON-ready dict)."""
    return {
        "format": INCLUSION_FORMAT,
        "origin": origin,
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "leaf_data": None if leaf_data is None else base64.b64encode(leaf_data).decode("ascii"),
        "leaf_hash": leaf_hash_.hex(),
        "proof": [h.hex() for h in proof],
        "checkpoint": checkpoint_note,
    }


def consistency_document(
    *,
    origin: str,
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    old_checkpoint: str | None,
    new_checkpoint: str | None,
) -> dict[str, Any]:
    """The consistency proof document (a JSON-ready dict)."""
    return {
        "format": CONSISTENCY_FORMAT,
        "origin": origin,
        "old_size": old_size,
        "new_size": new_size,
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
        "proof": [h.hex() for h in proof],
        "old_checkpoint": old_checkpoint,
        "new_checkpoint": new_checkpoint,
    }


def _field(doc: Mapping[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProofDocumentError(f"field {name!r} must be a {kind.__name__}")
    return value


def _size(doc: Mapping[str, Any], name: str) -> int:
    value: int = _field(doc, name, int)
    if value < 0:
        raise ProofDocumentError(f"field {name!r} must not be negative")
    return value


def _hash(text: object, name: str) -> bytes:
    try:
        value = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        value = b""
    if len(value) != HASH_SIZE:
        raise ProofDocumentError(f"{name} must be a {HASH_SIZE}-byte hash in hex")
    return value


def _hashes(doc: Mapping[str, Any]) -> list[bytes]:
    items = _field(doc, "proof", list)
    return [_hash(item, f"proof[{i}]") for i, item in enumerate(items)]


def _note(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise ProofDocumentError(f"field {name!r} must be a note (string) or null")
    return value


def check_proof_document(doc: object, key: VerifyingKey) -> ProofCheck:
    """Check an inclusion or consistency proof document against the operator's key.

    Raises ProofDocumentError for a document that is not in either format; returns a
    failed ProofCheck (with the reason) for one that is well-formed but does not hold.
    """
    if not isinstance(doc, dict):
        raise ProofDocumentError("a proof document is a JSON object")
    fmt = doc.get("format")
    if fmt == INCLUSION_FORMAT:
        return _check_inclusion(doc, key)
    if fmt == CONSISTENCY_FORMAT:
        return _check_consistency(doc, key)
    raise ProofDocumentError(f"unknown proof format {fmt!r}")


def _open(note: str, key: VerifyingKey, origin: str, what: str) -> tuple[int, bytes] | str:
    try:
        body = open_checkpoint(note, key, origin=origin)
    except NoteError as exc:
        return f"{what} checkpoint: {exc}"
    return body.tree_size, body.root


def _check_inclusion(doc: Mapping[str, Any], key: VerifyingKey) -> ProofCheck:
    origin: str = _field(doc, "origin", str)
    index, size = _size(doc, "leaf_index"), _size(doc, "tree_size")
    claimed = _hash(doc.get("leaf_hash"), "leaf_hash")
    proof = _hashes(doc)
    note = _note(doc, "checkpoint")
    data = doc.get("leaf_data")
    if data is not None:
        try:
            raw = base64.b64decode(_field(doc, "leaf_data", str), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProofDocumentError("leaf_data must be base64") from exc
        if leaf_hash(raw) != claimed:
            return ProofCheck(False, "leaf_data does not hash to leaf_hash")
    if note is None:
        return ProofCheck(False, "no checkpoint: the root is not signed")
    opened = _open(note, key, origin, "the")
    if isinstance(opened, str):
        return ProofCheck(False, opened)
    cp_size, root = opened
    if cp_size != size:
        return ProofCheck(False, f"checkpoint is for size {cp_size}, the proof for {size}")
    if not verify_inclusion_hash(claimed, index, size, proof, root):
        return ProofCheck(False, f"entry {index} is not included in the tree of size {size}")
    return ProofCheck(True, f"entry {index} is included in the signed tree of size {size}")


def _check_consistency(doc: Mapping[str, Any], key: VerifyingKey) -> ProofCheck:
    origin: str = _field(doc, "origin", str)
    old_size, new_size = _size(doc, "old_size"), _size(doc, "new_size")
    old_root = _hash(doc.get("old_root"), "old_root")
    new_root = _hash(doc.get("new_root"), "new_root")
    proof = _hashes(doc)
    for what, note, size, root in (
        ("old", _note(doc, "old_checkpoint"), old_size, old_root),
        ("new", _note(doc, "new_checkpoint"), new_size, new_root),
    ):
        if note is None:
            return ProofCheck(False, f"no {what} checkpoint: the {what} root is not signed")
        opened = _open(note, key, origin, f"the {what}")
        if isinstance(opened, str):
            return ProofCheck(False, opened)
        if opened != (size, root):
            return ProofCheck(False, f"the {what} checkpoint states another size or root")
    if not verify_consistency(old_size, new_size, old_root, new_root, proof):
        return ProofCheck(False, f"the tree of size {new_size} does not extend that of {old_size}")
    return ProofCheck(True, f"the signed tree of size {new_size} extends that of {old_size}")


def check_extends(saved: CheckpointBody, doc: object, key: VerifyingKey) -> ProofCheck:
    """Check a consistency document from the checkpoint ``saved`` (one the caller opened
    earlier with the operator's key) to a newer one.

    Fails (a fork, or a proof for something else) unless the document starts at
    ``saved``'s size and root, for ``saved``'s log, and holds. Raises
    ProofDocumentError for a malformed document.
    """
    if not isinstance(doc, dict) or doc.get("format") != CONSISTENCY_FORMAT:
        raise ProofDocumentError("not a consistency proof document")
    if doc.get("origin") != saved.origin:
        return ProofCheck(False, f"the proof is for log {doc.get('origin')!r}")
    if doc.get("old_size") != saved.tree_size:
        return ProofCheck(
            False, f"the proof starts at {doc.get('old_size')}, not {saved.tree_size}"
        )
    if _hash(doc.get("old_root"), "old_root") != saved.root:
        return ProofCheck(
            False, f"fork: the log's tree of size {saved.tree_size} is not the one seen"
        )
    return check_proof_document(doc, key)


def check_includes(leaf_data: bytes, doc: object, key: VerifyingKey) -> ProofCheck:
    """Check an inclusion document proves exactly ``leaf_data`` (the entry's bytes).

    Raises ProofDocumentError for a malformed document.
    """
    if not isinstance(doc, dict) or doc.get("format") != INCLUSION_FORMAT:
        raise ProofDocumentError("not an inclusion proof document")
    if _hash(doc.get("leaf_hash"), "leaf_hash") != leaf_hash(leaf_data):
        return ProofCheck(False, "the proof is for another entry")
    return check_proof_document(doc, key)
