"""Signed checkpoints (tree heads) of the ledger's Merkle log.

The signed text follows the body of a C2SP tlog-checkpoint note::

    <origin>\n<tree size>\n<base64 root hash>\n

signed with the market operator's ECDSA P-256 key (DER signature, RFC 6979 nonces).
"""

from __future__ import annotations

import base64

from broker.keys import SigningKey, VerifyingKey
from ledger.store import Checkpoint


def origin_for(market_id: str) -> str:
    return f"wattmesh/{market_id}"


def checkpoint_text(origin: str, tree_size: int, root: bytes) -> bytes:
    if tree_size < 0 or len(root) != 32 or "\n" in origin:
        raise ValueError("invalid checkpoint fields")
    return f"{origin}\n{tree_size}\n{base64.b64encode(root).decode('ascii')}\n".encode()


def sign_checkpoint(
    key: SigningKey, *, origin: str, tree_size: int, root: bytes, interval: int
) -> Checkpoint:
    signature = key.sign(checkpoint_text(origin, tree_size, root))
    return Checkpoint(tree_size, interval, root, key.kid, signature)


def verify_checkpoint(checkpoint: Checkpoint, *, origin: str, key: VerifyingKey) -> bool:
    if checkpoint.kid != key.kid:
        return False
    try:
        text = checkpoint_text(origin, checkpoint.tree_size, checkpoint.root)
    except ValueError:
        return False
    return key.verify(checkpoint.signature, text)
