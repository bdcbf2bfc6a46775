"""The ledger read functions: checkpoints, trades, and an entry's proof and owner."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import or_, select

from wattmesh.dashboard import _tables as t
from wattmesh.dashboard._qbase import NotFound, _limit, _state, _trade_json
from wattmesh.dashboard.readmodel import ReadModel
from wattmesh.ledger.checkpoint import checkpoint_text
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.proofs import inclusion_proof_from_source
from wattmesh.ledger.store import LedgerStore

__all__ = ["checkpoints", "entry_owner", "entry_proof", "trades"]

_PERSONAL = frozenset(
    {
        EntryKind.READING,
        EntryKind.ORDER,
        EntryKind.SETTLEMENT,
        EntryKind.CORRECTION,
        EntryKind.FLAG,
        EntryKind.POSTING,
    }
)


def checkpoints(rm: ReadModel, *, limit: int = 50) -> dict[str, Any]:
    """The latest ``limit`` signed checkpoints, newest first, and the operator's key."""
    c = t.checkpoint
    with rm.engine.connect() as conn:
        rows = conn.execute(
            select(c.c.tree_size, c.c.interval, c.c.root, c.c.kid)
            .order_by(c.c.tree_size.desc())
            .limit(_limit(limit))
        ).all()
        state = _state(conn, "operator_kid", "operator_public_key", "origin")
    return {
        "checkpoints": [
            {"tree_size": size, "interval": at, "root_hex": bytes(root).hex(), "kid": kid}
            for size, at, root, kid in rows
        ],
        "operator": {
            "kid": state["operator_kid"],
            "public_key_spki_b64": state["operator_public_key"],
            "origin": state["origin"],
        },
    }


def entry_proof(rm: ReadModel, ledger: LedgerStore, idx: int) -> dict[str, Any]:
    """The inclusion proof of log entry ``idx`` in the ledger's latest signed checkpoint,
    with what a browser needs to check it: the entry, the path, the signed text, the
    signature and the operator's key."""
    entry = ledger.entry(idx) if idx >= 0 else None
    cp = ledger.latest_checkpoint()
    if entry is None or cp is None or idx >= cp.tree_size:
        raise NotFound(f"no entry {idx} under a signed checkpoint")
    with rm.engine.connect() as conn:
        state = _state(conn, "origin", "operator_kid", "operator_public_key")
    origin = state["origin"]
    if origin is None:
        raise NotFound("the read model has not read the ledger's origin yet")
    path = inclusion_proof_from_source(ledger, idx, cp.tree_size)
    return {
        "idx": idx,
        "kind": entry.kind,
        "entry_b64": base64.b64encode(entry.data).decode("ascii"),
        "leaf_hash_hex": bytes(entry.leaf_hash).hex(),
        "tree_size": cp.tree_size,
        "path_hex": [h.hex() for h in path],
        "root_hex": cp.root.hex(),
        "checkpoint_text": checkpoint_text(origin, cp.tree_size, cp.root).decode("utf-8"),
        "signature_der_b64": base64.b64encode(cp.signature).decode("ascii"),
        "operator": {
            "kid": state["operator_kid"],
            "public_key_spki_b64": state["operator_public_key"],
        },
    }


def entry_owner(rm: ReadModel, ledger: LedgerStore, idx: int) -> str | None:
    """The household a personal entry (reading, order, settlement, correction, flag,
    posting) belongs to; None for a public one (trade, clearing, checkpoint_ref, keys)."""
    del rm  # the log says it; the read model keeps no copy of readings
    entry = ledger.entry(idx) if idx >= 0 else None
    if entry is None:
        raise NotFound(f"no entry {idx} in the log")
    if entry.kind not in _PERSONAL:
        return None
    if entry.agent is None:  # pragma: no cover - the ledger logs every personal entry with it
        raise NotFound(f"entry {idx} names no household")
    return entry.agent


def trades(
    rm: ReadModel,
    *,
    interval: int | None = None,
    household: str | None = None,
    limit: int = 200,
) -> dict[str, Any]:
    """The latest ``limit`` trades, newest first (of ``interval``, of ``household``)."""
    tr = t.trade
    query = select(tr).order_by(tr.c.idx.desc()).limit(_limit(limit))
    if interval is not None:
        query = query.where(tr.c.interval == interval)
    if household is not None:
        query = query.where(or_(tr.c.buyer == household, tr.c.seller == household))
    with rm.engine.connect() as conn:
        return {"trades": [_trade_json(r) for r in conn.execute(query)]}
