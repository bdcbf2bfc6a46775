"""How a replayed entry differs from the logged one: the first field, both values.

Used by :mod:`ledger.replay` to name the first difference between what the log holds
and what re-executing the market from the log's signed inputs makes.
"""

from __future__ import annotations

import json
from typing import Any

from wattmesh.broker.messages import canonical_bytes
from wattmesh.ledger.entries import NewEntry
from wattmesh.ledger.store import StoredEntry

Problem = tuple[int, str]
"""``(log position, problem)``."""

_encode_text = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def fast_encode(obj: dict[str, Any]) -> bytes:
    """What ``canonical_bytes`` makes of the values the log's entries hold (ASCII keys,
    safe integers, strings), without its type checks (a third of the replay's time): an
    entry whose bytes differ is compared again under ``canonical_bytes``
    (:func:`difference`), so the shortcut never decides a failure."""
    return _encode_text(obj).encode("utf-8")


def _describe(kind: str, obj: dict[str, Any] | None, interval: int) -> str:
    agent = None if obj is None else obj.get("agent")
    of = "" if agent is None else f" of {agent}"
    return f"{kind}{of} for interval {interval}"


def _object(data: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."


def _same(logged: StoredEntry, replayed: NewEntry, mine: dict[str, Any] | None) -> bool:
    """Kind, columns and bytes equal (the bytes under ``canonical_bytes`` when the quick
    encoding differs)."""
    _idx, interval, kind, agent, _seq, data, _leaf = logged
    if (kind, interval, agent) != (replayed.kind, replayed.interval, replayed.agent):
        return False
    if data == replayed.data:
        return True
    try:
        return mine is not None and canonical_bytes(mine) == data
    except ValueError:
        return False


def difference(logged: StoredEntry, replayed: NewEntry) -> str | None:
    """None when ``logged`` is ``replayed`` (kind, columns, bytes); else what differs."""
    idx, _interval, kind, _agent, _seq, data, _leaf = logged
    mine = _object(replayed.data)
    if _same(logged, replayed, mine):
        return None
    what = _describe(replayed.kind, mine, replayed.interval)
    if kind != replayed.kind:
        return f"replay: entry {idx} is a {kind} where the replay makes a {what}"
    theirs = _object(data)
    if theirs is None or mine is None:
        return f"replay: entry {idx} ({what}) is not JSON"
    return _field_difference(logged, replayed, theirs, mine)


def _field_difference(
    logged: StoredEntry, replayed: NewEntry, theirs: dict[str, Any], mine: dict[str, Any]
) -> str:
    """The first field (by name) in which two entries of one kind differ."""
    idx, interval, _kind, agent, _seq, _data, _leaf = logged
    what = _describe(replayed.kind, mine, replayed.interval)
    for field in sorted(theirs.keys() | mine.keys()):
        if field not in theirs or field not in mine or theirs[field] != mine[field]:
            logged_value = _short(theirs[field]) if field in theirs else "(absent)"
            replayed_value = _short(mine[field]) if field in mine else "(absent)"
            return (
                f"replay: entry {idx} ({what}): {field} is {logged_value} in the log, "
                f"{replayed_value} replayed"
            )
    if (interval, agent) != (replayed.interval, replayed.agent):
        return (
            f"replay: entry {idx} ({what}): its columns (interval {interval}, agent {agent}) "
            "do not match"
        )
    return f"replay: entry {idx} ({what}) is not in the log's canonical form"


def first_difference(
    logged: list[StoredEntry], replayed: list[NewEntry], after: int
) -> Problem | None:
    """The first entry where ``logged`` and ``replayed`` differ (both in log order), or
    an entry one of them lacks; ``after``: the log position the group ends at (where a
    missing entry is named when the log holds none of the group's derived entries)."""
    for entry, mine in zip(logged, replayed, strict=False):
        if (
            entry[5] == mine.data
            and entry[2] == mine.kind
            and entry[1] == mine.interval
            and entry[3] == mine.agent
        ):
            continue
        problem = difference(entry, mine)
        if problem is not None:
            return entry[0], problem
    if len(logged) > len(replayed):
        entry = logged[len(replayed)]
        what = _describe(entry[2], _object(entry[5]), entry[1])
        return entry[0], f"replay: entry {entry[0]} ({what}) is one the replay does not make"
    if len(replayed) > len(logged):
        mine = replayed[len(logged)]
        at = logged[-1][0] if logged else after
        what = _describe(mine.kind, _object(mine.data), mine.interval)
        return at, f"replay: the log lacks a {what} after entry {at}"
    return None
