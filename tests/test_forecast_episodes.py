"""``forecast serve``'s own anomaly episodes: short delivery over the logged settlements,
kept in its SQL store so a restarted service never publishes one again, and the readings
inside an episode not learnt from (real Mosquitto, real SQLite, a real ledger's log)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.ledgerkit import MARKET, STEP, T0, TARIFF, crossing_interval
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import AnomalyBody, ReadingBody, TrainedOn
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.cli.forecast_feed import LedgerFeed
from wattmesh.forecasting.history import (
    HistoryStore,
    LoggedBatch,
    LoggedReading,
    LoggedSettlement,
    series_from_readings,
)
from wattmesh.forecasting.server import ForecastServer, ServeConfig
from wattmesh.ledger.anomalies import take_anomaly

DAY = 96
MIDNIGHT = 1_796_000_000 - 1_796_000_000 % 86_400
CHECKPOINT = TrainedOn(7_000, "ef" * 32)
FORECASTER = SigningKey.generate()


def test_the_feed_hands_the_service_the_logged_settlements(tmp_path: Path) -> None:
    """A real ledger: ``a`` sold 500 Wh at T0 and its meter exported 100."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    operator = SigningKey.generate()
    ledger, houses = crossing_interval(url, operator, None)
    ledger.close_interval()
    houses["a"].meter(export_wh=100)
    ledger.open_interval(T0 + STEP, TARIFF)
    for house in houses.values():
        ledger.ingest(house.reading(T0 + STEP))
    ledger.close_interval()
    ledger.store.close()
    keys = {agent: house.key.verifying for agent, house in houses.items()}
    feed = LedgerFeed(url, market_id=MARKET, operator_key=operator.verifying, keys=keys)
    try:
        batch = feed.read(0)
    finally:
        feed.close()
    assert batch is not None
    settled = {(s.agent, s.interval): (s.export_wh, s.sold_wh) for s in batch.settled}
    assert settled[("a", T0)] == (100, 500)
    assert settled[("b", T0)] == (0, 0)
    history = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    history.add_logged(batch)
    assert history.settled("a")[T0] == (100, 500)
    history.close()


def _batch(days: int) -> LoggedBatch:
    """``s1`` over ``days`` days: PV 10:00-16:00, 200 Wh exported and sold each of those
    intervals, but on days 1 to 4 its meter exports nothing while it still sells."""
    readings, settled = [], []
    imp = exp = pv = 0
    for k in range(days * DAY + 1):
        t = MIDNIGHT + k * STEP
        readings.append(LoggedReading("s1", k, t, ReadingBody(t, imp, exp, pv, 0)))
        sunny = 40 <= k % DAY < 64
        delivered = 200 if sunny and not DAY <= k < 5 * DAY else 0
        imp += 50
        pv += 300 if sunny else 0
        exp += delivered
        settled.append(LoggedSettlement("s1", t, delivered, 200 if sunny else 0))
    return LoggedBatch(readings, [], 0, CHECKPOINT.tree_size, CHECKPOINT, settled)


def _server(topics: Topics, link: Transport, store: HistoryStore, now: int) -> ForecastServer:
    return ForecastServer(
        ServeConfig(topics, interval_s=STEP, workers=0),
        key=FORECASTER, transport=link, store=store, registry={}, clock=lambda: now,
    )  # fmt: skip


async def test_short_delivery_is_published_once_across_a_restart_and_not_learnt(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    topics = Topics("fc-episodes")
    db = f"sqlite:///{tmp_path / 'forecast.db'}"
    now = MIDNIGHT + 6 * 86_400
    listener = Transport(
        TransportConfig(address=mosquitto, client_id="fc-ep-listener"),
        subscriptions=[(topics.all_anomalies, 1)],
    )
    link = Transport(TransportConfig(address=mosquitto, client_id="fc-ep-server"))
    async with listener, link:
        await asyncio.gather(listener.wait_connected(), link.wait_connected())
        messages = aiter(listener.messages())
        store = HistoryStore(db)
        first = _server(topics, link, store, now)
        await first.take_logged(_batch(6))  # no fit yet: fitted now, then checked
        assert first.counters["anomalies_published"] == 1
        first.close()
        store.close()
        async with asyncio.timeout(10):
            message = await anext(messages)
        key = FORECASTER.verifying
        body = take_anomaly(message.payload, agent="s1", market_id=topics.market_id, key=key).body
        assert body == AnomalyBody(
            agent="s1",
            anomaly="short_delivery",
            interval=MIDNIGHT + 86_400,
            reason="delivered 0 Wh of 19200 Wh sold over 4 days",
            score_milli=1000,
            window_start=MIDNIGHT + 86_400,
            window_end=MIDNIGHT + 5 * 86_400,
        )
        # a real restart: a new server object on the same database checks again
        store = HistoryStore(db)
        again = _server(topics, link, store, now)
        await again.refit_all()
        assert again.counters["fits"] == 1
        assert again.counters["anomalies_published"] == 0
        # what it kept: the episode, and the readings inside it read back flagged
        assert [(e.kind, e.interval) for e in store.episodes("s1")] == [
            ("short_delivery", MIDNIGHT + 86_400)
        ]
        rows = store.readings("s1")
        flagged = [r.meter_time for _, f, r in rows if f]
        assert flagged == [MIDNIGHT + k * STEP for k in range(DAY + 1, 5 * DAY + 1)]
        start, demand, _ = series_from_readings(((f, r) for _, f, r in rows), STEP)
        assert (start, len(demand)) == (MIDNIGHT + 5 * 86_400, DAY)  # learnt after it only
        fit = store.fit("s1")
        assert fit is not None and fit.demand.start_s == now  # fitted on that day
        again.close()
        store.close()
        # nothing more on the topic: the next message is this marker, sent after it all
        await link.publish(topics.anomaly("s1"), b"marker", qos=1)
        async with asyncio.timeout(10):
            assert (await anext(messages)).payload == b"marker"


def test_a_flag_overlapping_a_kept_episode_of_its_kind_is_the_same_episode(
    tmp_path: Path,
) -> None:
    from wattmesh.forecasting.history import Episode

    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    d = 86_400
    assert store.add_episode(Episode("s1", "short_delivery", MIDNIGHT, MIDNIGHT, MIDNIGHT + 3 * d))
    # the history's window slid on: the same fault found from a later first day
    later = Episode("s1", "short_delivery", MIDNIGHT + d, MIDNIGHT + d, MIDNIGHT + 4 * d)
    assert not store.add_episode(later)
    assert store.add_episode(
        Episode("s1", "night_export", MIDNIGHT + d, MIDNIGHT + d, MIDNIGHT + d + STEP)
    )
    assert store.add_episode(Episode("s2", "short_delivery", MIDNIGHT, MIDNIGHT, MIDNIGHT + 3 * d))
    assert store.add_episode(  # after it ended: a new episode
        Episode("s1", "short_delivery", MIDNIGHT + 4 * d, MIDNIGHT + 4 * d, MIDNIGHT + 7 * d)
    )
    kept = [(e.kind, e.interval, e.window_start, e.window_end) for e in store.episodes("s1")]
    assert kept == [
        ("short_delivery", MIDNIGHT, MIDNIGHT, MIDNIGHT + 4 * d),  # widened
        ("night_export", MIDNIGHT + d, MIDNIGHT + d, MIDNIGHT + d + STEP),
        ("short_delivery", MIDNIGHT + 4 * d, MIDNIGHT + 4 * d, MIDNIGHT + 7 * d),
    ]
    store.close()
