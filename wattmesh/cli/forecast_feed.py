"""The forecasting service's training data: the ledger's log, up to a signed checkpoint.

The composition root's part of provenance (``forecasting/`` does not import
``ledger/``): :class:`LedgerFeed` opens the ledger's database read only, takes its
latest checkpoint, checks the operator's signature on it, and reads the log entries
from where it stopped up to that checkpoint's tree size. Of those it keeps each
``reading`` entry of a registered household whose signature verifies under the
household's registry key (others are counted as refused), and notes each ``flag``
entry (the ledger's own checks: the bracket it names is not learnt from) and each
``settlement`` or ``correction`` (metered export against P2P energy sold, for the
service's short-delivery check). The result
is a :class:`forecasting.history.LoggedBatch` of plain values, named by the checkpoint
that covers every reading in it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import ReadingBody, TrainedOn, decode_message
from wattmesh.forecasting.history import LoggedBatch, LoggedReading, LoggedSettlement
from wattmesh.ledger.checkpoint import origin_for, verify_checkpoint
from wattmesh.ledger.entries import EntryKind, parse_flag
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.store_errors import NoLedgerDatabase, StoreError

__all__ = ["LedgerFeed", "logged_reading"]

_LOG = logging.getLogger(__name__)
_SETTLED = (EntryKind.SETTLEMENT, EntryKind.CORRECTION)


def logged_reading(
    data: bytes, *, agent: str, market_id: str, keys: Mapping[str, VerifyingKey]
) -> tuple[int, ReadingBody] | None:
    """(signed interval, reading) of a logged ``reading`` entry, if ``agent`` is
    registered and its key signed it for this market; else None."""
    key = keys.get(agent)
    if key is None:
        return None
    try:
        obj = json.loads(data)
        wire = json.dumps({"signed": obj["signed"], "sig": obj["sig"]}).encode()
        message = decode_message(wire)
        reading = message.body_as(ReadingBody)
        if message.header.agent != agent or message.header.market != market_id:
            return None
        message.verify(key)
    except (MessageError, ValueError, KeyError, TypeError):
        return None
    return message.header.interval, reading


class LedgerFeed:
    """Reads the ledger's log, read only, from the last position it reached."""

    def __init__(
        self,
        url: str,
        *,
        market_id: str,
        operator_key: VerifyingKey,
        keys: Mapping[str, VerifyingKey],
    ) -> None:
        self.url = url
        self.market_id = market_id
        self.operator_key = operator_key
        self.keys = keys
        self._store: LedgerStore | None = None

    def read(self, position: int) -> LoggedBatch | None:
        """What the log holds from ``position`` up to its latest signed checkpoint, or
        None when there is nothing new (or no ledger database yet)."""
        store = self._open()
        if store is None:
            return None
        checkpoint = store.latest_checkpoint()
        if checkpoint is None or checkpoint.tree_size <= position:
            return None
        if not verify_checkpoint(
            checkpoint, origin=origin_for(self.market_id), key=self.operator_key
        ):
            _LOG.warning(
                "checkpoint %d is not signed by the operator's key: not read",
                checkpoint.tree_size,
            )
            return None
        readings: list[LoggedReading] = []
        flagged: list[tuple[str, int]] = []
        settled: list[LoggedSettlement] = []
        refused = 0
        for batch in store.iter_entry_batches(start=position):
            for entry in batch:
                if entry.idx >= checkpoint.tree_size:
                    break
                if entry.kind == EntryKind.READING and entry.agent is not None:
                    found = logged_reading(
                        entry.data, agent=entry.agent, market_id=self.market_id, keys=self.keys
                    )
                    if found is None:
                        refused += 1
                    else:
                        readings.append(LoggedReading(entry.agent, entry.idx, *found))
                elif entry.kind == EntryKind.FLAG:
                    flag = parse_flag(json.loads(entry.data))
                    flagged.append((flag.agent, flag.end_interval))
                elif entry.kind in _SETTLED and entry.agent is not None:
                    obj = json.loads(entry.data)
                    settled.append(
                        LoggedSettlement(
                            entry.agent, entry.interval, int(obj["export_wh"]), int(obj["sold_wh"])
                        )
                    )
            if batch and batch[-1].idx >= checkpoint.tree_size - 1:
                break
        return LoggedBatch(
            readings=readings,
            flagged=flagged,
            refused=refused,
            settled=settled,
            position=checkpoint.tree_size,
            checkpoint=TrainedOn(checkpoint.tree_size, checkpoint.root.hex()),
        )

    def _open(self) -> LedgerStore | None:
        if self._store is None:
            try:
                self._store = LedgerStore.read_only(self.url)
            except (NoLedgerDatabase, StoreError) as exc:
                _LOG.info("no ledger to read yet: %s", exc)
                return None
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
