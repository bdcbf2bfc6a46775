"""The forecasting service's core over a real Mosquitto and SQLite: what it publishes,
what it ignores, and a restart that serves its stored fits without refitting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    ForecastBody,
    HealthBody,
    ReadingBody,
    TrainedOn,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig
from wattmesh.forecasting.history import HistoryStore, LoggedBatch, LoggedReading
from wattmesh.forecasting.server import ForecastServer, ServeConfig

STEP = 900
DAY = 96
T0 = 1_796_000_000 - 1_796_000_000 % 86_400
CHECKPOINT = TrainedOn(4_000, "ab" * 32)
FORECASTER = SigningKey.generate()
HOUSE = SigningKey.generate()


@pytest_asyncio.fixture
async def link(mosquitto: BrokerAddress) -> AsyncIterator[Transport]:
    async with Transport(TransportConfig(address=mosquitto, client_id="fc-server")) as t:
        await asyncio.wait_for(t.wait_connected(), 10)
        yield t


def _history(days: int) -> LoggedBatch:
    """``h1``'s readings every interval: 100 Wh by night, 300 in the evening."""
    readings, total = [], 0
    for i in range(days * DAY + 1):
        t = T0 + i * STEP
        readings.append(LoggedReading("h1", i, t, ReadingBody(t, total, 0, 0, 0)))
        total += 300 if 68 <= i % DAY < 88 else 100
    return LoggedBatch(readings, [], 0, CHECKPOINT.tree_size, CHECKPOINT)


def _server(topics: Topics, link: Transport, store: HistoryStore, now: float) -> ForecastServer:
    return ForecastServer(
        ServeConfig(topics, interval_s=STEP, workers=0),
        key=FORECASTER, transport=link, store=store,
        registry={"h1": HOUSE.verifying}, clock=lambda: now,
    )  # fmt: skip


def _reading(topics: Topics, t: int, key: SigningKey = HOUSE) -> Message:
    wire = sign_message(
        key, ReadingBody(t, 0, 0, 0, 0), market=topics.market_id, interval=t, agent="h1",
        seq=t, expires=t + STEP,
    ).to_wire()  # fmt: skip
    return Message(topics.reading("h1"), wire, retain=False)


async def _retained_forecast(mosquitto: BrokerAddress, topics: Topics) -> ForecastBody:
    config = TransportConfig(address=mosquitto, client_id="fc-reader")
    async with Transport(config, subscriptions=[(topics.forecast("h1"), 1)]) as reader:
        message = await asyncio.wait_for(anext(reader.messages()), 10)
    decoded = decode_message(message.payload)
    decoded.verify(FORECASTER.verifying)
    return decoded.body_as(ForecastBody)


async def test_a_restarted_service_serves_its_stored_fit_without_refitting(
    link: Transport, mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    topics = Topics("fc-restart")
    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    now = T0 + 10 * 86_400
    first = _server(topics, link, store, now)
    await first.take_logged(_history(10))
    await first.refit_all()  # the daily refit
    assert first.counters["fits"] == 2  # one when the history came, one on the schedule
    start = T0 + 10 * 86_400
    await first.handle(_reading(topics, start))
    before = await _retained_forecast(mosquitto, topics)
    # a perfectly repeating day: both candidates err 0, the simpler wins the tie
    assert (before.model, before.version) == ("naive-day+zero", "naive-day/1+zero/1")
    assert before.trained_on == CHECKPOINT and before.issued_s == now
    assert before.demand_wh[68] == 300 and before.demand_wh[0] == 100
    assert before.pv_wh == before.pv_p90_wh == (0,) * DAY
    first.close()
    again = _server(topics, link, HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}"), now)
    await again.handle(_reading(topics, start + STEP))
    after = await _retained_forecast(mosquitto, topics)
    assert again.counters["fits"] == 0  # the stored fit served
    assert after.start == start + STEP and after.demand_wh == (*before.demand_wh[1:], 100)
    assert after.trained_on == CHECKPOINT
    again.close()
    store.close()


async def test_readings_that_do_not_verify_are_ignored_and_publish_nothing(
    link: Transport, tmp_path: Path
) -> None:
    topics = Topics("fc-ignore")
    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    server = _server(topics, link, store, T0)
    await server.handle(_reading(topics, T0, key=SigningKey.generate()))  # another key
    await server.handle(Message(topics.reading("h9"), b"{}", retain=False))  # not registered
    await server.handle(Message(f"{topics.root}/household/h1/other", b"{}", retain=False))
    await server.handle(Message(topics.reading("h1"), b"not json", retain=False))
    assert server.counters["readings_ignored"] == 4
    assert server.counters["forecasts_published"] == 0
    await server.handle(_reading(topics, T0))  # no logged history yet: zeros, said so
    assert server.counters["forecasts_published"] == 1
    server.close()
    store.close()


async def _health(mosquitto: BrokerAddress, topics: Topics) -> HealthBody:
    config = TransportConfig(address=mosquitto, client_id="fc-health")
    async with Transport(config, subscriptions=[(topics.forecaster_health, 1)]) as reader:
        message = await asyncio.wait_for(anext(reader.messages()), 10)
    decoded = decode_message(message.payload)
    decoded.verify(FORECASTER.verifying)
    return decoded.body_as(HealthBody)


async def test_health_says_degraded_while_the_log_cannot_be_read(
    link: Transport, mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    topics = Topics("fc-health")
    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    server = _server(topics, link, store, T0 + 10 * 86_400)

    async def broken() -> LoggedBatch | None:
        raise OSError("the ledger's disk is gone")

    async def history() -> LoggedBatch | None:
        return _history(2)

    with pytest.raises(OSError, match="disk is gone"):
        await server._read_log(broken)
    assert (await _health(mosquitto, topics)).state == "degraded"
    await server._read_log(history)
    health = await _health(mosquitto, topics)
    assert (health.state, health.trained_on) == ("ok", CHECKPOINT)
    assert health.counters["logged_readings"] == 2 * DAY + 1
    assert health.counters["households"] == 1
    server.close()
    store.close()
