"""Signed checkpoints (tree heads) of the ledger's Merkle log, as C2SP signed notes.

The signed text is a C2SP tlog-checkpoint note body::

    <origin>\\n<tree size>\\n<base64 root hash>\\n

signed with the market operator's ECDSA P-256 key (DER signature, RFC 6979 nonces).
The stored :class:`~ledger.store.Checkpoint` keeps the signature; :func:`checkpoint_note`
turns it into the note a third party checks with :func:`broker.tlog.open_checkpoint`
(key name = origin, note signature type 0x02; see docs/protocol.md).
"""

from __future__ import annotations

from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.tlog import NoteError, NoteSignature, SignedNote, format_note, open_checkpoint
from wattmesh.broker.tlog import checkpoint_text as _note_text
from wattmesh.ledger.store import Checkpoint

__all__ = ["checkpoint_note", "checkpoint_text", "origin_for", "verify_checkpoint"]


def origin_for(market_id: str) -> str:
    """The log's origin line (and note key name): ``wattmesh/<market_id>``."""
    return f"wattmesh/{market_id}"


def checkpoint_text(origin: str, tree_size: int, root: bytes) -> bytes:
    """The UTF-8 note text the operator signs; raises ValueError for invalid fields."""
    return _note_text(origin, tree_size, root).encode("utf-8")


def sign_checkpoint(
    key: SigningKey, *, origin: str, tree_size: int, root: bytes, interval: int
) -> Checkpoint:
    signature = key.sign(checkpoint_text(origin, tree_size, root))
    return Checkpoint(tree_size, interval, root, key.kid, signature)


def checkpoint_note(checkpoint: Checkpoint, *, origin: str) -> str:
    """The stored checkpoint as a signed note (one signature line, by the operator)."""
    key_id = bytes.fromhex(checkpoint.kid[:8])  # SHA-256(DER SPKI)[:4], as note_key_id
    text = _note_text(origin, checkpoint.tree_size, checkpoint.root)
    return format_note(SignedNote(text, (NoteSignature(origin, key_id, checkpoint.signature),)))


def verify_checkpoint(checkpoint: Checkpoint, *, origin: str, key: VerifyingKey) -> bool:
    """True when the checkpoint's note verifies under ``key`` and states its size and root."""
    if checkpoint.kid != key.kid:
        return False
    try:
        body = open_checkpoint(checkpoint_note(checkpoint, origin=origin), key, origin=origin)
    except (ValueError, NoteError):
        return False
    return body.tree_size == checkpoint.tree_size and body.root == checkpoint.root
