"""Checking the ledger's transparency log without the ledger: RFC 9162 proofs, signed notes.

Everything a household (or any third party) needs to check what the operator's log
claims, with only the operator's public key and the standard library plus
``cryptography``:

* RFC 9162 (Certificate Transparency v2) leaf and node hashing and the verification
  algorithms for inclusion proofs (section 2.1.3.2) and consistency proofs (2.1.4.2);
* C2SP signed notes (``c2sp.org/signed-note``) and the checkpoint note body of
  ``c2sp.org/tlog-checkpoint``: format, parse, sign and verify.

Note signatures use signature type ``0x02`` of the signed-note spec (ECDSA as
implemented by transparency-dev/witness): the 4-byte key ID is the first four bytes of
SHA-256 over the public key's DER SubjectPublicKeyInfo (the first 8 hex digits of the
wattmesh key id), and the signature is the DER ECDSA P-256 / SHA-256 signature over the
note text (with an RFC 6979 nonce). docs/protocol.md spells this out.

Units: hashes are 32-byte SHA-256 digests; tree sizes and leaf indices count leaves
(zero-based indices). Verifiers return ``False`` for any proof that does not hold and
raise ValueError only for negative sizes or indices; note parsers raise
:class:`NoteError` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from wattmesh.broker.errors import BrokerError
from wattmesh.broker.keys import SigningKey, VerifyingKey

__all__ = [
    "EMPTY_ROOT_HASH",
    "HASH_SIZE",
    "MAX_NOTE_SIGNATURES",
    "CheckpointBody",
    "NoteError",
    "NoteSignature",
    "SignedNote",
    "checkpoint_text",
    "format_note",
    "leaf_hash",
    "node_hash",
    "note_key_id",
    "open_checkpoint",
    "parse_checkpoint_text",
    "parse_note",
    "sign_note",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_hash",
    "verify_note",
]

HASH_SIZE: Final = 32
"""Length in bytes of every hash: a SHA-256 digest."""

EMPTY_ROOT_HASH: Final = hashlib.sha256(b"").digest()
"""Root hash of the tree with no leaves: SHA-256 of the empty string."""

MAX_NOTE_SIGNATURES: Final = 64
"""Most signature lines a parsed note may carry (the spec requires accepting 16)."""

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_sha256 = hashlib.sha256


class NoteError(BrokerError):
    """A signed note or checkpoint that is malformed or does not verify."""


# --------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    """Return the 32-byte leaf hash ``SHA-256(0x00 || data)`` of raw leaf data."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the 32-byte interior hash ``SHA-256(0x01 || left || right)``.

    Raises ValueError unless both children are 32-byte hashes.
    """
    if not _is_hash(left):
        raise ValueError(f"left must be a {HASH_SIZE}-byte hash")
    if not _is_hash(right):
        raise ValueError(f"right must be a {HASH_SIZE}-byte hash")
    return _node(left, right)


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _require_non_negative(value: int, what: str) -> None:
    if value < 0:
        raise ValueError(f"{what} must be non-negative, got {value}")


# --------------------------------------------------------------------------- proofs


def verify_inclusion_hash(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an RFC 9162 inclusion proof for a 32-byte leaf hash (algorithm 2.1.3.2).

    ``index`` is the zero-based leaf index and ``size`` the tree size in leaves. Returns
    False for any proof that does not verify (including ``index >= size``, wrong proof
    length, malformed hashes). Raises ValueError for a negative index or size.
    """
    _require_non_negative(index, "index")
    _require_non_negative(size, "size")
    if index >= size or not _is_hash(leaf_hash) or not _is_hash(root):
        return False
    fn, sn = index, size - 1
    result = leaf_hash
    for sibling in proof:
        if sn == 0 or not _is_hash(sibling):
            return False
        if fn & 1 or fn == sn:
            result = _node(sibling, result)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            result = _node(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an RFC 9162 inclusion proof for raw leaf data; see :func:`verify_inclusion_hash`."""
    return verify_inclusion_hash(leaf_hash(leaf), index, size, proof, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check an RFC 9162 consistency proof between two tree sizes (algorithm 2.1.4.2).

    Sizes are in leaves, roots are 32-byte hashes. Returns True only if ``proof`` shows
    that the tree of ``new_size`` leaves with ``new_root`` extends the tree of
    ``old_size`` leaves with ``old_root``. ``old_size == new_size > 0`` verifies with an
    empty proof and equal roots. A proof from the empty tree (``old_size == 0``) is
    meaningless and never verifies; neither does ``old_size > new_size``. Raises
    ValueError only for a negative size.
    """
    _require_non_negative(old_size, "old_size")
    _require_non_negative(new_size, "new_size")
    well_formed = (
        0 < old_size <= new_size
        and _is_hash(old_root)
        and _is_hash(new_root)
        and all(_is_hash(node) for node in proof)
    )
    if not well_formed:
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    return len(proof) > 0 and _chain_consistency(old_size, new_size, old_root, new_root, proof)


def _chain_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Steps 2-7 of RFC 9162 2.1.4.2 for well-formed input with ``0 < old_size < new_size``."""
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a perfect subtree of the new one
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_result = new_result = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            old_result = _node(node, old_result)
            new_result = _node(node, new_result)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            new_result = _node(new_result, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and old_result == old_root and new_result == new_root


# --------------------------------------------------------------------------- signed notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, signature bytes (DER ECDSA here)."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    """A note's text (ending in a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]


def note_key_id(key: VerifyingKey) -> bytes:
    """The 4-byte note key ID of an ECDSA key (type 0x02): SHA-256(DER SPKI)[:4]."""
    return _sha256(key.der()).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" or ord(c) < 0x20 for c in name):
        raise NoteError(f"invalid key name {name!r}: must be non-empty, no spaces or '+'")


def sign_note(text: str, name: str, key: SigningKey) -> NoteSignature:
    """Sign a note text (which must end in a newline) under key name ``name``."""
    _check_text(text)
    _check_name(name)
    return NoteSignature(name, note_key_id(key.verifying), key.sign(text.encode("utf-8")))


def format_note(note: SignedNote) -> str:
    """The note as text: its text, a blank line, one ``— name base64`` line per signature."""
    _check_text(note.text)
    if not note.signatures:
        raise NoteError("a signed note needs at least one signature")
    lines = []
    for sig in note.signatures:
        _check_name(sig.name)
        if len(sig.key_id) != 4:
            raise NoteError("a note key ID is 4 bytes")
        blob = base64.b64encode(sig.key_id + sig.signature).decode("ascii")
        lines.append(f"{_SIG_PREFIX}{sig.name} {blob}\n")
    return note.text + "\n" + "".join(lines)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("note text must not contain control characters other than newline")


def parse_note(note: str) -> SignedNote:
    """Split a signed note into text and signatures; raise NoteError if malformed.

    The text is everything up to and including the newline before the last blank line.
    """
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteError("note contains control characters other than newline")
    if not note.endswith("\n"):
        raise NoteError("note does not end with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block.split("\n")[:-1]  # block ends with "\n"
    if not lines:
        raise NoteError("note has no signature lines")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise NoteError(f"note has more than {MAX_NOTE_SIGNATURES} signatures")
    return SignedNote(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise NoteError(f"signature line does not start with an em dash: {line[:40]!r}")
    parts = line[len(_SIG_PREFIX) :].split(" ")
    if len(parts) != 2:
        raise NoteError("signature line is not '— <name> <base64>'")
    name, blob = parts
    _check_name(name)
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"signature of {name} is not base64") from exc
    if len(raw) < 5:
        raise NoteError(f"signature of {name} is too short")
    return NoteSignature(name, raw[:4], raw[4:])


def verify_note(note: SignedNote, name: str, key: VerifyingKey) -> bool:
    """True when some signature by (``name``, ``key``) verifies and none by it fails.

    Signatures of other keys (another name or key ID) are ignored, as the spec requires.
    """
    key_id = note_key_id(key)
    text = note.text.encode("utf-8")
    mine = [s for s in note.signatures if s.name == name and s.key_id == key_id]
    return bool(mine) and all(key.verify(s.signature, text) for s in mine)


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class CheckpointBody:
    """The checkpoint a note's text states: origin, tree size (leaves), 32-byte root."""

    origin: str
    tree_size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def checkpoint_text(origin: str, tree_size: int, root: bytes) -> str:
    """The C2SP tlog-checkpoint note text ``origin\\nsize\\nbase64(root)\\n``."""
    if not origin or "\n" in origin or any(ord(c) < 0x20 for c in origin):
        raise ValueError("the origin must be one non-empty line")
    _require_non_negative(tree_size, "tree_size")
    if not _is_hash(root):
        raise ValueError(f"the root must be a {HASH_SIZE}-byte hash")
    return f"{origin}\n{tree_size}\n{base64.b64encode(root).decode('ascii')}\n"


def parse_checkpoint_text(text: str) -> CheckpointBody:
    """Parse a checkpoint note text; raise NoteError naming what is wrong."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint text needs origin, tree size and root hash lines")
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise NoteError("checkpoint origin is empty")
    if (
        not size_line.isascii()
        or not size_line.isdigit()
        or (size_line.startswith("0") and size_line != "0")
    ):
        raise NoteError(f"checkpoint tree size {size_line[:30]!r} is not a decimal number")
    try:
        root = base64.b64decode(root_line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError("checkpoint root hash is not base64") from exc
    if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_line:
        raise NoteError(f"checkpoint root hash is not a {HASH_SIZE}-byte hash")
    if any(not line for line in extensions):
        raise NoteError("checkpoint extension lines must not be empty")
    return CheckpointBody(origin, int(size_line), root, tuple(extensions))


def open_checkpoint(note: str, key: VerifyingKey, *, origin: str | None = None) -> CheckpointBody:
    """Parse a checkpoint note, check the operator's signature, and return its body.

    The signature must be under the key name equal to the note's origin line (as the
    tlog-checkpoint spec recommends) by ``key``. With ``origin`` given, the note must
    be for that log. Raises NoteError with the reason otherwise.
    """
    parsed = parse_note(note)
    body = parse_checkpoint_text(parsed.text)
    if origin is not None and body.origin != origin:
        raise NoteError(f"checkpoint is for log {body.origin!r}, not {origin!r}")
    if not verify_note(parsed, body.origin, key):
        raise NoteError("checkpoint is not signed by the operator's key")
    return body
