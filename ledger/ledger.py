"""The ledger's core: the interval state machine over the verifiable log.

Open an interval, accept signed messages into it (the checks are
:mod:`ledger._admission`'s), close it (clear, settle, log, checkpoint, and a snapshot of the
state after it), and rebuild the state after a restart (:mod:`ledger._restore`: from the
latest snapshot and the entries after it). No network here: the MQTT adapter
(:mod:`ledger.service`) feeds payloads in and publishes what comes out. The only I/O is
the store: the log, written once per interval in one transaction together with the
signed checkpoint, and the intake, where :meth:`Ledger.flush_intake` keeps what the
open interval accepted so far, so that a restarted ledger reopening the interval admits
it again (:meth:`Ledger.open_interval`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from wattmesh.broker.errors import ConfigError, MessageError, RejectReason
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import OrderBody, ReadingBody, SignedMessage, decode_message
from wattmesh.ledger._admission import Admission, OpenInterval, RedeliveredError
from wattmesh.ledger._batch import DecodeJobs, PreparedBatch, decode_jobs, prepared
from wattmesh.ledger._booking import book
from wattmesh.ledger._gcpause import gc_paused
from wattmesh.ledger._merkle import CompactRange, leaf_hash
from wattmesh.ledger._params import MarketParams, market_params_entry, params_logged
from wattmesh.ledger._restore import logged_message, registers_of, restore_state
from wattmesh.ledger._snapshot import LedgerState, encode_snapshot
from wattmesh.ledger.accounts import Posting
from wattmesh.ledger.checkpoint import origin_for, sign_checkpoint
from wattmesh.ledger.clearing import ClearingResult, GridTariff, Order
from wattmesh.ledger.entries import (
    EntryKind,
    NewEntry,
    checkpoint_ref_entry,
    clearing_entry,
    message_entry,
    trade_entry,
)
from wattmesh.ledger.keyring import KeyLogError
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.ledger.meta import META_MARKET, META_MECHANISM, META_OPERATOR_KEY, META_ORIGIN
from wattmesh.ledger.metering import Flag, Metering, MeteringConfig, Revision
from wattmesh.ledger.settlement import Settlement
from wattmesh.ledger.sigcheck import InlineVerifier, SignatureVerifier
from wattmesh.ledger.store import Checkpoint, LedgerStore

_LOG = logging.getLogger(__name__)

__all__ = ["IntervalOutcome", "Ledger", "RedeliveredError"]


@dataclass(frozen=True)
class IntervalOutcome:
    """What closing one interval appended to the log."""

    interval: int
    clearing: ClearingResult
    settlements: tuple[Settlement, ...]
    checkpoint: Checkpoint
    orders: int
    readings: int
    flagged: tuple[str, ...]  # households whose settlement was refused (e.g. registers)
    revisions: tuple[Revision, ...] = ()  # settlements and corrections, in log order
    flags: tuple[Flag, ...] = ()
    postings: tuple[Posting, ...] = ()
    late_readings: int = 0
    first_index: int = 0  # log index of the first entry of ``entries``
    entries: tuple[NewEntry, ...] = ()  # what the interval appended, in log order


class Ledger:
    """Validates messages, clears and settles intervals, and keeps the verifiable log."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        market_id: str,
        operator_key: SigningKey,
        mechanism: Mechanism | None = None,
        clearing_k: Fraction = Fraction(1, 2),
        metering: MeteringConfig | None = None,
        tariffs: TariffSchedule | None = None,
    ) -> None:
        """``mechanism`` defaults to uniform pricing with ``clearing_k``; it is recorded
        once in the store's meta table, and a restart with another one is refused. Its
        network fee, if any, is settled with each seller (:mod:`ledger.settlement`). Each
        opened interval's tariff must follow ``tariffs`` (logged: :mod:`ledger._params`)."""
        if mechanism is None:
            mechanism = Mechanism("uniform", MarketRules(k=clearing_k))
        self.store = store
        self.market_id = market_id
        self.origin = origin_for(market_id)
        self.operator_key = operator_key
        self.clearing_k = mechanism.rules.k
        self.mechanism = mechanism
        store.set_meta_once(META_MARKET, market_id)
        store.set_meta_once(META_ORIGIN, self.origin)
        store.set_meta_once(META_OPERATOR_KEY, operator_key.verifying.pem().decode("ascii"))
        store.set_meta_once(META_MECHANISM, json.dumps(mechanism.to_json(), sort_keys=True))
        # After a restart, the state the log holds (ledger._restore; from a snapshot).
        restored = restore_state(store, metering)
        self._keyring = restored.keyring
        self._admission = Admission(
            market_id,
            self._keyring,
            self._awaits_backfill,
            self._logged_message_id,
            restored.metering.config.limit_w,
        )
        for agent, seq in restored.last_seqs.items():
            self._admission.restore_seq(agent, seq)
        self._tree = restored.tree
        self._metering = restored.metering
        self._last_interval = restored.last_interval
        self._last_tariff = restored.last_tariff
        self._last_fills = restored.last_fills
        self._open: OpenInterval | None = None
        self._intake: list[tuple[str | None, bytes]] = []  # accepted, not yet kept
        self.anomalies: list[NewEntry] = []  # forecaster flags, logged at the next close
        self._params = MarketParams(mechanism, self._metering.config, tariffs)
        self._params_logged = params_logged(store, self._params)

    # --- state -----------------------------------------------------------------------

    @property
    def rejections(self) -> Counter[RejectReason]:
        """Rejected messages per reason (:class:`ledger._admission.Admission`)."""
        return self._admission.rejections

    @property
    def redeliveries(self) -> int:
        """Messages received again after being accepted (not rejections)."""
        return self._admission.redeliveries

    @property
    def kept_message_ids(self) -> int:
        """Message ids held in memory to tell redeliveries from replays (at most those
        of the open and the last closed interval; older ones are read from the log)."""
        return self._admission.kept_ids

    @property
    def size(self) -> int:
        return self._tree.size

    @property
    def root(self) -> bytes:
        return self._tree.root()

    def key_ders(self) -> list[bytes]:
        """DER encodings of every valid household key (for verifiers to load ahead)."""
        return list(self._keyring.valid_der.values())

    @property
    def keys(self) -> Mapping[str, VerifyingKey]:
        """Each household's valid key (households whose key is revoked are left out)."""
        return self._keyring.valid

    @property
    def households(self) -> tuple[str, ...]:
        """Every registered household, also those whose key is revoked."""
        return tuple(sorted(self._keyring.current))

    def is_registered(self, agent: str) -> bool:
        return agent in self._keyring.current

    @property
    def last_closed_interval(self) -> int | None:
        return self._last_interval

    def state(self) -> LedgerState:
        """The in-memory state between intervals (what a snapshot holds): the ledger's own
        objects, not copies, so encode it (:func:`ledger._snapshot.encode_snapshot`) or
        read it, never change it."""
        if self._open is not None:
            raise RuntimeError("the state is taken between intervals")
        return LedgerState(
            self._tree,
            self._keyring,
            self._admission.last_seqs,
            self._metering,
            self._last_interval,
            self._last_tariff,
            self._last_fills,
        )

    def _logged_message_id(self, agent: str, seq: int) -> str | None:
        """The message id of the logged message of ``agent`` with ``seq``, or None."""
        entry = self.store.message_entry(agent, seq)
        if entry is None or entry.kind not in (EntryKind.READING, EntryKind.ORDER):
            return None
        return logged_message(json.loads(entry.data)).message_id

    # --- registration ----------------------------------------------------------------

    def register(
        self,
        keys: Mapping[str, VerifyingKey],
        *,
        interval: int,
        revoked: Mapping[str, Mapping[str, str]] | None = None,
    ) -> int:
        """Log what changed: a ``key`` entry for each new household, a ``key_rotation``
        for each household whose key is another one now, a ``key_revocation`` for each
        newly revoked key (``revoked``: agent -> kid -> reason); return how many.

        A household left out of ``keys`` keeps its key. Rotations and revocations take
        effect at their position in the log, so they are refused while an interval is
        open (its accepted messages are logged at its close). ConfigError when a key
        cannot be revoked or rotated to (see :class:`ledger.keyring.KeyRing`).
        """
        try:
            entries = self._keyring.plan(keys, revoked or {}, interval=interval)
        except KeyLogError as exc:
            raise ConfigError(str(exc)) from exc
        if self._open is not None and any(e.kind != EntryKind.KEY for e in entries):
            raise RuntimeError("rotate or revoke keys between intervals, not while one is open")
        if entries:
            first = self._tree.size
            self._append(entries, interval)
            for at, e in enumerate(entries, start=first):
                self._keyring.apply(e.kind, e.agent, json.loads(e.data), at=at)
        return len(entries)

    # --- intervals -------------------------------------------------------------------

    def open_interval(
        self,
        interval: int,
        tariff: GridTariff,
        *,
        trading: bool = True,
        interval_s: int | None = None,
    ) -> None:
        """Start accepting messages for ``interval``; ``trading=False`` collects readings only.

        ``interval_s``, the interval's length as announced, bounds each order by what
        the household's connection carries in it (``max_power_w`` of the metering
        configuration: the registry's, or the default); None leaves orders unbounded
        (the operator, :class:`ledger.service.LedgerService`, always gives it).
        """
        if self._open is not None:
            raise RuntimeError(f"interval {self._open.interval} is still open")
        if self._last_interval is not None and interval <= self._last_interval:
            raise ValueError(f"interval {interval} was closed already")
        if interval_s is not None and interval_s < 1:
            raise ValueError(f"interval_s must be at least 1, got {interval_s}")
        self._params.check_tariff(interval, tariff)
        self._open = OpenInterval(interval, tariff, trading, interval_s)
        self._readmit(self.store.intake(interval))

    def _readmit(self, kept: Sequence[tuple[str | None, bytes]]) -> None:
        """Admit again what a previous process had accepted into this interval and kept
        in the intake (it is kept already: nothing to flush)."""
        for agent, wire in kept:
            try:
                self.ingest(wire, topic_agent=agent)
            except MessageError as exc:  # e.g. a copy an agent resent before the crash
                _LOG.warning("kept message from %s not admitted again: %s", agent, exc)
        self._intake.clear()

    def flush_intake(self) -> int:
        """Keep the messages accepted into the open interval since the last flush in the
        store's intake (one transaction); return how many. Until then a crash loses them
        (the agents send them again when the interval is reopened)."""
        kept = len(self._intake)
        if self._open is not None and kept:
            self.store.add_intake(self._open.interval, self._intake)
        self._intake = []
        return kept

    @property
    def open_orders(self) -> int:
        """Orders accepted so far for the open interval (0 when none is open)."""
        return 0 if self._open is None else len(self._open.orders)

    def missing(self) -> set[str]:
        """Households with a valid key that have not yet sent all the open interval needs."""
        if self._open is None:
            return set()
        op = self._open
        return {
            agent
            for agent in self._keyring.valid_der
            if agent not in op.readings or (op.trading and agent not in op.orders)
        }

    def ingest(self, payload: bytes, *, topic_agent: str | None = None) -> SignedMessage:
        """Validate and accept one household message; raise MessageError with the reason."""
        try:
            message = decode_message(payload)
        except MessageError as exc:
            self._admission.refuse(exc)
            raise
        accepted = self._admission.admit(message, topic_agent, self._open, verified=None)
        self._intake.append((topic_agent, payload))
        return accepted

    def ingest_many(
        self,
        items: Sequence[tuple[bytes, str | None]],
        verifier: SignatureVerifier | None = None,
        *,
        chunk: int = 1000,
    ) -> list[SignedMessage | MessageError]:
        """:meth:`ingest` for a batch of ``(payload, topic_agent)``, in arrival order.

        Each result is the accepted message or the MessageError :meth:`ingest` would
        have raised (a :class:`RedeliveredError` for a redelivery); the counters and the
        state change exactly as for one :meth:`ingest` per item. The messages are
        decoded and their signatures checked first by ``verifier`` (e.g. on worker
        processes, :mod:`ledger.sigcheck`), in chunks of ``chunk`` messages; every other
        check runs here afterwards, in order.
        """
        checker = verifier or InlineVerifier()
        with gc_paused():
            # Chunks: the workers decode and verify one while the next is submitted.
            # Every chunk's keys are taken before any is admitted, as for one batch.
            chunks = [self.decode_jobs(items[i : i + chunk]) for i in range(0, len(items), chunk)]
            pending = [(batch, checker.submit_decode(batch.jobs)) for batch in chunks]
            results: list[SignedMessage | MessageError] = []
            for batch, checked in pending:
                results += self.admit_batch(prepared(batch, checked.result()))
            return results

    def decode_jobs(self, items: Sequence[tuple[bytes, str | None]]) -> DecodeJobs:
        """Step 1 of :meth:`ingest_many`: each payload with the key of its topic's
        household (:func:`ledger._batch.decode_jobs`), to decode and verify anywhere."""
        return decode_jobs(items, self._keyring.valid, self._keyring.valid_der)

    def admit_batch(self, batch: PreparedBatch) -> list[SignedMessage | MessageError]:
        """Step 2 of :meth:`ingest_many`: with the batch decoded (:func:`ledger._batch.prepared`),
        apply every other check and accept, in arrival order. A message whose key changed
        since :meth:`decode_jobs`, or whose signature did not verify, is checked again
        inline, so the decision is always the one :meth:`ingest` makes now."""
        results = self._admission.admit_batch(batch, self._open)
        self._intake += [
            (agent, payload)
            for (payload, agent), result in zip(batch.items, results, strict=True)
            if isinstance(result, SignedMessage)
        ]
        return results

    def _awaits_backfill(self, agent: str, interval: int) -> bool:
        """Whether a late reading would fill a gap an estimate stands in for."""
        return self._metering.awaits(agent, interval)

    def close_interval(self) -> IntervalOutcome:
        """Gate closure: clear, settle the previous interval, log all of it, checkpoint.

        The cyclic garbage collector is paused meanwhile: closing allocates tens of
        thousands of small objects, and with a large ledger state in memory each full
        collection it triggers scans all of it (``BENCHMARKS.md``)."""
        with gc_paused():
            return self._close_interval()

    def _close_interval(self) -> IntervalOutcome:
        op = self._open
        if op is None:
            raise RuntimeError("no interval is open")
        readings = [op.readings[a] for a in sorted(op.readings)]
        late = [op.late[k] for k in sorted(op.late)]
        orders = [op.orders[a] for a in sorted(op.orders)]
        entries: list[NewEntry] = []
        if self._tree.size > 0:  # every append is checkpointed: this size and root are signed
            entries.append(
                checkpoint_ref_entry(
                    interval=op.interval, tree_size=self._tree.size, root=self._tree.root()
                )
            )
        if not self._params_logged:
            entries.append(market_params_entry(op.interval, self._params))
        entries += [message_entry(m) for m in readings]
        entries += [message_entry(m) for m in late]
        entries += [message_entry(m) for m in orders]
        clearing = ClearingResult(None, ())
        if op.trading:
            book = [
                Order(m.header.agent, b.side, b.quantity_wh, b.price_micro_per_kwh, m.message_id)
                for m in orders
                for b in (m.body_as(OrderBody),)
            ]
            clearing = self.mechanism.clear_local(book, op.tariff)
            entries.append(
                clearing_entry(
                    interval=op.interval,
                    tariff=op.tariff,
                    price_micro_per_kwh=clearing.price_micro_per_kwh,
                    volume_wh=clearing.volume_wh,
                    orders=len(orders),
                    rejected=sum(self.rejections.values()),
                    mechanism=None if self.mechanism.is_default else self.mechanism.to_json(),
                )
            )
            entries += [trade_entry(interval=op.interval, fill=f) for f in clearing.fills]
        metering = self._metering.copy()
        revisions, flags, postings, settled = self._settle(metering, op, readings, late)
        entries += settled
        settlements = [r.after for r in revisions if r.before is None]
        # The last cleared interval after this close: this one, unless it did not trade.
        last = (
            (op.interval, op.tariff, clearing.fills)
            if op.trading
            else (self._last_interval, self._last_tariff, self._last_fills)
        )

        def snapshot(tree: CompactRange) -> bytes:
            keys, seqs = self._keyring, self._admission.last_seqs
            return encode_snapshot(LedgerState(tree, keys, seqs, metering, *last))

        entries += self.anomalies  # the forecaster's flags taken since the last close
        checkpoint = self._append(
            entries, op.interval, intake_through=op.interval, snapshot=snapshot
        )
        self.anomalies, self._intake, self._params_logged = [], [], True
        self._metering = metering
        self._last_interval, self._last_tariff, self._last_fills = last
        self._admission.interval_closed()
        self._open = None
        return IntervalOutcome(
            op.interval,
            clearing,
            tuple(settlements),
            checkpoint,
            len(orders),
            len(readings),
            tuple(sorted({f.agent for f in flags})),
            tuple(revisions),
            tuple(flags),
            tuple(postings),
            len(late),
            checkpoint.tree_size - len(entries),
            tuple(entries),
        )

    def _settle(
        self,
        metering: Metering,
        op: OpenInterval,
        readings: list[SignedMessage],
        late: list[SignedMessage],
    ) -> tuple[list[Revision], list[Flag], list[Posting], list[NewEntry]]:
        """Settle the last cleared interval, estimate and correct (:mod:`ledger.metering`)."""
        due = None
        if self._last_interval is not None and self._last_tariff is not None:
            due = (self._last_interval, self._last_tariff, self._last_fills)
        revisions, flags = metering.close(
            interval=op.interval,
            readings={m.header.agent: registers_of(m.body_as(ReadingBody)) for m in readings},
            late={
                (m.header.agent, m.header.interval): registers_of(m.body_as(ReadingBody))
                for m in late
            },
            settle=due,
            network_fee_micro_per_kwh=self.mechanism.rules.network_fee_micro_per_kwh,
        )
        postings, entries = book(revisions, flags)
        return revisions, flags, postings, entries

    def _append(
        self,
        entries: list[NewEntry],
        interval: int,
        *,
        intake_through: int | None = None,
        snapshot: Callable[[CompactRange], bytes] | None = None,
    ) -> Checkpoint:
        """Log ``entries`` with a signed checkpoint in one transaction; ``snapshot``
        gives the state snapshot to store with them, from the tree after them."""
        first = self._tree.size
        new_tree = self._tree.copy()
        hashes = [leaf_hash(e.data) for e in entries]
        nodes = new_tree.extend_nodes(hashes)
        checkpoint = sign_checkpoint(
            self.operator_key,
            origin=self.origin,
            tree_size=new_tree.size,
            root=new_tree.root(),
            interval=interval,
        )
        self.store.append(
            first,
            entries,
            checkpoint,
            nodes=nodes,
            leaf_hashes=hashes,
            intake_through=intake_through,
            snapshot=None if snapshot is None else snapshot(new_tree),
        )
        self._tree = new_tree
        return checkpoint
