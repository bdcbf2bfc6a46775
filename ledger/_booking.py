"""Settlement events to log entries and postings, and logged entries back to meter state.

Between the meter state and the log, both ways (the second on restart). No I/O."""

from __future__ import annotations

from typing import Any

from wattmesh.broker.messages import canonical_bytes
from wattmesh.ledger.accounts import Posting, correction_postings, settlement_postings
from wattmesh.ledger.entries import (
    Encode,
    EntryKind,
    NewEntry,
    flag_entry,
    parse_flag,
    parse_revision,
    posting_entry,
    revision_entry,
)
from wattmesh.ledger.metering import Flag, Metering, Revision


def book(
    revisions: list[Revision], flags: list[Flag], encode: Encode = canonical_bytes
) -> tuple[list[Posting], list[NewEntry]]:
    """Each settlement or correction entry followed by its postings, then the flags
    (``encode``: see :data:`ledger.entries.Encode`).

    A settlement's network fee (a seller's, ``Settlement.network_fee_micro``, computed
    from its fills when it was settled) is posted with it, to ``operator/fees``.
    Corrections never change it: they revise metered energy, not trades.
    """
    postings: list[Posting] = []
    entries: list[NewEntry] = []
    for revision in revisions:
        entries.append(revision_entry(revision, encode))
        if revision.before is None:
            posted = settlement_postings(revision.after, basis=revision.basis)
        else:
            posted = correction_postings(revision.before, revision.after)
        postings += posted
        entries += [posting_entry(p, encode) for p in posted]
    entries += [flag_entry(f, encode) for f in flags]
    return postings, entries


def replay(metering: Metering, kind: str, obj: dict[str, Any]) -> None:
    """Replay the settlement side of one logged entry (not readings) into ``metering``."""
    if kind in (EntryKind.SETTLEMENT, EntryKind.CORRECTION):
        logged = parse_revision(obj)
        restore = (
            metering.restore_settlement
            if kind == EntryKind.SETTLEMENT
            else metering.restore_correction
        )
        restore(
            logged.settlement, logged.basis, end_interval=logged.end_interval, tariff=logged.tariff
        )
    elif kind == EntryKind.FLAG:
        metering.restore_flag(parse_flag(obj))
    elif kind == EntryKind.CLEARING:
        metering.prune(int(obj["interval"]))  # keeps memory bounded on long logs
