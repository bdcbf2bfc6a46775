"""The ledger's MQTT adapter: the ingest, each interval's announcements, gate and close.

Feeds household messages into :class:`ledger.ledger.Ledger`, sends rejections back on
the household's error topic and answers audit requests (rate-limited per household,
queued and sent in the background: :mod:`ledger._responder`), and runs each interval:
announce it open, wait until every registered household has sent its reading and
order (or is offline), close the gate, clear, log, checkpoint, and announce the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    Phase,
    RejectionBody,
    SignedMessage,
    Signer,
    SummaryBody,
    TradeLine,
    TradesBody,
)
from wattmesh.broker.topics import (
    ANOMALY,
    AUDIT,
    ORDER,
    READING,
    STATUS,
    HouseholdTopic,
    Topics,
)
from wattmesh.broker.transport import Message, Transport
from wattmesh.ledger._audit_messages import (
    AuditMessages,
    IntervalSource,
    audit_messages,
    checkpoint_body,
)
from wattmesh.ledger._batch import DecodeJobs, prepared
from wattmesh.ledger._responder import (
    FirstPerInterval,
    Responder,
    audit_from_size,
    rejection_reference,
)
from wattmesh.ledger._status import Statuses, StatusStore
from wattmesh.ledger.anomalies import anomaly_entry, take_anomaly
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.ledger import IntervalOutcome, Ledger, RedeliveredError
from wattmesh.ledger.sigcheck import Checked, InlineVerifier, SignatureVerifier

__all__ = ["LedgerService", "OperatorConfig", "ledger_subscriptions"]

_LOG = logging.getLogger(__name__)

OPERATOR_ID = "operator"


@dataclass(frozen=True)
class OperatorConfig:
    topics: Topics
    interval_s: int = 900
    gate_timeout_s: float = 60.0  # wall-clock backstop for households that stay silent


class MessageSource(Protocol):
    """Inbound messages in arrival order: :class:`broker.transport.Transport` or
    :class:`broker.subscriber.Subscriber`."""

    def messages(self) -> AsyncIterator[Message]: ...

    def buffered(self, limit: int) -> list[Message]: ...


@dataclass(frozen=True)
class _PendingBatch:
    """A batch waiting to be decoded and verified (on the verifier's workers)."""

    number: int
    batch: DecodeJobs
    arrivals: list[int]  # each item's arrival number (see LedgerService._arrival)
    checked: asyncio.Future[list[Checked]]


def ledger_subscriptions(topics: Topics) -> list[tuple[str, int]]:
    return [
        (topics.all_readings, 1),
        (topics.all_orders, 1),
        (topics.all_status, 1),
        (topics.all_audit_requests, 1),
        (topics.all_anomalies, 1),
    ]


class LedgerService:
    """Runs the market over MQTT; the ledger itself stays free of I/O but its store."""

    def __init__(
        self,
        ledger: Ledger,
        config: OperatorConfig,
        *,
        key: SigningKey,
        transport: Transport,
        forecaster_key: VerifyingKey | None = None,
    ) -> None:
        self.ledger = ledger
        self.forecaster_key = forecaster_key  # signs the anomaly flags the ledger logs
        self.anomalies_taken = 0
        self.config = config
        self.key = key
        self.transport = transport
        self._signer = Signer(key, config.topics.market_id, OPERATOR_ID)
        # Households' signed statuses (ledger/_status.py): the last taken from each is
        # kept in the database, and a new process takes those first.
        self.statuses = Statuses(config.topics.market_id)
        self._kept_statuses = StatusStore(ledger.store.engine)
        for agent, wire in self._kept_statuses.kept():
            with contextlib.suppress(MessageError):  # e.g. signed by a key since rotated
                self.statuses.take(agent, wire, ledger.keys.get(agent), time.monotonic())
        # Households offline by their signed status: the arrival number of that status,
        # so a message the household sends after it brings it back (0: kept from
        # before this process).
        self._offline_at: dict[str, int] = dict.fromkeys(self.statuses.offline, 0)
        self._arrival = 0  # messages received so far: each one's arrival number
        self._progress = asyncio.Event()
        self._ledger_lock = asyncio.Lock()  # held while a batch is between its steps
        # Operator messages are not logged; their seq rises across restarts and differs
        # per process (wall-clock microseconds at start), so an interval announced open
        # again by a new process has a new message id even in its retained copy.
        self._seq = max(ledger.size * 1000, time.time_ns() // 1000)
        self._prepared = 0  # batches decoded by run_ingest
        self._admitted = 0  # ... and admitted, in order
        self._gate_forced = False
        # Rejections and audit answers: rate-limited, queued, sent in the background.
        self.responses = Responder()
        self._logged = FirstPerInterval()  # one log line per (household, reason), interval
        self._audit_answered: dict[str, int] = {}  # household -> tree size answered
        # Set once run_interval has opened its first interval (see run_ingest).
        self.first_open = asyncio.Event()

    @property
    def offline(self) -> set[str]:
        """The households the gate does not wait for: their last signed status said
        ``offline`` and nothing they sent has been accepted since."""
        return set(self._offline_at)

    async def run_ingest(
        self,
        verifier: SignatureVerifier | None = None,
        *,
        max_batch: int = 1000,
        source: MessageSource | None = None,
        depth: int = 2,
        not_before: asyncio.Event | None = None,
    ) -> None:
        """Consume household messages until the source ends, in batches, as a pipeline:
        each message with what is buffered behind it (at most ``max_batch``) goes, with
        its household's key (:meth:`Ledger.decode_jobs`), to ``verifier`` (default: in
        this process; e.g. worker processes: :class:`ledger.sigcheck.PoolVerifier`),
        which decodes it and checks its signature while the next batch is received;
        batches are admitted (:meth:`Ledger.admit_batch`) in arrival order as their
        results come back, at most ``depth`` of them waiting. Decisions and rejections
        are those of :meth:`Ledger.ingest` one by one. Statuses and audit requests are
        judged as they are received; every topic is classified first
        (:meth:`Topics.classify`), and one that is not a household's reading, order,
        status or audit request is counted as ``bad_topic`` and dropped.

        ``source``: where the messages come from (default: the service's transport);
        e.g. a :class:`broker.subscriber.Subscriber` on its own connection, which
        receives several times faster than the transport.

        ``not_before`` (e.g. :attr:`first_open`, set once :meth:`run_interval` has
        opened its first interval): nothing is judged before it is set; what the source
        delivers earlier (a persistent session's queue after a restart) waits in its
        buffer, with its backpressure, so messages for the interval a restart opens
        again are admitted into it instead of being rejected ``late`` first."""
        checker = InlineVerifier() if verifier is None else verifier
        inbox = self.transport if source is None else source
        waiting: asyncio.Queue[_PendingBatch | None] = asyncio.Queue(maxsize=depth)

        async def receive() -> None:
            if not_before is not None:
                await not_before.wait()
            async for first in inbox.messages():
                messages = [first, *inbox.buffered(max_batch - 1)]
                items, arrivals = await self._household_items(messages)
                if items:
                    batch = self.ledger.decode_jobs(items)
                    self._prepared += 1
                    future = asyncio.wrap_future(checker.submit_decode(batch.jobs))
                    await waiting.put(_PendingBatch(self._prepared, batch, arrivals, future))
            await waiting.put(None)

        async with asyncio.TaskGroup() as group:
            group.create_task(receive(), name="ledger-ingest-receive")
            group.create_task(self._admit_batches(waiting), name="ledger-ingest-admit")

    async def _household_items(
        self, messages: list[Message]
    ) -> tuple[list[tuple[bytes, str | None]], list[int]]:
        """Readings and orders as ``(payload, topic agent)``, with their arrival numbers;
        anything else (status, audit requests, bad topics) judged at once."""
        topics = self.config.topics
        items: list[tuple[bytes, str | None]] = []
        arrivals: list[int] = []
        for message in messages:
            self._arrival += 1
            where = topics.classify(message.topic)
            if where is not None and where.kind in (READING, ORDER):
                items.append((message.payload, where.agent))
                arrivals.append(self._arrival)
            else:
                await self._judge(message, where)
        return items, arrivals

    async def _admit_batches(self, waiting: asyncio.Queue[_PendingBatch | None]) -> None:
        # The responses (rejections, audit answers) go out in the background meanwhile.
        async with self.responses.running():
            while (pending := await waiting.get()) is not None:
                checked = await pending.checked
                async with self._ledger_lock:
                    results = self.ledger.admit_batch(prepared(pending.batch, checked))
                    self.ledger.flush_intake()
                self._admitted = pending.number
                for (payload, agent), arrival, result in zip(
                    pending.batch.items, pending.arrivals, results, strict=True
                ):
                    if isinstance(result, SignedMessage):
                        self._sent(str(agent), arrival)
                    elif isinstance(result, RedeliveredError):
                        _LOG.debug("redelivered message from %s ignored", agent)
                    elif isinstance(result, MessageError):
                        await self._reject(str(agent), payload, result)  # never waits
                self._progress.set()

    async def _caught_up(self) -> None:
        """Wait until every batch decoded so far has been admitted (before a gate
        closes: what arrived before it is judged before it)."""
        target = self._prepared
        while self._admitted < target:
            self._progress.clear()
            await self._progress.wait()

    async def _judge(self, message: Message, where: HouseholdTopic | None) -> None:
        """A message that is no reading or order: a status, an audit request, or one on
        a topic no household message can have."""
        if where is not None and where.kind == STATUS:
            self._status(where.agent, message.payload)
        elif where is not None and where.kind == AUDIT:
            await self._answer_audit(where.agent, message.payload)
        elif where is not None and where.kind == ANOMALY:
            self._anomaly(where.agent, message.payload)
        else:
            self._bad_topic(message.topic, where)

    def _status(self, agent: str, payload: bytes) -> None:
        """Take a household's signed status (:class:`ledger._status.Statuses`) and keep
        it in the database; anything else (unsigned, forged, another household's, a
        replayed older one) is counted per reason and changes nothing, and no rejection
        is sent. An empty payload (a cleared retained status) and a copy of the last
        status taken (a resubscription's retained copy) change nothing either."""
        if not payload:
            return
        try:
            key = self.ledger.keys.get(agent)
            taken = self.statuses.take(agent, payload, key, time.monotonic())
        except MessageError as exc:
            self.ledger.rejections[exc.reason] += 1
            _LOG.debug("ignored a status for %s: %s", agent, exc)
            return
        if taken:
            self._kept_statuses.keep(agent, payload)
            if agent in self.statuses.offline:
                self._offline_at[agent] = self._arrival
            else:
                self._offline_at.pop(agent, None)
            self._progress.set()

    def _anomaly(self, agent: str, payload: bytes) -> None:
        """Take the forecaster's signed anomaly flag about ``agent`` for the next close
        (:mod:`ledger.anomalies`); anything else is counted by reason and dropped."""
        key = self.forecaster_key
        try:
            message = take_anomaly(
                payload, agent=agent, market_id=self.config.topics.market_id, key=key
            )
        except MessageError as exc:
            self.ledger.rejections[exc.reason] += 1
            _LOG.debug("refused an anomaly flag about %s: %s", agent, exc)
            return
        if key is not None:
            self.ledger.anomalies.append(anomaly_entry(message, key))
            self.anomalies_taken += 1
            self._progress.set()

    def _sent(self, agent: str, arrival: int) -> None:
        """A message of ``agent`` that arrived ``arrival``-th was accepted: if it came
        after the household's ``offline`` status, the household is sending, so the gate
        waits for it again: whatever a status says, a household that sends is not cut
        out of the interval."""
        since = self._offline_at.get(agent)
        if since is not None and arrival > since:
            del self._offline_at[agent]

    def _bad_topic(self, topic: str, where: HouseholdTopic | None) -> None:
        """Count a message on a topic no household message can have (no rejection is
        sent: there is nobody to send it to); logged once, then counted in the
        operator's summary line."""
        rejections = self.ledger.rejections
        if not rejections[RejectReason.BAD_TOPIC]:
            _LOG.warning(
                "ignored a message on %.200r: not a household topic of market %s "
                "(counted as bad_topic in the interval summaries from now on)",
                topic,
                self.config.topics.market_id,
            )
        rejections[RejectReason.BAD_TOPIC] += 1
        _LOG.debug("ignored a message on %.200r (%s)", topic, where)
        self._progress.set()

    async def _reject(self, agent: str, payload: bytes, exc: MessageError) -> None:
        """Log (the first of each household and reason in an interval; the rest are the
        summary line's counts) and queue a rejection for a registered household within
        its rate limit. Never waits: the rejection is signed and sent in the
        background, and dropped (counted) when the queue is full."""
        if self._logged.first((agent, exc.reason), self.ledger.last_closed_interval):
            _LOG.info(
                "rejected message from %s: %s (more %s rejections of %s in this interval: "
                "counted in its summary)",
                agent,
                exc,
                exc.reason,
                agent,
            )
        if not self.ledger.is_registered(agent):
            return  # nobody registered listens there; do not let strangers make us publish
        if not self.responses.allowed(agent):
            return
        ref, ref_seq = rejection_reference(payload)
        body = RejectionBody(ref=ref, ref_seq=ref_seq, reason=exc.reason, detail=exc.detail[:512])
        topic = self.config.topics.error(agent)
        self.responses.offer(lambda: self._publish(topic, body, interval=0, retain=False))

    async def _answer_audit(self, agent: str, payload: bytes) -> None:
        """Queue for a registered household the latest checkpoint with a consistency
        proof from the tree size it saved (``{"from_size": N}``): at most one answer per
        household and checkpoint, within its rate limit, the proof built in the
        background; ignore (count) anything else. Never waits."""
        from_size = audit_from_size(payload)
        size = self.ledger.size  # every append is checkpointed: the latest checkpoint's
        if agent not in self.ledger.keys or from_size is None or not 0 < from_size <= size:
            self.responses.counts.audit_ignored += 1
            if self._logged.first((agent, "audit"), self.ledger.last_closed_interval):
                _LOG.info(
                    "ignored audit request from %s (more in this interval: counted in its summary)",
                    agent,
                )
            return
        if self._audit_answered.get(agent) == size:
            self.responses.counts.limited += 1  # answered for this checkpoint already
            return
        if not self.responses.allowed(agent):
            return
        if self.responses.offer(lambda: self._audit_answer(agent, from_size)):
            self._audit_answered[agent] = size

    def _audit_answer(self, agent: str, from_size: int) -> Awaitable[None] | None:
        """The publish of ``agent``'s audit answer (in the background), or None."""
        latest = self.ledger.store.latest_checkpoint()
        if latest is None or not 0 < from_size <= latest.tree_size:
            return None
        source = IntervalSource(self.ledger.store, latest.tree_size, ())
        body = checkpoint_body(source, latest, origin=self.ledger.origin, old_size=from_size)
        topic = self.config.topics.checkpoint_reply(agent)
        return self._publish(topic, body, interval=latest.interval, retain=False)

    def audit_messages(self, outcome: IntervalOutcome) -> AuditMessages:
        """The interval's checkpoint body and receipts (:mod:`ledger._audit_messages`)."""
        return audit_messages(
            self.ledger.store,
            outcome.checkpoint,
            origin=self.ledger.origin,
            first=outcome.first_index,
            entries=outcome.entries,
            households=self.ledger.households,
        )

    async def _publish_audit(self, outcome: IntervalOutcome) -> None:
        """The retained checkpoint, then each household's receipt(s) of the interval."""
        audit = self.audit_messages(outcome)
        topics, interval = self.config.topics, outcome.interval
        await self._publish(topics.checkpoint, audit.checkpoint, interval=interval, retain=True)
        # In flight together (QoS 1, each awaits its PUBACK): one round trip, not N.
        await asyncio.gather(
            *(
                self._publish(topics.receipt(agent), part, interval=interval, retain=False)
                for agent, parts in audit.receipts.items()
                for part in parts
            )
        )

    async def publish_summary(
        self,
        outcome: IntervalOutcome,
        *,
        households: int,
        rejections: Mapping[str, int],
        redeliveries: int,
    ) -> SummaryBody:
        """Publish, retained on ``market/summary``, the signed summary of the trading
        interval ``outcome`` closed: its counts, and the ``rejections`` (per reason) and
        ``redeliveries`` counted since the previous summary (the operator's log line)."""
        body = SummaryBody(
            interval=outcome.interval,
            orders=outcome.orders,
            readings=outcome.readings,
            households=households,
            trades=len(outcome.clearing.fills),
            volume_wh=outcome.clearing.volume_wh,
            price_micro_per_kwh=outcome.clearing.price_micro_per_kwh,
            tree_size=outcome.checkpoint.tree_size,
            root=outcome.checkpoint.root.hex(),
            rejections={reason: n for reason, n in sorted(rejections.items()) if n > 0},
            redeliveries=redeliveries,
        )
        topic = self.config.topics.summary
        await self._publish(topic, body, interval=outcome.interval, retain=True)
        return body

    @property
    def received(self) -> int:
        """Messages received on the household topics so far (every one, judged or not)."""
        return self._arrival

    async def clear_retained(self) -> None:
        """Remove the retained market state (announcement, checkpoint, summary, household
        statuses).

        For a market that starts afresh on a broker that may still hold a previous
        run's retained messages (``wattmesh simulate`` reusing a broker).
        """
        topics = self.config.topics
        retained = (
            topics.announce,
            topics.checkpoint,
            topics.summary,
            *(topics.status(a) for a in self.ledger.households),
        )
        for topic in retained:
            await self.transport.publish(topic, b"", qos=1, retain=True)

    async def run_interval(
        self,
        interval: int,
        tariff: GridTariff,
        *,
        trading: bool = True,
        gate_timeout_s: float | None = None,
        on_gate_closed: Callable[[], None] | None = None,
    ) -> IntervalOutcome:
        """Open ``interval``, wait for the households, close it, and announce the result.

        With ``trading=False`` this is the closing round: it only collects the final
        readings so that the last traded interval can be settled. ``gate_timeout_s``
        (default ``config.gate_timeout_s``) bounds the wait for silent households;
        :meth:`close_gate_now` ends it at once; ``on_gate_closed`` is called when
        the wait is over, before the interval is cleared and logged.
        """
        self.ledger.open_interval(
            interval, tariff, trading=trading, interval_s=self.config.interval_s
        )
        self.first_open.set()
        self._gate_forced = False
        phase = Phase.OPEN if trading else Phase.CLOSED
        await self._announce(interval, tariff, phase)
        await self._wait_for_households(gate_timeout_s)
        await self._caught_up()
        if on_gate_closed is not None:
            on_gate_closed()
        async with self._ledger_lock:
            outcome = self.ledger.close_interval()
        if trading:
            trades = TradesBody(
                tuple(
                    TradeLine(f.buyer, f.seller, f.quantity_wh, f.price_micro_per_kwh)
                    for f in outcome.clearing.fills
                )
            )
            await self._publish(self.config.topics.trades, trades, interval=interval, retain=False)
            await self._announce(interval, tariff, Phase.CLEARED, outcome)
        await self._publish_audit(outcome)
        return outcome

    async def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Return once ``condition()`` holds, re-checked after each handled message;
        raise TimeoutError after ``timeout_s`` seconds."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._progress.clear()
                if condition():
                    return
                await self._progress.wait()

    def close_gate_now(self) -> None:
        """Close the gate of the interval being collected with what has arrived (e.g.
        on SIGTERM); no effect on an interval opened later."""
        self._gate_forced = True
        self._progress.set()

    async def _wait_for_households(self, timeout_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.gate_timeout_s if timeout_s is None else timeout_s)
        while self.ledger.missing() - self.offline:
            self._progress.clear()
            if self._gate_forced:
                _LOG.info("gate closed early on request")
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                missing = sorted(self.ledger.missing() - self.offline)
                _LOG.warning(
                    "gate closed without %d household(s): %s", len(missing), ", ".join(missing[:10])
                )
                return
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                continue

    async def _announce(
        self,
        interval: int,
        tariff: GridTariff,
        phase: Phase,
        outcome: IntervalOutcome | None = None,
    ) -> None:
        body = AnnouncementBody(
            phase=phase,
            interval_s=self.config.interval_s,
            retail_micro_per_kwh=tariff.retail_micro_per_kwh,
            feed_in_micro_per_kwh=tariff.feed_in_micro_per_kwh,
            price_micro_per_kwh=outcome.clearing.price_micro_per_kwh if outcome else None,
            volume_wh=outcome.clearing.volume_wh if outcome else 0,
            tree_size=outcome.checkpoint.tree_size if outcome else 0,
            root=outcome.checkpoint.root.hex() if outcome else "",
        )
        # Retained, so an agent that (re)connects learns the market's state at once.
        await self._publish(self.config.topics.announce, body, interval=interval, retain=True)

    async def _publish(self, topic: str, body: Body, *, interval: int, retain: bool) -> None:
        self._seq += 1
        expires = interval + self.config.interval_s
        message = self._signer.sign(body, interval=interval, seq=self._seq, expires=expires)
        await self.transport.publish(topic, message.to_wire(), qos=1, retain=retain)
