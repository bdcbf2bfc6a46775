"""``forecast serve``'s anomaly hook: flags over the logged readings, signed, on the bus.

Real Mosquitto and SQLite: the service publishes a night-export episode of a household
(the ledger's flagged readings left out) once, signed with its key, on
``household/<id>/anomaly``, where the ledger's check takes it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import AnomalyBody, ReadingBody
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.forecasting.history import HistoryStore
from wattmesh.forecasting.server import ForecastServer, ServeConfig
from wattmesh.ledger.anomalies import take_anomaly

T0 = 1_748_822_400  # midnight UTC


def _rows() -> list[tuple[int, bool, ReadingBody]]:
    """Two days of 15-min readings: PV from 10:00 to 16:00, export 50 Wh at 02:00 and
    02:15 of day 2, and one flagged reading (a reversal) that must not count."""
    rows = []
    imp = exp = pv = 0
    for k in range(2 * 96 + 1):
        rows.append((k, k == 150, ReadingBody(T0 + k * 900, imp, exp, pv, 0)))
        slot = k % 96
        imp += 20
        pv += 100 if 40 <= slot < 64 else 0
        exp += 60 if 40 <= slot < 64 else 0
        exp += 50 if k in (96 + 8, 96 + 9) else 0
    return rows


async def test_night_export_is_published_once_and_signed(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    topics = Topics("m1")
    key = SigningKey.generate()
    history = HistoryStore(f"sqlite:///{tmp_path / 'forecast.db'}")
    listener = Transport(
        TransportConfig(address=mosquitto, client_id="listener"),
        subscriptions=[(topics.all_anomalies, 1)],
    )
    sender = Transport(TransportConfig(address=mosquitto, client_id="forecaster"))
    try:
        async with listener, sender:
            await asyncio.gather(listener.wait_connected(), sender.wait_connected())
            server = ForecastServer(
                ServeConfig(topics, workers=0),
                key=key, transport=sender, store=history, registry={},
            )  # fmt: skip
            await server.publish_anomalies("h001", _rows())
            await server.publish_anomalies("h001", _rows())  # the same episode: not again
            assert server.counters["anomalies_published"] == 1
            async with asyncio.timeout(10):
                message = await anext(aiter(listener.messages()))
    finally:
        history.close()
    assert message.topic == topics.anomaly("h001")
    taken = take_anomaly(message.payload, agent="h001", market_id="m1", key=key.verifying)
    assert taken.body == AnomalyBody(
        agent="h001",
        anomaly="night_export",
        interval=T0 + (96 + 8) * 900,
        reason="exported 100 Wh over 2 interval(s) while clear-sky PV is 0",
        score_milli=500,
        window_start=T0 + (96 + 8) * 900,
        window_end=T0 + (96 + 10) * 900,
    )
