"""The checks of ``ledger verify`` that need nothing but one entry (inline or on workers).

:mod:`ledger.verify` walks the log in order and keeps what depends on order: positions,
leaf hashes, the Merkle tree, the key ring, order ids, checkpoint references. For each
entry whose remaining checks depend only on its own bytes (and, for a signed reading
or order, on the key valid for its agent at that position, which the walk looks up) it
hands a :data:`Row` to a :class:`RowChecker`:

- a signed message: parse, schema, canonical (RFC 8785) bytes, columns, market and
  interval, key id and ECDSA signature (:mod:`ledger._logged`);
- an anomaly flag: the forecaster's signature under the key it holds
  (:mod:`ledger.anomalies`);
- a clearing, settlement, correction, flag, posting or market_params: JSON of the kind
  its column names; market parameters parse; settlements, corrections and flags parse
  and match their columns; postings parse, match their columns and balance.

``cryptography`` holds the GIL while it verifies, so threads do not help; worker
processes take chunks of rows and return the first that fails, with the reason. The
walk asks for failures as chunks finish, so the earliest problem wins.
"""

from __future__ import annotations

import base64
import binascii
import json
import multiprocessing
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache
from typing import Any

from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.ledger._logged import PlainHeader, decode_logged, plain_header
from wattmesh.ledger._params import parse_market_params
from wattmesh.ledger.accounts import Cause, Posting, UnbalancedPosting
from wattmesh.ledger.anomalies import ANOMALY_KIND, anomaly_problem
from wattmesh.ledger.entries import SETTLEMENT_FIELDS, EntryKind, parse_flag, parse_revision
from wattmesh.ledger.settlement import Basis, FlagReason

CHUNK = 1000
"""Rows per hand-off to a worker (about 0.1 s of work)."""

MAX_PENDING_PER_WORKER = 4
"""Chunks queued per worker before the walk waits: bounds memory on any log size."""

Row = tuple[int, str, str | None, int | None, int, bytes, bytes | None]
"""``(idx, kind, agent, agent_seq, interval, data, key DER)``; the DER of the key valid
for the agent at ``idx`` for a signed message, else None."""

Failure = tuple[int, str]
"""``(log position, problem)``."""

_MESSAGE_KINDS = frozenset({EntryKind.READING, EntryKind.ORDER})
_SIGNED_SEP = b'","signed":'
_DECODE = json.JSONDecoder().decode


@lru_cache(maxsize=65_536)
def _key(der: bytes) -> VerifyingKey:
    return VerifyingKey.from_der(der)


def check_row(market: str, row: Row) -> str | None:
    """The problem with one entry, or None when it holds."""
    kind = row[1]
    if kind in _MESSAGE_KINDS:
        return _check_message(market, row)
    if kind == ANOMALY_KIND:
        return anomaly_problem(market, row[2], row[4], row[5])
    obj = _entry_object(row)
    if isinstance(obj, str):
        return obj
    if kind == EntryKind.POSTING:
        return _check_posting(row, obj)
    if kind in (EntryKind.SETTLEMENT, EntryKind.CORRECTION, EntryKind.FLAG):
        return _check_settlement(row, obj)
    return _check_other(kind, obj)


def _check_other(kind: str, obj: dict[str, Any]) -> str | None:
    """A clearing (its figures are the replay's: :mod:`ledger.replay`) or market_params."""
    if kind == EntryKind.CLEARING:
        return None
    if kind != EntryKind.MARKET_PARAMS:
        return f"unknown entry kind {kind!r}"
    try:
        parse_market_params(obj)
    except ValueError as exc:
        return f"market_params entry is malformed: {exc}"
    return None


def _entry_object(row: Row) -> dict[str, Any] | str:
    """An unsigned entry's JSON object, or the problem with it."""
    try:
        obj = _DECODE(row[5].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "entry data is not JSON"
    if not isinstance(obj, dict) or obj.get("kind") != row[1]:
        return "entry kind does not match its data"
    return obj


def _decode_message(kind: str, data: bytes) -> tuple[PlainHeader, bytes, bytes] | str:
    """A reading or order in the layout the log writes, ``{"kind":K,"sig":S,"signed":M}``
    (the walk has checked the layout): the header fields, signature and signed bytes M
    (decoded at a glance when M is plain, see :mod:`ledger._logged`); or the problem."""
    head = len(kind) + 18  # {"kind":"<kind>","sig":"
    cut = data.find(_SIGNED_SEP, head)
    try:
        signature = base64.b64decode(data[head:cut], validate=True)
    except (binascii.Error, ValueError):
        return "stored message's sig is not base64"
    signed = data[cut + len(_SIGNED_SEP) : -1]
    fields = plain_header(kind, signed)
    if fields is None:
        try:
            h = decode_logged(kind, signed, signature).header
        except MessageError as exc:
            return f"stored message does not decode: {exc}"
        fields = h.market, h.interval, h.agent, h.kid, h.seq
    return fields, signature, signed


def _check_message(market: str, row: Row) -> str | None:
    """Columns, market and interval, key id and signature of a logged message."""
    _idx, kind, agent, agent_seq, interval, data, der = row
    decoded = _decode_message(kind, data)
    if isinstance(decoded, str):
        return decoded
    (signed_market, signed_interval, signed_agent, kid, seq), signature, signed = decoded
    if signed_agent != agent or seq != agent_seq:
        return "entry columns do not match the signed message"
    if signed_market != market or signed_interval != interval:
        return "signed message belongs to another market or interval"
    key = None if der is None else _key(der)  # the walk hands messages with a key only
    if key is None or key.kid != kid:
        return "signature check failed: message names another key id"
    if not key.verify(signature, signed):
        return "signature check failed: signature does not verify"
    return None


def _check_settlement(row: Row, obj: dict[str, Any]) -> str | None:
    """Settlements, corrections and flags must parse and match their columns."""
    kind = row[1]
    if flag_holds(row, obj) if kind == EntryKind.FLAG else revision_holds(row, obj):
        return None
    try:
        if kind == EntryKind.FLAG:
            flag = parse_flag(obj)
            agent, interval = flag.agent, flag.interval
        else:
            s = parse_revision(obj).settlement
            agent, interval = s.agent, s.interval
    except (KeyError, TypeError, ValueError) as exc:
        return f"{kind} entry is malformed: {exc!r}"
    if agent != row[2] or interval != row[4]:
        return f"{kind} columns do not match its data"
    return None


def _check_posting(row: Row, obj: dict[str, Any]) -> str | None:
    """Every posting must balance: its lines sum to zero."""
    if posting_holds(row, obj):
        return None
    try:
        posting = Posting.from_json(obj)
    except UnbalancedPosting as exc:
        return f"posting does not balance: {exc}"
    except ValueError as exc:
        return f"posting is malformed: {exc}"
    if posting.agent != row[2] or posting.interval != row[4]:
        return "posting columns do not match its data"
    return None


# The common case at a glance: every field of the type the log writes, values that
# parse, columns that match. True only where the checks above find nothing; when
# False, they run and say what is wrong (tests/test_entrycheck_fastpath.py).

_REVISION_INTS = (
    "interval",
    "end_interval",
    *SETTLEMENT_FIELDS,
    "retail_micro_per_kwh",
    "feed_in_micro_per_kwh",
)
_FLAG_INTS = ("interval", "end_interval", "import_wh", "export_wh", "elapsed_s", "limit_wh")
_BASES = frozenset(basis.value for basis in Basis)
_FLAG_REASONS = frozenset(reason.value for reason in FlagReason)
_CAUSES = frozenset(cause.value for cause in Cause)


def revision_holds(row: Row, obj: dict[str, Any]) -> bool:
    """A settlement or correction that :func:`parse_revision` takes, matching its row."""
    get = obj.get
    agent, basis = get("agent"), get("basis")
    if type(agent) is not str or type(basis) is not str or basis not in _BASES:
        return False
    for name in _REVISION_INTS:
        if type(get(name)) is not int:
            return False
    if type(get("network_fee_micro", 0)) is not int:
        return False
    tariff_holds = 0 <= obj["feed_in_micro_per_kwh"] <= obj["retail_micro_per_kwh"]
    return tariff_holds and agent == row[2] and obj["interval"] == row[4]


def flag_holds(row: Row, obj: dict[str, Any]) -> bool:
    """A flag that :func:`parse_flag` takes, matching its row."""
    get = obj.get
    agent, reason = get("agent"), get("reason")
    if type(agent) is not str or type(reason) is not str or reason not in _FLAG_REASONS:
        return False
    for name in _FLAG_INTS:
        if type(get(name)) is not int:
            return False
    return agent == row[2] and obj["interval"] == row[4]


def posting_holds(row: Row, obj: dict[str, Any]) -> bool:
    """A posting that :meth:`Posting.from_json` takes (it balances), matching its row."""
    get = obj.get
    agent, interval, cause, lines = get("agent"), get("interval"), get("cause"), get("lines")
    if type(agent) is not str or type(interval) is not int or type(lines) is not list:
        return False
    if type(cause) is not str or cause not in _CAUSES or len(lines) < 2:
        return False
    total = 0
    for line in lines:
        if type(line) is not dict:
            return False
        account, amount = line.get("account"), line.get("amount_micro")
        if type(account) is not str or type(amount) is not int:
            return False
        total += amount
    return total == 0 and agent == row[2] and interval == row[4]


def first_bad_row(market: str, rows: Sequence[Row]) -> Failure | None:
    """The first row (in order) that fails, with its problem; None if all hold."""
    for row in rows:
        problem = check_row(market, row)
        if problem is not None:
            return row[0], problem
    return None


class RowChecker:
    """Collects rows and checks them in chunks: inline (``workers <= 1``) or on
    ``workers`` processes. Chunks finish in order; :meth:`add` and :meth:`drain` report
    the first failure of the finished ones, which is the earliest one so far."""

    def __init__(self, market: str, workers: int) -> None:
        self._market = market
        self._pool: ProcessPoolExecutor | None = None
        self._max_pending = max(workers, 1) * MAX_PENDING_PER_WORKER
        if workers > 1:
            self._pool = ProcessPoolExecutor(workers, mp_context=_start_context())
        self._rows: list[Row] = []
        self._pending: deque[Future[Failure | None]] = deque()

    def add(self, row: Row) -> Failure | None:
        """Queue one row; the first failure of the chunks finished meanwhile, if any."""
        self._rows.append(row)
        if len(self._rows) < CHUNK:
            return None
        return self._flush()

    def _flush(self) -> Failure | None:
        rows, self._rows = self._rows, []
        if self._pool is None:
            return first_bad_row(self._market, rows) if rows else None
        if rows:
            self._pending.append(self._pool.submit(first_bad_row, self._market, rows))
        while self._pending and (self._pending[0].done() or len(self._pending) > self._max_pending):
            failure = self._pending.popleft().result()
            if failure is not None:
                return failure
        return None

    def hand_over(self) -> None:
        """Give the workers the rows queued so far, before a pause in :meth:`add`
        (inline, they wait for :meth:`drain`)."""
        if self._pool is not None and self._rows:
            rows, self._rows = self._rows, []
            self._pending.append(self._pool.submit(first_bad_row, self._market, rows))

    def drain(self) -> Failure | None:
        """Check everything queued; the earliest failure, or None."""
        failure = self._flush()
        while failure is None and self._pending:
            failure = self._pending.popleft().result()
        return failure

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _start_context() -> multiprocessing.context.BaseContext:
    """``fork`` where it is safe: a worker starts in milliseconds with the modules
    already imported, where ``spawn`` re-imports the whole CLI (about half a second
    per worker). Safe means no other thread could hold a lock at the fork (the
    executor forks all its workers before it starts its own threads); else spawn."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")
