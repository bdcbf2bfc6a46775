"""The production path: ``ledger run``, ``forecast serve`` and real agents trade.

Real Mosquitto, SQLite, keys and processes; 4 s intervals on the wall clock. The
agents trust only the forecaster's key; they order on its forecasts and trades clear.
A reading published on the bus but refused by the ledger (a bad signature, a replayed
seq) never enters the training data, and the checkpoint each forecast names covers
every reading the service learnt from. The test waits for log lines and messages,
never sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.forecastkit import FlowMeter, serve_process, trading_agents, write_forecast_config
from tests.ledgerrunkit import LedgerProcess, write_market
from wattmesh.broker.messages import (
    ForecastBody,
    HealthBody,
    ReadingBody,
    decode_message,
    sign_message,
)
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.forecasting.history import HistoryStore
from wattmesh.ledger.store import LedgerStore

pytestmark = pytest.mark.slow

INTERVAL_S = 4
FORGED_WH = 987_654_321  # only the refused readings carry it
METERS = {  # two buyers and a seller, Wh per read
    "h001": {"import_wh": 5},
    "h002": {"export_wh": 6, "pv_wh": 10},
    "h003": {"import_wh": 3},
}


async def _retained(
    broker: BrokerAddress,
    topics: list[str],
    until: Mapping[str, Callable[[bytes], bool]] | None = None,
) -> dict[str, bytes]:
    """The retained message of each topic (a fresh subscription gets them); for a topic
    in ``until``, the first message (retained or published later) that satisfies it."""
    wanted = dict(until or {})
    link = Transport(
        TransportConfig(address=broker, client_id="retained-reader"),
        subscriptions=[(topic, 1) for topic in topics],
    )
    found: dict[str, bytes] = {}
    async with link:
        async with asyncio.timeout(30):
            async for message in link.messages():
                check = wanted.get(message.topic)
                if message.topic in found and check is None:
                    continue
                if check is None or check(message.payload):
                    found[message.topic] = message.payload
                    wanted.pop(message.topic, None)
                if len(found) == len(topics):
                    break
    return found


def _fitted_all(payload: bytes) -> bool:
    """A health message that counts every household as fitted."""
    return decode_message(payload).body_as(HealthBody).counters.get("households") == len(METERS)


async def test_forecasts_arrive_trades_clear_and_only_logged_readings_are_learnt(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    (tmp_path / "market").mkdir()
    market = write_market(
        tmp_path / "market", db_url=db_url, broker=mosquitto, interval_s=INTERVAL_S,
        gate_timeout_s=3.5, grace_s=1.0,
    )  # fmt: skip
    config, forecaster = write_forecast_config(
        market, mosquitto, ledger_url=db_url, interval_s=INTERVAL_S
    )
    topics = market.topics
    ledger = await LedgerProcess.start(market.config)
    serve: LedgerProcess | None = None
    try:
        await ledger.until("leader of market")
        serve = await serve_process(config)
        await serve.until("forecasting for market")
        meters = {agent: FlowMeter(**flows) for agent, flows in METERS.items()}
        async with trading_agents(market, mosquitto, tmp_path, forecaster, meters):
            for _ in range(8):
                summary = await ledger.summary()
                if int(summary["trades"]) > 0:
                    break
            else:
                raise AssertionError(f"no trade cleared: {ledger.lines[-10:]}")
            assert summary["orders"] == summary["households"] == "3"
            # Readings the ledger refuses, on h001's topic: a bad signature, a replay.
            interval = int(summary["interval"]) + INTERVAL_S
            forged = ReadingBody(interval, FORGED_WH, 0, 0, 0)
            replay = sign_message(
                market.keys["h001"], forged, market=topics.market_id, interval=interval,
                agent="h001", seq=1, expires=interval + INTERVAL_S,
            ).to_wire()  # fmt: skip
            bad = replay.replace(b'"sig":"', b'"sig":"AAAA', 1)
            rogue = Transport(TransportConfig(address=mosquitto, client_id="rogue"))
            async with rogue:
                for wire in (bad, replay):
                    await rogue.publish(topics.reading("h001"), wire, qos=1)
            rejected, trades = 0, 0
            for _ in range(3):
                summary = await ledger.summary()
                rejected += int(summary["rejected"])
                trades += int(summary["trades"])
            assert rejected >= 2 and trades >= 1, ledger.lines[-10:]
            retained = await _retained(
                mosquitto,
                [topics.forecast(a) for a in METERS]
                + [topics.forecaster_health, topics.neighbourhood_forecast],
                # trades may clear on the agents' own forecasts before the service has
                # fitted everyone: wait for the health that follows the fits
                until={topics.forecaster_health: _fitted_all},
            )
        log = await serve.stop()
        assert "stopped cleanly" in log and "Traceback" not in log
        stopped = await _retained(mosquitto, [topics.forecaster_health])
        await ledger.stop()
    finally:
        await ledger.kill()
        if serve is not None:
            await serve.kill()
    # Every household's retained forecast: signed by the forecaster, with its bands,
    # model, version and the checkpoint it was trained on.
    store = LedgerStore.read_only(db_url)
    try:
        for agent in METERS:
            message = decode_message(retained[topics.forecast(agent)])
            message.verify(forecaster.verifying)
            body = message.body_as(ForecastBody)
            assert body.model != "zero" and body.version and body.issued_s > 0
            assert body.trained_on is not None
            checkpoint = store.checkpoint_at(body.trained_on.tree_size)
            assert checkpoint is not None and checkpoint.root.hex() == body.trained_on.root
            for target in ("demand", "pv"):
                low, mid, high = body.quantiles(target)
                assert all(lo <= m <= hi for lo, m, hi in zip(low, mid, high, strict=True))
        assert ForecastBody.from_json(body.to_json()) == body
        # the neighbourhood's total, retained and signed like a household's
        message = decode_message(retained[topics.neighbourhood_forecast])
        message.verify(forecaster.verifying)
        hood = message.body_as(ForecastBody)
        assert hood.model != "zero" and hood.trained_on is not None
        checkpoint = store.checkpoint_at(hood.trained_on.tree_size)
        assert checkpoint is not None and checkpoint.root.hex() == hood.trained_on.root
        assert min(hood.demand_wh) > 0  # three households' demand, none left out
        health = decode_message(retained[topics.forecaster_health])
        health.verify(forecaster.verifying)
        state = health.body_as(HealthBody)
        assert state.state == "ok" and state.counters["forecasts_published"] > 0
        assert state.counters["logged_readings"] > 0 and state.trained_on is not None
        assert state.counters["households"] == len(METERS)
        last = decode_message(stopped[topics.forecaster_health])
        last.verify(forecaster.verifying)
        assert last.body_as(HealthBody).state == "stopped"
        # Provenance: what the service learnt from is in the log, below the checkpoint
        # its last batch named; the refused readings are nowhere in it.
        history = HistoryStore(f"sqlite:///{market.folder / 'forecast.db'}")
        try:
            position, trained_on = history.position()
            assert trained_on is not None and position == trained_on.tree_size
            named = store.checkpoint_at(trained_on.tree_size)
            assert named is not None and named.root.hex() == trained_on.root
            for agent in METERS:
                assert history.settled(agent)  # the log's settlements, for short delivery
                rows = history.readings(agent)
                assert len(rows) >= 3
                for log_idx, _, reading in rows:
                    assert log_idx < trained_on.tree_size
                    entry = store.entry(log_idx)
                    assert entry is not None and (entry.kind, entry.agent) == ("reading", agent)
                    assert f'"import_wh":{reading.import_wh},'.encode() in entry.data
                    assert FORGED_WH not in (reading.import_wh, reading.meter_time)
        finally:
            history.close()
    finally:
        store.close()
