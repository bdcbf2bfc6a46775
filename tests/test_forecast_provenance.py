"""Provenance: the forecasting service learns only from readings the ledger logged.

A real ledger (SQLite or PostgreSQL) logs some intervals; readings it refused (a bad
signature, a replayed seq) never reach its log, so never the training data; the feed
also refuses a logged reading its registry key does not verify and marks a bracket
the ledger flagged. Every reading kept is a leaf of the log below the signed
checkpoint the batch names, whose root is recomputed here from the entries' bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House, households, new_ledger
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.cli.forecast_feed import LedgerFeed
from wattmesh.forecasting.history import HistoryStore, series_from_readings
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore

FORGED_WH = 987_654  # a register value only the refused readings carry


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 Merkle tree hash of the entries' bytes, computed from scratch."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:split]) + _mth(leaves[split:])).digest()


def _refused(ledger: Ledger, payload: bytes) -> RejectReason:
    with pytest.raises(MessageError) as info:
        ledger.ingest(payload)
    return info.value.reason


def _trade(ledger: Ledger, houses: dict[str, House], intervals: int) -> None:
    """``intervals`` intervals from T0: every house reads its meter; a forged and a
    replayed reading of ``a`` are refused in each."""
    for k in range(intervals):
        t = T0 + k * STEP
        ledger.open_interval(t, TARIFF)
        for house in houses.values():
            house.meter(import_wh=100 + 10 * k)
            ledger.ingest(house.reading(t))
        a = houses["a"]
        forged = a.reading(t).replace(b'"import_wh":', b'"import_wh":9', 1)
        assert _refused(ledger, forged) is RejectReason.BAD_SIGNATURE
        a.import_wh += FORGED_WH
        replay = a.reading(t, seq=1)  # signed, but its seq is used up
        a.import_wh -= FORGED_WH
        assert _refused(ledger, replay) in {RejectReason.REPLAY, RejectReason.DUPLICATE}
        ledger.close_interval()


def test_only_logged_verified_readings_below_a_signed_checkpoint_are_learnt(
    db_url: str, tmp_path: Path
) -> None:
    operator = SigningKey.generate()
    houses = households("a", "b", "c")
    ledger = new_ledger(db_url, operator, houses.values())
    _trade(ledger, houses, 4)
    ledger.store.close()
    # the feed's registry holds another key for c: c's logged readings do not verify
    keys = {"a": houses["a"].key.verifying, "b": houses["b"].key.verifying}
    keys["c"] = SigningKey.generate().verifying
    feed = LedgerFeed(db_url, market_id=MARKET, operator_key=operator.verifying, keys=keys)
    history = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    try:
        batch = feed.read(0)
        assert batch is not None
        history.add_logged(batch)
        assert feed.read(batch.position) is None  # nothing new since that checkpoint
    finally:
        feed.close()
    assert {r.agent for r in batch.readings} == {"a", "b"}
    assert batch.refused == 4  # c's four
    kept = [(agent, row) for agent in ("a", "b") for row in history.readings(agent)]
    assert len(kept) == 8
    assert all(FORGED_WH not in (r.import_wh, r.import_wh - 100) for _, (_, _, r) in kept)
    # the named checkpoint covers every reading used: recompute it from the log
    store = LedgerStore.read_only(db_url)
    try:
        entries = list(store.iter_entries())
        checkpoint = store.latest_checkpoint()
    finally:
        store.close()
    assert checkpoint is not None
    assert (batch.checkpoint.tree_size, batch.position) == (checkpoint.tree_size,) * 2
    covered = [e.data for e in entries[: batch.checkpoint.tree_size]]
    assert _mth(covered).hex() == batch.checkpoint.root
    for agent, (log_idx, _, reading) in kept:
        assert log_idx < batch.checkpoint.tree_size
        entry = entries[log_idx]
        assert (entry.kind, entry.agent) == ("reading", agent)
        assert f'"meter_time":{reading.meter_time}'.encode() in entry.data
    history.close()


def test_a_bracket_the_ledger_flagged_is_not_learnt(tmp_path: Path) -> None:
    history = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    from wattmesh.broker.messages import ReadingBody, TrainedOn
    from wattmesh.forecasting.history import LoggedBatch, LoggedReading

    readings = [
        LoggedReading("a", i, T0 + i * STEP, ReadingBody(T0 + i * STEP, 100 * i, 0, 0, 0))
        for i in range(5)
    ]
    checkpoint = TrainedOn(10, "00" * 32)
    history.add_logged(LoggedBatch(readings, [], 0, 10, checkpoint))
    history.add_logged(LoggedBatch([], [("a", T0 + 3 * STEP)], 0, 12, checkpoint))
    rows = history.readings("a")
    assert [flagged for _, flagged, _ in rows] == [False, False, False, True, False]
    start, demand, _ = series_from_readings(((f, r) for _, f, r in rows), STEP)
    assert (start, demand) == (T0 + 3 * STEP, [100])  # learnt again after the flagged one
    history.close()
