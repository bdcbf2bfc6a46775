"""The verifier's quick paths for settlements, corrections, flags and postings
(``ledger._entrycheck``) decide as the field-by-field checks they skip: the same
outcome, and for a rejection the same reason.

The reference here is the plain check, written out with the ledger's own parsers
(``parse_revision``, ``parse_flag``, ``Posting.from_json``); hypothesis feeds both rows
near valid ones: fields given other values (bools, floats, numeric strings, None, lists,
other enum values, negative and huge numbers), keys dropped or added, posting lines
changed, added or dropped, and rows whose agent or interval column differs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from wattmesh.ledger._entrycheck import check_row, flag_holds, posting_holds, revision_holds
from wattmesh.ledger.accounts import Posting, UnbalancedPosting, settlement_postings
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.entries import (
    NewEntry,
    flag_entry,
    parse_flag,
    parse_revision,
    posting_entry,
    revision_entry,
)
from wattmesh.ledger.metering import Flag, Revision
from wattmesh.ledger.settlement import Basis, FlagReason, Settlement

_MARKET = "m1"
_AGENT = "h00001"
_INTERVAL = 1_750_000_500

_SETTLEMENT = {
    "kind": "settlement",
    "agent": _AGENT,
    "interval": _INTERVAL,
    "end_interval": _INTERVAL + 900,
    "basis": "metered",
    "import_wh": 431,
    "export_wh": 0,
    "bought_wh": 100,
    "sold_wh": 0,
    "grid_buy_wh": 331,
    "grid_sell_wh": 0,
    "p2p_cost_micro": 20_000,
    "grid_cost_micro": 99_300,
    "grid_only_cost_micro": 129_300,
    "retail_micro_per_kwh": 300_000,
    "feed_in_micro_per_kwh": 80_000,
}
_VALID = {
    "settlement": [_SETTLEMENT, _SETTLEMENT | {"network_fee_micro": 1200, "basis": "estimated"}],
    "correction": [_SETTLEMENT | {"kind": "correction", "delta_grid_cost_micro": -5}],
    "flag": [
        {
            "kind": "flag",
            "agent": _AGENT,
            "interval": _INTERVAL,
            "end_interval": _INTERVAL + 900,
            "reason": "beyond_limit",
            "import_wh": 90_000,
            "export_wh": 0,
            "elapsed_s": 900,
            "limit_wh": 4313,
        }
    ],
    "posting": [
        {
            "kind": "posting",
            "agent": _AGENT,
            "interval": _INTERVAL,
            "cause": "grid_purchase",
            "lines": [
                {"account": "household/h00001", "amount_micro": 129_300},
                {"account": "grid", "amount_micro": -129_300},
            ],
        },
        {
            "kind": "posting",
            "agent": _AGENT,
            "interval": _INTERVAL,
            "cause": "p2p_trade",
            "lines": [
                {"account": "household/h00001", "amount_micro": 0},
                {"account": "operator/market", "amount_micro": 7},
                {"account": "operator/fees", "amount_micro": -7},
            ],
        },
    ],
}

_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([2**53, -(2**64), 80_000, 300_000, 300_001, 129_300, -129_300]),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.sampled_from(["12", "-3", "1e3", "", "h00001", "h00002", "grid", "metered", "estimated"]),
    st.sampled_from(["p2p_trade", "grid_sale", "Metered", "beyond_limit", "register_backwards"]),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["account", "amount_micro"]), st.integers(), max_size=2),
)


@st.composite
def _near(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with none, one or two fields given other values, maybe a key dropped
    or added, and for a posting maybe its lines changed."""
    obj = dict(valid)
    changes = draw(st.sampled_from([0, 0, 1, 1, 2]))
    for key in draw(st.lists(st.sampled_from(sorted(obj)), min_size=changes, max_size=changes)):
        obj[key] = draw(_VALUES)
    if draw(st.integers(0, 4)) == 0:
        del obj[draw(st.sampled_from(sorted(obj)))]
    if draw(st.integers(0, 4)) == 0:
        obj[draw(st.sampled_from(["extra", "network_fee_micro", "lines"]))] = draw(_VALUES)
    if isinstance(obj.get("lines"), list) and draw(st.booleans()):
        lines = [dict(line) if isinstance(line, dict) else line for line in obj["lines"]]
        what = draw(st.sampled_from(["field", "field", "drop", "add", "other"]))
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        if what == "field" and lines and isinstance(lines[at], dict):
            key = draw(st.sampled_from(["account", "amount_micro", "extra"]))
            lines[at][key] = draw(_VALUES)
        elif what == "drop" and lines:
            del lines[at]
        elif what == "add":
            lines.append({"account": "grid", "amount_micro": draw(st.sampled_from([0, 1, -1]))})
        elif lines:
            lines[at] = draw(_VALUES)
        obj["lines"] = lines
    return obj


@st.composite
def _rows(draw: st.DrawFn) -> tuple[int, str, str | None, int | None, int, bytes, bytes | None]:
    kind = draw(st.sampled_from(sorted(_VALID)))
    obj = draw(_near(draw(st.sampled_from(_VALID[kind]))))
    agent = draw(st.sampled_from([_AGENT] * 6 + ["h00002", None]))
    interval = draw(st.sampled_from([_INTERVAL] * 6 + [_INTERVAL + 900]))
    return 7, kind, agent, None, interval, json.dumps(obj).encode(), None


def _reference(row: tuple[Any, ...]) -> str | None:
    """The checks field by field, as the verifier made them before its quick paths."""
    kind = row[1]
    obj = json.loads(row[5])
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        return "entry kind does not match its data"
    if kind == "posting":
        try:
            posting = Posting.from_json(obj)
        except UnbalancedPosting as exc:
            return f"posting does not balance: {exc}"
        except ValueError as exc:
            return f"posting is malformed: {exc}"
        if posting.agent != row[2] or posting.interval != row[4]:
            return "posting columns do not match its data"
        return None
    try:
        if kind == "flag":
            flag = parse_flag(obj)
            agent, interval = flag.agent, flag.interval
        else:
            settlement = parse_revision(obj).settlement
            agent, interval = settlement.agent, settlement.interval
    except (KeyError, TypeError, ValueError) as exc:
        return f"{kind} entry is malformed: {exc!r}"
    if agent != row[2] or interval != row[4]:
        return f"{kind} columns do not match its data"
    return None


@settings(max_examples=1200)
@given(_rows())
def test_quick_paths_decide_as_the_checks(row: tuple[Any, ...]) -> None:
    outcome = check_row(_MARKET, row)
    event("holds" if outcome is None else "fails")
    assert outcome == _reference(row)


def _edge(kind: str, index: int = 0, **changes: Any) -> tuple[Any, ...]:
    obj = _VALID[kind][index] | changes
    return 7, kind, _AGENT, None, _INTERVAL, json.dumps(obj).encode(), None


def _lines(*amounts: object) -> list[dict[str, object]]:
    return [{"account": f"a{i}", "amount_micro": amount} for i, amount in enumerate(amounts)]


_EDGES = [  # (row, whether the quick path decides it)
    (_edge("posting", 1, lines=_lines(False, 7, -7)), False),
    (_edge("posting", lines=_lines(True, -1)), False),
    (_edge("posting", lines=_lines(0.0, 0)), False),
    (_edge("posting", lines=_lines(0)), False),
    (_edge("posting", lines=_lines()), False),
    (_edge("posting", lines=_lines(0, 0)), True),
    (_edge("posting", lines=_lines(2**64, -(2**64))), True),
    (_edge("posting", lines=_lines(1, -1, 1)), False),
    (_edge("posting", lines=[{"account": 5, "amount_micro": 1}, *_lines(-1)]), False),
    (_edge("posting", lines={"account": "grid", "amount_micro": 0}), False),
    (_edge("posting", interval=True), False),
    (_edge("posting", cause="Grid_purchase"), False),
    *[
        (_edge("settlement", feed_in_micro_per_kwh=f, retail_micro_per_kwh=r), 0 <= f <= r)
        for f, r in ((0, 0), (5, 5), (6, 5), (-1, 5), (0, -1))
    ],
    (_edge("settlement", interval=True), False),
    (_edge("settlement", import_wh="12"), False),
    (_edge("settlement", import_wh=12.5), False),
    (_edge("settlement", network_fee_micro=0), True),
    (_edge("settlement", network_fee_micro=False), False),
    (_edge("correction", basis="Metered"), False),
    (_edge("flag", reason="Beyond_limit"), False),
    (_edge("flag", limit_wh=None), False),
]


@pytest.mark.parametrize(("row", "quick"), _EDGES)
def test_the_edges_of_the_quick_paths(row: tuple[Any, ...], quick: bool) -> None:
    obj = json.loads(row[5])
    holds = {"flag": flag_holds, "posting": posting_holds}.get(row[1], revision_holds)
    assert holds(row, obj) == quick
    assert check_row(_MARKET, row) == _reference(row)


def _row(entry: NewEntry) -> tuple[int, str, str | None, int | None, int, bytes, None]:
    return 7, entry.kind, entry.agent, entry.agent_seq, entry.interval, entry.data, None


_AMOUNTS = st.integers(min_value=-(10**12), max_value=10**12)


@settings(max_examples=200)
@given(
    st.lists(_AMOUNTS, min_size=9, max_size=9),
    st.integers(0, 10**6),
    st.sampled_from(Basis),
    st.sampled_from(FlagReason),
    st.booleans(),
)
def test_entries_as_the_ledger_writes_them_take_the_quick_paths(
    amounts: list[int], fee: int, basis: Basis, reason: FlagReason, correction: bool
) -> None:
    """The quick paths are what decide the common case (else they would hold but save
    nothing)."""
    settlement = Settlement(_AGENT, _INTERVAL, *amounts, network_fee_micro=fee)
    tariff = GridTariff(300_000, 80_000)
    before = settlement if correction else None
    revision = Revision(settlement, before, basis, _INTERVAL + 900, tariff)
    flag = Flag(_AGENT, _INTERVAL, _INTERVAL + 900, reason, *amounts[:4])
    entries = [revision_entry(revision), flag_entry(flag)]
    entries += [posting_entry(p) for p in settlement_postings(settlement, basis=basis)]
    for entry in entries:
        row = _row(entry)
        obj = json.loads(entry.data)
        quick = {"flag": flag_holds, "posting": posting_holds}.get(entry.kind, revision_holds)
        assert quick(row, obj), entry
        assert check_row(_MARKET, row) is None
