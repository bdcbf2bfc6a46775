"""The leaves of the ledger's Merkle log: canonical JSON bytes, one kind per entry.

Signed household messages are stored as the envelope the household signed, so anyone
can re-check the signature from the log alone; the key that checks it is itself an
earlier ``key`` entry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import SignedMessage, canonical_bytes
from wattmesh.ledger.accounts import Posting
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.metering import Flag, Revision
from wattmesh.ledger.settlement import Basis, FlagReason, Settlement

__all__ = ["EntryKind", "parse_flag", "parse_revision"]


class EntryKind:
    KEY = "key"
    KEY_ROTATION = "key_rotation"
    KEY_REVOCATION = "key_revocation"
    READING = "reading"
    ORDER = "order"
    CLEARING = "clearing"
    TRADE = "trade"
    SETTLEMENT = "settlement"
    CORRECTION = "correction"
    FLAG = "flag"
    POSTING = "posting"
    CHECKPOINT_REF = "checkpoint_ref"
    ANOMALY = "anomaly"  # the forecasting service's signed flag (ledger.anomalies)
    MARKET_PARAMS = "market_params"  # mechanism and metering rules (ledger._params)


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


def key_rotation_entry(*, agent: str, old_kid: str, key: VerifyingKey, interval: int) -> NewEntry:
    """``key`` replaces the agent's current key ``old_kid`` from this entry on."""
    obj = {
        "kind": EntryKind.KEY_ROTATION,
        "agent": agent,
        "old_kid": old_kid,
        "kid": key.kid,
        "public_key": base64.b64encode(key.der()).decode("ascii"),
    }
    return NewEntry(EntryKind.KEY_ROTATION, interval, agent, None, canonical_bytes(obj))


def key_revocation_entry(*, agent: str, kid: str, reason: str, interval: int) -> NewEntry:
    """The agent's key ``kid`` verifies nothing from this entry on."""
    obj = {"kind": EntryKind.KEY_REVOCATION, "agent": agent, "kid": kid, "reason": reason}
    return NewEntry(EntryKind.KEY_REVOCATION, interval, agent, None, canonical_bytes(obj))


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


_INT_LIMIT = 2**53 - 1
_json_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses
_TRADE_TEMPLATE = (
    '{"buy_order":%s,"buyer":%s,"interval":%d,"kind":"trade","price_micro_per_kwh":%d,'
    '"quantity_wh":%d,"sell_order":%s,"seller":%s}'
)


def trade_entry(*, interval: int, fill: Fill) -> NewEntry:
    """A trade. Its bytes are formatted from a template with the keys in RFC 8785 order
    (thousands per interval; ``canonical_bytes`` checks every value's type first);
    values outside the template's safe types take ``canonical_bytes``. Both give the
    same bytes (``tests/test_entries_fast.py``)."""
    ints = (interval, fill.price_micro_per_kwh, fill.quantity_wh)
    strs = (fill.buy_ref, fill.buyer, fill.sell_ref, fill.seller)
    data: bytes | None = None
    if all(type(v) is int and -_INT_LIMIT <= v <= _INT_LIMIT for v in ints) and all(
        type(v) is str for v in strs
    ):
        text = _TRADE_TEMPLATE % (
            _json_str(fill.buy_ref),
            _json_str(fill.buyer),
            interval,
            fill.price_micro_per_kwh,
            fill.quantity_wh,
            _json_str(fill.sell_ref),
            _json_str(fill.seller),
        )
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            data = None  # a lone surrogate: canonical_bytes raises its own error
    if data is None:
        data = canonical_bytes(_trade_object(interval, fill))
    return NewEntry(EntryKind.TRADE, interval, None, None, data)


def _trade_object(interval: int, fill: Fill) -> dict[str, Any]:
    return {
        "kind": EntryKind.TRADE,
        "interval": interval,
        "buyer": fill.buyer,
        "seller": fill.seller,
        "quantity_wh": fill.quantity_wh,
        "price_micro_per_kwh": fill.price_micro_per_kwh,
        "buy_order": fill.buy_ref,
        "sell_order": fill.sell_ref,
    }


Encode = Callable[[dict[str, Any]], bytes]
"""How an entry's object becomes its bytes: ``canonical_bytes``; the replay
(:mod:`ledger.replay`) passes the same encoder without its type checks."""


def revision_entry(revision: Revision, encode: Encode = canonical_bytes) -> NewEntry:
    """A ``settlement`` (first revision) or a ``correction`` (a later one, in full)."""
    s = revision.after
    kind = EntryKind.SETTLEMENT if revision.before is None else EntryKind.CORRECTION
    obj: dict[str, Any] = {
        "kind": kind,
        **s.to_json(),
        "basis": revision.basis.value,
        "end_interval": revision.end_interval,
        "retail_micro_per_kwh": revision.tariff.retail_micro_per_kwh,
        "feed_in_micro_per_kwh": revision.tariff.feed_in_micro_per_kwh,
    }
    if revision.before is not None:
        obj["delta_grid_cost_micro"] = s.grid_cost_micro - revision.before.grid_cost_micro
    return NewEntry(kind, s.interval, s.agent, None, encode(obj))


@dataclass(frozen=True)
class LoggedRevision:
    """A ``settlement`` or ``correction`` entry read back from the log."""

    settlement: Settlement
    basis: Basis
    end_interval: int
    tariff: GridTariff


SETTLEMENT_FIELDS = (
    "import_wh",
    "export_wh",
    "bought_wh",
    "sold_wh",
    "grid_buy_wh",
    "grid_sell_wh",
    "p2p_cost_micro",
    "grid_cost_micro",
    "grid_only_cost_micro",
)
"""The integer fields of a logged settlement after agent and interval, in
:class:`ledger.settlement.Settlement`'s order."""


def parse_revision(obj: dict[str, Any]) -> LoggedRevision:
    """Read a logged ``settlement`` or ``correction``; KeyError/ValueError when malformed."""
    settlement = Settlement(
        str(obj["agent"]), int(obj["interval"]), *(int(obj[name]) for name in SETTLEMENT_FIELDS)
    )
    fee = int(obj.get("network_fee_micro", 0))  # absent when 0 (see Settlement.to_json)
    if fee:
        settlement = replace(settlement, network_fee_micro=fee)
    tariff = GridTariff(int(obj["retail_micro_per_kwh"]), int(obj["feed_in_micro_per_kwh"]))
    return LoggedRevision(settlement, Basis(obj["basis"]), int(obj["end_interval"]), tariff)


def flag_entry(flag: Flag, encode: Encode = canonical_bytes) -> NewEntry:
    obj: dict[str, Any] = {
        "kind": EntryKind.FLAG,
        "agent": flag.agent,
        "interval": flag.interval,
        "end_interval": flag.end_interval,
        "reason": flag.reason.value,
        "import_wh": flag.import_wh,
        "export_wh": flag.export_wh,
        "elapsed_s": flag.elapsed_s,
        "limit_wh": flag.limit_wh,
    }
    return NewEntry(EntryKind.FLAG, flag.interval, flag.agent, None, encode(obj))


def parse_flag(obj: dict[str, Any]) -> Flag:
    return Flag(
        str(obj["agent"]),
        int(obj["interval"]),
        int(obj["end_interval"]),
        FlagReason(obj["reason"]),
        int(obj["import_wh"]),
        int(obj["export_wh"]),
        int(obj["elapsed_s"]),
        int(obj["limit_wh"]),
    )


def posting_entry(posting: Posting, encode: Encode = canonical_bytes) -> NewEntry:
    obj: dict[str, Any] = {"kind": EntryKind.POSTING, **posting.to_json()}
    return NewEntry(EntryKind.POSTING, posting.interval, posting.agent, None, encode(obj))


def checkpoint_ref_entry(*, interval: int, tree_size: int, root: bytes) -> NewEntry:
    """The log's own record of the signed checkpoint it had reached: the first entry of
    every interval, naming the tree size and root that the previous checkpoint signed.
    The tree thereby commits to the whole chain of its checkpoints."""
    obj = {
        "kind": EntryKind.CHECKPOINT_REF,
        "interval": interval,
        "tree_size": tree_size,
        "root": root.hex(),
    }
    return NewEntry(EntryKind.CHECKPOINT_REF, interval, None, None, canonical_bytes(obj))
