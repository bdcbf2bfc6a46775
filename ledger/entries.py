"""The leaves of the ledger's Merkle log: canonical JSON bytes, one kind per entry.

Signed household messages are stored as the envelope the household signed, so anyone
can re-check the signature from the log alone; the key that checks it is itself an
earlier ``key`` entry.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from broker.keys import VerifyingKey
from broker.messages import SignedMessage, canonical_bytes
from ledger.clearing import Fill, GridTariff
from ledger.settlement import Settlement


class EntryKind:
    KEY = "key"
    READING = "reading"
    ORDER = "order"
    CLEARING = "clearing"
    TRADE = "trade"
    SETTLEMENT = "settlement"


@dataclass(frozen=True)
class NewEntry:
    """An entry about to be appended: its kind, interval, optional (agent, seq), and bytes."""

    kind: str
    interval: int
    agent: str | None
    agent_seq: int | None
    data: bytes


def key_entry(*, agent: str, key: VerifyingKey, interval: int) -> NewEntry:
    obj = {
        "kind": EntryKind.KEY,
        "agent": agent,
        "kid": key.kid,
        "public_key": base64.b64encode(key.der()).decode("ascii"),
    }
    return NewEntry(EntryKind.KEY, interval, agent, None, canonical_bytes(obj))


def message_entry(message: SignedMessage) -> NewEntry:
    """A signed household message (reading or order) exactly as signed."""
    kind = message.header.kind
    if kind not in (EntryKind.READING, EntryKind.ORDER):
        raise ValueError(f"only readings and orders are logged as messages, not {kind}")
    data = (
        b'{"kind":"'
        + kind.encode()
        + b'","sig":"'
        + base64.b64encode(message.signature)
        + b'","signed":'
        + message.signed_bytes
        + b"}"
    )
    return NewEntry(kind, message.header.interval, message.header.agent, message.header.seq, data)


def clearing_entry(
    *,
    interval: int,
    tariff: GridTariff,
    price_micro_per_kwh: int | None,
    volume_wh: int,
    orders: int,
    rejected: int,
    mechanism: dict[str, Any] | None = None,
) -> NewEntry:
    """``mechanism`` (its ``to_json()`` fields) only for a non-default mechanism."""
    obj: dict[str, Any] = {
        "kind": EntryKind.CLEARING,
        "interval": interval,
        "retail_micro_per_kwh": tariff.retail_micro_per_kwh,
        "feed_in_micro_per_kwh": tariff.feed_in_micro_per_kwh,
        "price_micro_per_kwh": price_micro_per_kwh,
        "volume_wh": volume_wh,
        "orders": orders,
        "rejected": rejected,
    }
    if mechanism is not None:
        obj.update(mechanism)
    return NewEntry(EntryKind.CLEARING, interval, None, None, canonical_bytes(obj))


def trade_entry(*, interval: int, fill: Fill) -> NewEntry:
    obj = {
        "kind": EntryKind.TRADE,
        "interval": interval,
        "buyer": fill.buyer,
        "seller": fill.seller,
        "quantity_wh": fill.quantity_wh,
        "price_micro_per_kwh": fill.price_micro_per_kwh,
        "buy_order": fill.buy_ref,
        "sell_order": fill.sell_ref,
    }
    return NewEntry(EntryKind.TRADE, interval, None, None, canonical_bytes(obj))


def settlement_entry(settlement: Settlement) -> NewEntry:
    obj: dict[str, Any] = {"kind": EntryKind.SETTLEMENT, **settlement.to_json()}
    return NewEntry(
        EntryKind.SETTLEMENT, settlement.interval, settlement.agent, None, canonical_bytes(obj)
    )
