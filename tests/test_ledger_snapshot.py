"""State snapshots on real SQLite and PostgreSQL: a restart from the latest snapshot gives
exactly the state a replay of the whole log gives, an unusable snapshot is ignored, and
the admission keeps only two intervals of message ids while still telling an old
redelivery from a replay."""

from __future__ import annotations

import json
import logging

import pytest
import sqlalchemy as sa

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, House, new_ledger, rejection_reason
from wattmesh.broker.errors import RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.ledger._admission import RedeliveredError
from wattmesh.ledger._merkle import CompactRange
from wattmesh.ledger._snapshot import (
    SNAPSHOT_VERSION,
    LedgerState,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from wattmesh.ledger.clearing import Fill, GridTariff
from wattmesh.ledger.keyring import KeyRing
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import SNAPSHOT_TABLE, LedgerStore
from wattmesh.ledger.verify import verify_ledger


def _restart(db_url: str, operator: SigningKey) -> Ledger:
    return Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=operator)


def _drop_snapshots(db_url: str) -> None:
    store = LedgerStore(db_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {SNAPSHOT_TABLE}"))
    store.close()


def _state_bytes(ledger: Ledger) -> bytes:
    return encode_snapshot(ledger.state())


def _interval(ledger: Ledger, houses: dict[str, House], k: int, held: list[bytes]) -> None:
    """Interval k of an eventful market: a misses readings 2-3 (backfilled in 5), b misses
    4-5 (never backfilled), c's register goes backwards in 6, d's key is rotated before
    7 and e's revoked before 8."""
    a, b, c, d, e = (houses[x] for x in ("h001", "h002", "h003", "h004", "h005"))
    t = T0 + k * STEP
    for n, house in enumerate((a, b, c, d, e)):
        house.meter(import_wh=40 + 7 * n + k, export_wh=(k * 31 + n * 17) % 90)
    if k == 6:
        c.import_wh -= 200
    ledger.open_interval(t, TARIFF)
    for house in (a, b, c, d, e):
        if house is e and k >= 8:
            continue  # its key is revoked
        message = house.reading(t)
        if house is a and k in (2, 3):
            held.append(message)
        elif not (house is b and k in (4, 5)):
            ledger.ingest(message)
    if k == 5:
        for message in held:
            ledger.ingest(message)
    for n, house in enumerate((a, b, c, d, e)):
        if house is e and k >= 8:
            continue
        side = Side.BUY if (n + k) % 2 else Side.SELL
        ledger.ingest(house.order(t, side, 100 + 13 * n, 90_000 + 30_000 * n))
    ledger.close_interval()


def _market(db_url: str, intervals: int) -> tuple[Ledger, SigningKey, dict[str, House]]:
    """A ledger of five households through the first ``intervals`` of :func:`_interval`."""
    operator = SigningKey.generate()
    houses = {f"h00{i}": House(f"h00{i}") for i in range(1, 6)}
    ledger = new_ledger(db_url, operator, houses.values())
    held: list[bytes] = []
    for k in range(intervals):
        _interval(ledger, houses, k, held)
    return ledger, operator, houses


def test_restart_from_the_snapshot_equals_a_replay_of_the_whole_log(db_url: str) -> None:
    operator = SigningKey.generate()
    houses = {f"h00{i}": House(f"h00{i}") for i in range(1, 6)}
    ledger = new_ledger(db_url, operator, houses.values())
    held: list[bytes] = []
    for k in range(10):
        if k == 7:
            houses["h004"].key = SigningKey.generate()
            ledger.register({"h004": houses["h004"].key.verifying}, interval=T0 + k * STEP)
        if k == 8:
            kid = houses["h005"].key.kid
            ledger.register({}, interval=T0 + k * STEP, revoked={"h005": {kid: "stolen"}})
        _interval(ledger, houses, k, held)
        live = _state_bytes(ledger)
        assert ledger.store.latest_snapshot() == (ledger.size, live)
        ledger.store.close()
        from_snapshot = _restart(db_url, operator)
        assert _state_bytes(from_snapshot) == live
        from_snapshot.store.close()
        _drop_snapshots(db_url)
        replayed = _restart(db_url, operator)
        assert _state_bytes(replayed) == live
        ledger = replayed  # the next close writes a snapshot again
    kinds = {e.kind for e in ledger.store.iter_entries()}
    assert {"correction", "flag", "key_rotation", "key_revocation", "settlement"} <= kinds
    state = json.loads(_state_bytes(ledger))
    assert len(state["key_entries"]) == 5 + 2  # five keys, d's rotation, e's revocation
    assert "h005" not in ledger.keys and ledger.keys["h004"].kid == houses["h004"].key.kid
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    ledger.store.close()


def test_entries_logged_after_the_snapshot_are_replayed(db_url: str) -> None:
    """Keys registered after the last close are not in its snapshot: a restart takes
    the snapshot and replays them, and the state is the whole log's."""
    ledger, operator, _houses = _market(db_url, 3)
    snapshot_size = ledger.size
    late = House("h009")
    assert ledger.register({"h009": late.key.verifying}, interval=T0 + 3 * STEP) == 1
    live = _state_bytes(ledger)
    ledger.store.close()
    restarted = _restart(db_url, operator)
    stored = restarted.store.latest_snapshot()
    assert stored is not None and stored[0] == snapshot_size < restarted.size
    assert _state_bytes(restarted) == live
    restarted.open_interval(T0 + 3 * STEP, TARIFF)
    restarted.ingest(late.reading(T0 + 3 * STEP))  # the new key is known
    restarted.store.close()


@pytest.mark.parametrize(
    "damage", ["version", "garbage", "other_root", "not_a_key_entry", "no_such_entry"]
)
def test_an_unusable_snapshot_is_ignored_and_the_log_replayed(
    db_url: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger, operator, _houses = _market(db_url, 4)
    live = _state_bytes(ledger)
    size = ledger.size
    obj = json.loads(live)
    if damage == "version":
        obj["version"] = SNAPSHOT_VERSION + 1
    elif damage == "other_root":
        obj["peaks"][0] = "00" * 32
    elif damage == "not_a_key_entry":
        obj["key_entries"][0] = size - 1  # the interval's last entry, a posting
    elif damage == "no_such_entry":
        obj["key_entries"][-1] = size + 5
    data = b"{not json" if damage == "garbage" else json.dumps(obj).encode()
    with ledger.store.engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {SNAPSHOT_TABLE} SET data = :data WHERE tree_size = :size"),
            {"data": data, "size": size},
        )
    ledger.store.close()
    with caplog.at_level(logging.WARNING, logger="wattmesh.ledger._restore"):
        restarted = _restart(db_url, operator)
    assert "replaying" in caplog.text
    assert _state_bytes(restarted) == live
    restarted.store.close()


def test_decode_refuses_what_is_not_a_snapshot() -> None:
    with pytest.raises(SnapshotError, match="version"):
        decode_snapshot(b'{"version": 0}', None)
    with pytest.raises(SnapshotError, match="not JSON"):
        decode_snapshot(b"\xff", None)
    good = json.loads(encode_snapshot(_small_state()))
    for key in ("key_entries", "metering", "peaks"):
        broken = dict(good)
        del broken[key]
        with pytest.raises(SnapshotError, match="malformed"):
            decode_snapshot(json.dumps(broken).encode(), None)
    broken = dict(good, peaks=[])  # a tree of 3 leaves has two peaks
    with pytest.raises(SnapshotError, match="peaks"):
        decode_snapshot(json.dumps(broken).encode(), None)


_KEY = SigningKey.generate().verifying


def _small_state() -> LedgerState:
    from wattmesh.ledger.metering import Metering

    tree = CompactRange()
    for i in range(3):
        tree.append(bytes([i]))
    ring = KeyRing()
    ring.apply("key", "h1", {"agent": "h1", "kid": _KEY.kid, "public_key": _b64(_KEY.der())}, at=0)
    return LedgerState(
        tree,
        ring,
        {"h1": 4},
        Metering(),
        T0,
        GridTariff(300_000, 80_000),
        (Fill("h1", "h2", 100, 120_000, "a" * 64, "b" * 64),),
    )


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def test_a_snapshot_round_trips() -> None:
    state = _small_state()
    decoded = decode_snapshot(encode_snapshot(state), None)
    assert decoded.key_entries == state.keyring.applied == (0,)
    again = decoded.state
    assert not again.keyring.current  # filled from the log by ledger._restore
    again.keyring.apply(
        "key", "h1", {"agent": "h1", "kid": _KEY.kid, "public_key": _b64(_KEY.der())}, at=0
    )
    assert encode_snapshot(again) == encode_snapshot(state)
    assert again.tree.root() == state.tree.root() and again.tree.size == 3
    assert again.last_fills == state.last_fills and again.last_tariff == state.last_tariff


def test_admission_keeps_two_intervals_of_ids_and_asks_the_log_for_older(db_url: str) -> None:
    """After many intervals the ledger holds the message ids of the last two only; a
    redelivery of a message logged long ago is still a redelivery (its id is read from
    the log), and another message with an old seq is still a replay."""
    ledger, operator, houses = _market(db_url, 10)
    assert ledger.kept_message_ids <= 2 * 2 * len(houses)  # two intervals' readings and orders
    logged = ledger.store.message_entry("h003", 1)  # c's first reading, 10 intervals ago
    assert logged is not None and logged.kind == "reading"
    obj = json.loads(logged.data)
    first_reading = json.dumps({"signed": obj["signed"], "sig": obj["sig"]}).encode()
    ledger.open_interval(T0 + 10 * STEP, TARIFF)
    with pytest.raises(RedeliveredError):
        ledger.ingest(first_reading)
    assert ledger.redeliveries == 1
    other = houses["h003"].order(T0 + 10 * STEP, Side.BUY, 5, 100_000, seq=1)
    assert rejection_reason(ledger, other) is RejectReason.REPLAY
    ledger.store.close()
    restarted = _restart(db_url, operator)
    assert restarted.kept_message_ids == 0
    restarted.open_interval(T0 + 10 * STEP, TARIFF)
    with pytest.raises(RedeliveredError):
        restarted.ingest(first_reading)
    assert rejection_reason(restarted, other) is RejectReason.REPLAY
    restarted.store.close()
