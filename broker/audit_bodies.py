"""The operator's audit messages: the signed checkpoint and per-household receipts.

After each interval the operator publishes (docs/protocol.md, "Audit"):

* ``checkpoint`` (retained on ``market/checkpoint``; also the answer to a household's
  ``audit`` request on ``household/<agent>/checkpoint``): the C2SP signed checkpoint
  note of the log and an RFC 9162 consistency proof from an older tree size
  ``old_size`` (0: no proof, the log's first checkpoint);
* ``receipt`` (``household/<agent>/receipt``): the log entries of one household
  appended in the interval (its readings, order, trades, settlements, corrections,
  flags, postings), each with its index, its exact bytes and its inclusion proof
  against the checkpoint of ``tree_size``. A receipt with more than
  :data:`MAX_RECEIPT_ENTRIES` entries is split into ``parts``.

Both are bodies of the ordinary signed envelope (:mod:`broker.messages`), signed by the
operator. Hashes are 32-byte SHA-256 in lowercase hex, sizes count leaves, indices are
zero-based. :func:`message_leaf` gives the log bytes of a household's own signed
message, so the household can tell its entry from the bytes it sent.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from wattmesh.broker._validate import as_object, exact_keys, get_int, get_str, schema_error

__all__ = [
    "MAX_RECEIPT_ENTRIES",
    "CheckpointNoteBody",
    "ReceiptBody",
    "ReceiptEntry",
    "log_origin",
    "message_leaf",
]

if TYPE_CHECKING:
    from wattmesh.broker.messages import SignedMessage

MAX_RECEIPT_ENTRIES: Final = 32
"""Most entries in one receipt message (a household has a handful per interval)."""
MAX_PROOF_HASHES: Final = 64
"""Most hashes in one proof: enough for any tree of up to 2**64 leaves."""
MAX_ENTRY_CHARS: Final = 16_384
"""Longest base64 entry in a receipt (a household's entries are below 1 KiB)."""
MAX_NOTE_CHARS: Final = 4_096
MAX_PARTS: Final = 10_000


def _hashes(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise schema_error(f"{what} must be a list of at most {MAX_PROOF_HASHES} hashes")
    out = []
    for item in value:
        if not isinstance(item, str) or len(item) != 64 or item != item.lower():
            raise schema_error(f"{what} must hold 64-digit lowercase hex hashes")
        try:
            out.append(bytes.fromhex(item))
        except ValueError as exc:
            raise schema_error(f"{what} must hold 64-digit lowercase hex hashes") from exc
    return tuple(out)


@dataclass(frozen=True)
class CheckpointNoteBody:
    """The signed checkpoint note and a consistency proof from ``old_size`` leaves."""

    KIND: ClassVar[str] = "checkpoint"
    note: str
    old_size: int  # 0: no proof (the first checkpoint)
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "note": self.note,
            "old_size": self.old_size,
            "proof": [h.hex() for h in self.proof],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CheckpointNoteBody:
        exact_keys(obj, {"note", "old_size", "proof"}, "checkpoint")
        return cls(
            note=get_str(obj, "note", max_len=MAX_NOTE_CHARS),
            old_size=get_int(obj, "old_size"),
            proof=_hashes(obj["proof"], "proof"),
        )


@dataclass(frozen=True)
class ReceiptEntry:
    """One log entry: its index, its exact bytes, its inclusion proof (leaf first)."""

    index: int
    data: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "data": base64.b64encode(self.data).decode("ascii"),
            "proof": [h.hex() for h in self.proof],
        }

    @classmethod
    def from_json(cls, value: Any) -> ReceiptEntry:
        obj = as_object(value, "receipt entry")
        exact_keys(obj, {"index", "data", "proof"}, "receipt entry")
        text = get_str(obj, "data", max_len=MAX_ENTRY_CHARS)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise schema_error("data must be base64") from exc
        return cls(index=get_int(obj, "index"), data=data, proof=_hashes(obj["proof"], "proof"))


@dataclass(frozen=True)
class ReceiptBody:
    """Part ``part`` of ``parts`` (1-based) of a household's entries of one interval,
    proved against the checkpoint of ``tree_size`` leaves."""

    KIND: ClassVar[str] = "receipt"
    household: str
    tree_size: int
    part: int
    parts: int
    entries: tuple[ReceiptEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "household": self.household,
            "tree_size": self.tree_size,
            "part": self.part,
            "parts": self.parts,
            "entries": [e.to_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ReceiptBody:
        exact_keys(obj, {"household", "tree_size", "part", "parts", "entries"}, "receipt")
        items = obj["entries"]
        if not isinstance(items, list) or len(items) > MAX_RECEIPT_ENTRIES:
            raise schema_error(f"entries must be a list of at most {MAX_RECEIPT_ENTRIES}")
        parts = get_int(obj, "parts", minimum=1, maximum=MAX_PARTS)
        return cls(
            household=get_str(obj, "household", max_len=64),
            tree_size=get_int(obj, "tree_size", minimum=1),
            part=get_int(obj, "part", minimum=1, maximum=parts),
            parts=parts,
            entries=tuple(ReceiptEntry.from_json(e) for e in items),
        )


def log_origin(market_id: str) -> str:
    """The origin line (and note key name) of a market's log: ``wattmesh/<market_id>``."""
    return f"wattmesh/{market_id}"


def message_leaf(message: SignedMessage) -> bytes:
    """The log entry bytes of a household's signed reading or order (docs/protocol.md:
    ``{"kind", "sig", "signed"}`` with the signed bytes exactly as signed)."""
    return (
        b'{"kind":"'
        + message.header.kind.encode()
        + b'","sig":"'
        + base64.b64encode(message.signature)
        + b'","signed":'
        + message.signed_bytes
        + b"}"
    )
