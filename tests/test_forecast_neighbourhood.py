"""``forecast serve``'s neighbourhood forecast: the sum of the households' histories over
their common window, retained and signed on ``market/forecast`` (real Mosquitto, SQLite)."""

from __future__ import annotations

import asyncio
from array import array
from pathlib import Path

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import ForecastBody, ReadingBody, TrainedOn, decode_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.forecasting._neighbourhood import aggregate
from wattmesh.forecasting.history import HistoryStore, LoggedBatch, LoggedReading
from wattmesh.forecasting.server import ForecastServer, ServeConfig

STEP = 900
DAY = 96
T0 = 1_796_000_000 - 1_796_000_000 % 86_400
CHECKPOINT = TrainedOn(9_000, "cd" * 32)
FORECASTER = SigningKey.generate()


def _series(start: int, values: list[int]) -> tuple[int, array[int], array[int]]:
    return start, array("q", values), array("q", [v // 10 for v in values])


def test_the_sum_is_taken_over_the_common_window_leaving_out_too_short_spans() -> None:
    series = {
        "a": _series(T0, [1] * (3 * DAY)),  # three days
        "b": _series(T0 + DAY * STEP, [10] * (2 * DAY)),  # joined a day later
        "c": _series(T0 + (3 * DAY - 4) * STEP, [100] * 4),  # an hour: would leave < a day
    }
    agg = aggregate(series, interval_s=STEP)
    assert agg is not None
    assert (agg.agents, agg.left_out) == (("a", "b"), ("c",))
    assert agg.start_s == T0 + DAY * STEP
    assert agg.demand_wh == (11,) * (2 * DAY)
    assert agg.pv_wh == (1,) * (2 * DAY)  # 0 + 1 per interval
    assert aggregate({}, interval_s=STEP) is None
    # the first hours, nobody with two days yet: half the longest span is wanted
    young = {"a": _series(T0, [1] * 8), "b": _series(T0 + 2 * STEP, [10] * 6)}
    young["c"] = _series(T0 + 6 * STEP, [100] * 2)  # would leave two intervals
    agg = aggregate(young, interval_s=STEP)
    assert agg is not None and (agg.agents, agg.left_out) == (("a", "b"), ("c",))
    assert (agg.start_s, agg.demand_wh) == (T0 + 2 * STEP, (11,) * 6)


def _readings(agent: str, first_day: int, days: int, evening_wh: int) -> list[LoggedReading]:
    """``agent``'s readings every interval: 100 Wh, ``evening_wh`` from 17:00 to 22:00."""
    out, total = [], 0
    for i in range(first_day * DAY, (first_day + days) * DAY + 1):
        t = T0 + i * STEP
        out.append(LoggedReading(agent, i, t, ReadingBody(t, total, 0, 0, 0)))
        total += evening_wh if 68 <= i % DAY < 88 else 100
    return out


async def test_the_neighbourhood_forecast_is_published_retained_and_signed(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    topics = Topics("fc-hood")
    store = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    now = T0 + 10 * 86_400
    readings = [*_readings("h1", 0, 10, 300), *_readings("h2", 4, 6, 500)]  # h2 joined later
    config = TransportConfig(address=mosquitto, client_id="fc-hood-server")
    async with Transport(config) as link:
        await asyncio.wait_for(link.wait_connected(), 10)
        server = ForecastServer(
            ServeConfig(topics, interval_s=STEP, workers=0),
            key=FORECASTER, transport=link, store=store, registry={}, clock=lambda: now,
        )  # fmt: skip
        await server.take_logged(LoggedBatch(readings, [], 0, CHECKPOINT.tree_size, CHECKPOINT))
        assert server.counters["neighbourhood_forecasts_published"] == 1
        assert server.counters["neighbourhood_households"] == 2
        server.close()
    reader = TransportConfig(address=mosquitto, client_id="fc-hood-reader")
    async with Transport(reader, subscriptions=[(topics.neighbourhood_forecast, 1)]) as sub:
        message = await asyncio.wait_for(anext(sub.messages()), 10)
    store.close()
    assert message.retain and message.topic == f"{topics.root}/market/forecast"
    decoded = decode_message(message.payload)
    decoded.verify(FORECASTER.verifying)
    body = decoded.body_as(ForecastBody)
    assert body.start == now and body.issued_s == now and body.trained_on == CHECKPOINT
    # a perfectly repeating day: the simplest model wins the tie; 100 + 100, 300 + 500
    assert (body.model, body.version) == ("naive-day+zero", "naive-day/1+zero/1")
    assert body.fallback is None
    assert body.demand_wh[0] == 200 and body.demand_wh[68] == 800
    assert body.demand_p10_wh is not None and body.demand_p90_wh is not None
    assert all(
        lo <= mid <= hi
        for lo, mid, hi in zip(body.demand_p10_wh, body.demand_wh, body.demand_p90_wh, strict=True)
    )
    assert body.pv_wh == (0,) * DAY
