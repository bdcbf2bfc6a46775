"""Snapshots of the ledger's derived state, so that a restart need not replay the log.

Everything the ledger keeps in memory between intervals follows from the log (a
restart can replay every entry, :mod:`ledger._restore`), but replaying costs tens of
microseconds per entry, and a market of thousands of households logs millions of
entries a day. So each gate closure also stores, in the transaction that logs the
interval, a snapshot of that state as of the new tree size: the tree's peaks, the log
positions of the key entries (applied again, they give the key ring: the keys
themselves are not copied into every snapshot), each household's last seq, the meter
state and the last cleared interval (tariff and trades, which the next close settles).
A restart loads the latest snapshot and replays only the entries after it; one that is
missing, of another version, malformed, or whose tree is not the signed checkpoint's
at its size is ignored, and the whole log is replayed instead.

The snapshot is derived, not evidence: it is not part of the log or of any proof, it may
be deleted at any time (the next restart then replays everything), and ``ledger
verify`` never reads it. Pure functions over JSON values; no I/O.

Format (version 1): a JSON object ``{"version": 1, "tree_size": int, "peaks": [hex],
"key_entries": [int], "last_seqs": {agent: int}, "metering": ..., "last_interval":
int|null, "last_tariff": [retail, feed_in]|null, "last_fills": [[buyer, seller,
quantity_wh, price_micro_per_kwh, buy_ref, sell_ref]]}`` (``metering``:
:meth:`ledger.metering.Metering.to_state`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wattmesh.broker.errors import FailureError, LedgerError
from wattmesh.ledger._merkle import CompactRange
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.keyring import KeyRing
from wattmesh.ledger.metering import Metering, MeteringConfig

SNAPSHOT_VERSION = 1


class SnapshotError(LedgerError, FailureError, ValueError):
    """A stored snapshot that cannot be used (another version, or malformed)."""


@dataclass(frozen=True)
class DecodedSnapshot:
    """A snapshot as read: the state, its key ring still empty, and the log positions
    of the key entries to apply to it, in order."""

    state: LedgerState
    key_entries: tuple[int, ...]


@dataclass(frozen=True)
class LedgerState:
    """What the ledger keeps in memory between intervals, as of ``tree.size`` entries."""

    tree: CompactRange
    keyring: KeyRing
    last_seqs: Mapping[str, int]
    metering: Metering
    last_interval: int | None
    last_tariff: GridTariff | None
    last_fills: tuple[Fill, ...]


def encode_snapshot(state: LedgerState) -> bytes:
    """The snapshot of ``state`` (compact JSON, UTF-8; equal states give equal bytes)."""
    tariff = state.last_tariff
    obj: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "tree_size": state.tree.size,
        "peaks": [peak.hex() for peak in state.tree.peaks],
        "key_entries": list(state.keyring.applied),
        "last_seqs": dict(sorted(state.last_seqs.items())),
        "metering": state.metering.to_state(),
        "last_interval": state.last_interval,
        "last_tariff": None
        if tariff is None
        else [tariff.retail_micro_per_kwh, tariff.feed_in_micro_per_kwh],
        "last_fills": [
            [f.buyer, f.seller, f.quantity_wh, f.price_micro_per_kwh, f.buy_ref, f.sell_ref]
            for f in state.last_fills
        ],
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_snapshot(data: bytes, metering: MeteringConfig | None) -> DecodedSnapshot:
    """The state a snapshot holds, its meter state under ``metering``; SnapshotError
    when it is of another version or does not parse as one."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"snapshot is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("version") != SNAPSHOT_VERSION:
        version = obj.get("version") if isinstance(obj, dict) else None
        raise SnapshotError(f"snapshot version {version!r}, this ledger reads {SNAPSHOT_VERSION}")
    try:
        tariff = obj["last_tariff"]
        key_entries = tuple(int(at) for at in obj["key_entries"])
        state = LedgerState(
            tree=CompactRange.from_peaks(
                int(obj["tree_size"]), [bytes.fromhex(p) for p in obj["peaks"]]
            ),
            keyring=KeyRing(),
            last_seqs={str(a): int(s) for a, s in obj["last_seqs"].items()},
            metering=Metering.from_state(obj["metering"], metering),
            last_interval=obj["last_interval"],
            last_tariff=None if tariff is None else GridTariff(tariff[0], tariff[1]),
            last_fills=tuple(Fill(*fields) for fields in obj["last_fills"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"malformed snapshot: {exc!r}"[:300]) from exc
    return DecodedSnapshot(state, key_entries)
