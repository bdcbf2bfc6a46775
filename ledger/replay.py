"""Replay: ``ledger verify`` re-executes the market from the log's signed inputs.

A pure function over the entries, fed in log order (:class:`Replay`); nothing else is
read (no meta table, registry, snapshot or configuration: state that is not in the log
cannot steer it). The log is cut into closes: a close is everything from a checkpoint
reference (or the log's start) up to the next checkpoint reference or key entry. For
each close of interval ``I`` (the reference's interval) the replay takes its inputs,
the signed readings (interval ``I``; earlier ones are late readings) and orders, and
the market parameters logged so far (``market_params``, :mod:`ledger._params`), and
makes what the ledger makes from them with the ledger's own pure core:

- the clearing (``mechanism.clear_local`` over the orders in log order, at the tariff
  the clearing entry names) and its trades: a clearing entry only when the interval
  traded; its ``rejected`` count (messages refused, which the log does not hold) is
  taken as logged;
- the settlements, corrections, flags (:meth:`ledger.metering.Metering.close`, with
  the last cleared interval's tariff and trades and the logged fee and metering rules)
  and their postings (:func:`ledger._booking.book`).

Every one is compared with the logged entries in order, byte for byte; the first
difference is named with its entry, field and both values (:mod:`ledger._replay_diff`).

A log written before ``market_params`` entries existed: until the first one, each
close's clearing is replayed with the mechanism its clearing entry names, and each
settlement, correction and posting is recomputed from the logged energy and the
interval's trades and tariff, but the energy itself (readings, estimates, the flags'
connection limits) is not re-derived; :attr:`Replay.unparameterised` counts those
closes and verify reports it. From the first ``market_params`` on, the meter state so
far is rebuilt from the logged (and checked) settlements as a restarted ledger does
(:mod:`ledger._restore`) and the rest is re-executed in full.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from wattmesh.broker.errors import FailureError, LedgerError
from wattmesh.broker.messages import Side
from wattmesh.ledger._booking import book, replay
from wattmesh.ledger._params import MarketParams, mechanism_of, parse_market_params
from wattmesh.ledger._replay_diff import Problem, fast_encode, first_difference
from wattmesh.ledger._replay_logged import logged_revisions
from wattmesh.ledger.clearing import Fill, GridTariff, Order
from wattmesh.ledger.entries import EntryKind, NewEntry, clearing_entry, trade_entry
from wattmesh.ledger.keyring import KEY_KINDS
from wattmesh.ledger.metering import Metering
from wattmesh.ledger.settlement import Registers
from wattmesh.ledger.store import StoredEntry

__all__ = ["Replay", "ReplayMismatch"]

_DERIVED = frozenset(
    {
        EntryKind.CLEARING,
        EntryKind.TRADE,
        EntryKind.SETTLEMENT,
        EntryKind.CORRECTION,
        EntryKind.FLAG,
        EntryKind.POSTING,
    }
)
_BOUNDARIES = KEY_KINDS | {EntryKind.CHECKPOINT_REF}
_SIGNED_SEP = b'","signed":'
_SIDES = {side.value: side for side in Side}


class ReplayMismatch(LedgerError, FailureError):
    """The first entry the replay does not agree with, and why."""

    def __init__(self, idx: int, problem: str) -> None:
        super().__init__(problem)
        self.idx = idx
        self.problem = problem


@dataclass(frozen=True)
class Cleared:
    """The last interval that traded: what the next closes settle."""

    interval: int
    tariff: GridTariff
    fills: tuple[Fill, ...]
    fee_micro_per_kwh: int


@dataclass
class _Close:
    interval: int | None = None
    last_idx: int = -1
    params: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    readings: list[tuple[int, str, int, Registers]] = field(default_factory=list)
    orders: list[tuple[int, Order]] = field(default_factory=list)
    derived: list[StoredEntry] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.params or self.readings or self.orders or self.derived)


def _signed(entry: StoredEntry) -> tuple[dict[str, Any], bytes]:
    """A logged reading's or order's signed object and bytes; ReplayMismatch if it
    cannot be read (the signature checks name the entry too)."""
    data = entry[5]
    cut = data.find(_SIGNED_SEP)
    signed = data[cut + len(_SIGNED_SEP) : -1]
    try:
        obj = json.loads(signed)
        body = obj["body"]
        if not isinstance(body, dict):
            raise TypeError("body is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplayMismatch(entry[0], f"replay: entry {entry[0]} cannot be read: {exc}") from exc
    return obj, signed


class Replay:
    """Feed every entry in log order (:meth:`add`), then :meth:`finish`; both raise
    :class:`ReplayMismatch` at the first difference (see the module doc)."""

    def __init__(self) -> None:
        self.params: MarketParams | None = None
        self.metering = Metering()
        self.last: Cleared | None = None
        self.closes = 0  # closes replayed
        self.unparameterised = 0  # of them, before the log's first market_params
        self._close = _Close()
        self._estimates: dict[tuple[str, int], Any] = {}  # for closes without params

    def add(self, entry: StoredEntry) -> None:
        kind = entry[2]
        close = self._close
        if kind in _BOUNDARIES:
            self._finish()
            if kind == EntryKind.CHECKPOINT_REF:
                self._close.interval = entry[1]
            return
        close.last_idx = entry[0]
        if kind in _DERIVED:
            close.derived.append(entry)
        elif kind == EntryKind.READING:
            obj, _signed_bytes = _signed(entry)
            body = obj["body"]
            try:
                registers = Registers(
                    int(body["meter_time"]), int(body["import_wh"]), int(body["export_wh"])
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ReplayMismatch(entry[0], f"replay: reading {entry[0]}: {exc!r}") from exc
            close.readings.append((entry[0], str(entry[3]), entry[1], registers))
        elif kind == EntryKind.ORDER:
            obj, signed = _signed(entry)
            body = obj["body"]
            try:
                order = Order(
                    str(entry[3]),
                    _SIDES[body["side"]],
                    int(body["quantity_wh"]),
                    int(body["price_micro_per_kwh"]),
                    hashlib.sha256(signed).hexdigest(),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ReplayMismatch(entry[0], f"replay: order {entry[0]}: {exc!r}") from exc
            close.orders.append((entry[0], order))
        elif kind == EntryKind.MARKET_PARAMS:
            close.params.append((entry[0], json.loads(entry[5])))

    def finish(self) -> None:
        """The last close (call once every entry was added)."""
        self._finish()

    def _finish(self) -> None:
        close, self._close = self._close, _Close()
        if close.empty():
            return
        self.closes += 1
        for idx, obj in close.params:
            try:
                self.params = parse_market_params(obj)
            except ValueError as exc:
                raise ReplayMismatch(idx, f"replay: market_params entry {idx}: {exc}") from exc
            self.metering.config = self.params.metering
        interval = self._interval(close)
        replayed, cleared = self._clear(close, interval)
        if self.params is None:
            self.unparameterised += 1
            replayed += logged_revisions(close.derived, self.last, self._estimates)
        else:
            replayed += self._settle(close, interval)
        problem: Problem | None = first_difference(close.derived, replayed, close.last_idx)
        if problem is not None:
            raise ReplayMismatch(*problem)
        if self.params is None:  # keep the meter state as a restarted ledger rebuilds it
            self._restore(close)
        if cleared is not None:
            self.last = cleared

    def _interval(self, close: _Close) -> int:
        """The interval a close closes: its checkpoint reference's (every close but one
        at the log's very start has one); else its clearing's or latest reading's."""
        if close.interval is not None:
            return close.interval
        for entry in close.derived:
            if entry[2] == EntryKind.CLEARING:
                return entry[1]
        return max((r[2] for r in close.readings), default=close.last_idx)

    def _clear(self, close: _Close, interval: int) -> tuple[list[NewEntry], Cleared | None]:
        """The clearing entry and trades the close's orders make, and what it leaves to
        settle; none when the close logged no clearing (it did not trade)."""
        logged = next((e for e in close.derived if e[2] == EntryKind.CLEARING), None)
        if logged is None:
            if close.orders:
                idx = close.orders[0][0]
                raise ReplayMismatch(idx, f"replay: order {idx} is in a close with no clearing")
            return [], None
        idx = logged[0]
        try:
            obj = json.loads(logged[5])
            tariff = GridTariff(int(obj["retail_micro_per_kwh"]), int(obj["feed_in_micro_per_kwh"]))
            if self.params is not None and self.params.tariffs is not None:
                tariff = self.params.tariffs.at(interval)  # the logged schedule's, not the entry's
            mechanism = mechanism_of(obj) if self.params is None else self.params.mechanism
            rejected = obj["rejected"]
            if type(rejected) is not int or rejected < 0:
                raise ValueError("rejected is not a count")
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayMismatch(idx, f"replay: clearing entry {idx} is malformed: {exc}") from exc
        book_ = [order for _idx, order in close.orders]
        result = mechanism.clear_local(book_, tariff)
        entries = [
            clearing_entry(
                interval=interval,
                tariff=tariff,
                price_micro_per_kwh=result.price_micro_per_kwh,
                volume_wh=result.volume_wh,
                orders=len(book_),
                rejected=rejected,
                mechanism=None if mechanism.is_default else mechanism.to_json(),
            )
        ]
        entries += [trade_entry(interval=interval, fill=f) for f in result.fills]
        fee = mechanism.rules.network_fee_micro_per_kwh
        return entries, Cleared(interval, tariff, result.fills, fee)

    def _settle(self, close: _Close, interval: int) -> list[NewEntry]:
        """What the ledger's metering makes of the close's readings (full replay)."""
        readings: dict[str, Registers] = {}
        late: dict[tuple[str, int], Registers] = {}
        for idx, agent, at, registers in close.readings:
            if at > interval:
                raise ReplayMismatch(idx, f"replay: reading {idx} is of a later interval")
            key = (agent, at)
            if agent in readings if at == interval else key in late:
                raise ReplayMismatch(idx, f"replay: reading {idx} is a second one of {agent}")
            if at == interval:
                readings[agent] = registers
            else:
                late[key] = registers
        due = self.last
        assert self.params is not None
        revisions, flags = self.metering.close(
            interval=interval,
            readings=readings,
            late=late,
            settle=None if due is None else (due.interval, due.tariff, due.fills),
            network_fee_micro_per_kwh=self.params.mechanism.rules.network_fee_micro_per_kwh,
        )
        return book(revisions, flags, fast_encode)[1]

    def _restore(self, close: _Close) -> None:
        """The meter state after ``close`` as :mod:`ledger._restore` rebuilds it."""
        for _idx, agent, at, registers in close.readings:
            self.metering.restore_reading(agent, at, registers)
        for entry in close.derived:
            if entry[2] != EntryKind.TRADE and entry[2] != EntryKind.POSTING:
                replay(self.metering, entry[2], json.loads(entry[5]))
