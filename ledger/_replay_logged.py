"""The replay of a close logged before its ledger logged ``market_params``.

Without the metering rules (connection limits, backfill window) the energy of a
settlement cannot be re-derived from the readings, so here it is taken as logged and
everything that follows from it is recomputed (:mod:`ledger.replay`): a settlement's
trades, their money and fee from the last cleared interval's trades, tariff and fee;
its grid part from its energy and that tariff; a correction from the estimate it
revises (its trades and tariff unchanged); the postings of each. Flags are taken as
logged (re-encoded: a malformed one still differs).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from wattmesh.broker.errors import FailureError, LedgerError
from wattmesh.ledger._booking import book
from wattmesh.ledger._replay_diff import fast_encode
from wattmesh.ledger.entries import EntryKind, NewEntry, flag_entry, parse_flag, parse_revision
from wattmesh.ledger.metering import Revision
from wattmesh.ledger.settlement import Basis, RegisterError, traded_position, with_energy
from wattmesh.ledger.store import StoredEntry

if TYPE_CHECKING:
    from wattmesh.ledger.replay import Cleared

_REVISIONS = frozenset({EntryKind.SETTLEMENT, EntryKind.CORRECTION, EntryKind.FLAG})


class _Unreplayable(LedgerError, FailureError, ValueError):
    pass


def logged_revisions(
    derived: list[StoredEntry], due: Cleared | None, estimates: dict[tuple[str, int], Any]
) -> list[NewEntry]:
    """The settlement, correction, posting and flag entries that the logged ones among
    ``derived`` make (see the module doc); ``estimates``: the open estimates so far, by
    (agent, interval), kept up here. An entry that cannot be replayed at all (malformed,
    settling an interval that did not trade last) yields nothing, so the comparison
    names it."""
    out: list[NewEntry] = []
    for entry in derived:
        kind = entry[2]
        if kind not in _REVISIONS:
            continue
        try:
            obj = json.loads(entry[5])
            if kind == EntryKind.FLAG:
                out.append(flag_entry(parse_flag(obj), fast_encode))
                continue
            revision = _revision(kind, obj, due, estimates)
        except (KeyError, TypeError, ValueError, RegisterError):
            return out
        s = revision.after
        if revision.basis is Basis.ESTIMATED:
            estimates[(s.agent, s.interval)] = revision
        else:
            estimates.pop((s.agent, s.interval), None)
        out += book([revision], [], fast_encode)[1]
    return out


def _revision(
    kind: str, obj: dict[str, Any], due: Cleared | None, estimates: dict[tuple[str, int], Any]
) -> Revision:
    logged = parse_revision(obj)
    s = logged.settlement
    if kind == EntryKind.SETTLEMENT:
        if due is None or s.interval != due.interval:
            raise _Unreplayable("settles an interval that is not the last cleared one")
        base = traded_position(s.agent, s.interval, due.fills, due.fee_micro_per_kwh)
        after = with_energy(base, import_wh=s.import_wh, export_wh=s.export_wh, tariff=due.tariff)
        return Revision(after, None, logged.basis, logged.end_interval, due.tariff)
    before: Revision | None = estimates.get((s.agent, s.interval))
    if before is None:
        raise _Unreplayable("corrects no open estimate")
    after = with_energy(
        before.after, import_wh=s.import_wh, export_wh=s.export_wh, tariff=before.tariff
    )
    return Revision(after, before.after, logged.basis, before.end_interval, before.tariff)
