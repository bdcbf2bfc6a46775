"""The dashboard's bus listener judges every message by its signature: real keys, real envelopes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from wattmesh.broker.forecast_bodies import HEALTH_COUNTERS
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    ForecastBody,
    HealthBody,
    Phase,
    Presence,
    Signer,
    StatusBody,
    SummaryBody,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Message
from wattmesh.dashboard._hub import Hub, _Client
from wattmesh.dashboard.live import MAX_WAITING, Listener, Writes
from wattmesh.dashboard.metrics import DashboardMetrics

MARKET = "m1"
T0 = 1_800_000_000


@dataclass
class Recorded:
    """What the listener asked the read model to store."""

    summaries: list[tuple[int, dict[str, int]]] = field(default_factory=list)
    forecasts: list[tuple[str, int]] = field(default_factory=list)
    presence: dict[str, bool] = field(default_factory=dict)
    broker: list[bool] = field(default_factory=list)
    health: list[tuple[str, int]] = field(default_factory=list)

    def record_summary(self, interval: int, rejections: Mapping[str, int]) -> None:
        self.summaries.append((interval, dict(rejections)))

    def record_forecast(self, household: str, body: ForecastBody, *, issued_s: int) -> None:
        self.forecasts.append((household, body.start))

    def record_presence(self, household: str, *, online: bool, at_s: int) -> None:
        self.presence[household] = online

    def record_broker(self, *, connected: bool, at_s: int) -> None:
        self.broker.append(connected)

    def record_forecaster_health(self, body: HealthBody, *, at_s: int) -> None:
        self.health.append((body.state, at_s))


@dataclass
class Setup:
    listener: Listener
    recorded: Recorded
    metrics: DashboardMetrics
    events: _Client
    wakes: list[int]
    operator: Signer
    forecaster: Signer
    households: dict[str, Signer]
    topics: Topics
    registry: dict[str, VerifyingKey]

    def rejected(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "wattmesh_dashboard_mqtt_rejected_total", {"reason": reason}
        )
        return value or 0.0

    def pushed(self) -> list[dict[str, Any]]:
        out = []
        while not self.events.queue.empty():
            out.append(json.loads(self.events.queue.get_nowait()))
        return out


@pytest.fixture
def setup() -> Setup:
    topics = Topics(MARKET)
    operator = Signer(SigningKey.generate(), MARKET, "operator")
    forecaster = Signer(SigningKey.generate(), MARKET, "forecaster")
    households = {h: Signer(SigningKey.generate(), MARKET, h) for h in ("h1", "h2")}
    registry: dict[str, VerifyingKey] = {h: s.key.verifying for h, s in households.items()}
    metrics = DashboardMetrics()
    hub = Hub(metrics)
    events = _Client(web.WebSocketResponse())
    hub._clients.add(events)  # a browser whose queue the test reads
    recorded = Recorded()
    wakes: list[int] = []
    listener = Listener(
        topics=topics,
        operator_key=operator.key.verifying,
        forecaster_key=forecaster.key.verifying,
        household_key=registry.get,
        sink=recorded,
        writes=Writes(),
        hub=hub,
        metrics=metrics,
        wake_sync=lambda: wakes.append(1),
        presence_counts=lambda: (sum(recorded.presence.values()), len(registry)),
        now=lambda: float(T0),
    )
    return Setup(
        listener, recorded, metrics, events, wakes, operator, forecaster, households, topics,
        registry,
    )  # fmt: skip


def _cleared(interval: int = T0) -> AnnouncementBody:
    return AnnouncementBody(Phase.CLEARED, 900, 300_000, 80_000, 150_000, 1200, 42, "ab" * 32)


def _wire(signer: Signer, body: Any, *, interval: int = T0, seq: int = 1) -> bytes:
    return signer.sign(body, interval=interval, seq=seq, expires=interval + 900).to_wire()


async def test_a_signed_cleared_announcement_wakes_the_log_follower(setup: Setup) -> None:
    await setup.listener.handle(
        Message(setup.topics.announce, _wire(setup.operator, _cleared()), retain=False)
    )
    assert setup.wakes == [1]
    assert setup.listener.last_cleared == T0
    open_body = AnnouncementBody(Phase.OPEN, 900, 300_000, 80_000)
    await setup.listener.handle(
        Message(setup.topics.announce, _wire(setup.operator, open_body, seq=2), retain=False)
    )
    assert setup.wakes == [1]  # only a cleared interval (or a checkpoint) calls for a sync


async def test_forged_and_foreign_messages_are_counted_and_dropped(setup: Setup) -> None:
    forger = Signer(SigningKey.generate(), MARKET, "operator")
    other_market = Signer(setup.operator.key, "m2", "operator")
    announce = setup.topics.announce
    for payload in (
        _wire(forger, _cleared()),  # signed by another key
        _wire(other_market, _cleared()),  # the operator's, but for another market
        b"not json",
        b'{"signed": {}, "sig": ""}',
    ):
        await setup.listener.handle(Message(announce, payload, retain=False))
    # a valid signature over other bytes: the signature of one message on another
    good = json.loads(_wire(setup.operator, _cleared(), seq=5))
    good["signed"]["body"]["price_micro_per_kwh"] = 1
    await setup.listener.handle(Message(announce, json.dumps(good).encode(), retain=False))
    assert setup.wakes == []
    assert setup.rejected("key_mismatch") == 1
    assert setup.rejected("wrong_market") == 1
    assert setup.rejected("unsigned") == 1
    assert setup.rejected("schema") == 1
    assert setup.rejected("bad_signature") == 1
    assert setup.pushed() == []


async def test_a_replayed_message_is_taken_once(setup: Setup) -> None:
    payload = _wire(setup.operator, _cleared(), seq=7)
    for _ in range(2):
        await setup.listener.handle(Message(setup.topics.announce, payload, retain=True))
    older = _wire(setup.operator, _cleared(), seq=6)
    await setup.listener.handle(Message(setup.topics.announce, older, retain=False))
    assert setup.wakes == [1]
    assert setup.rejected("duplicate") == 2


async def test_a_summary_stores_and_pushes_its_rejections(setup: Setup) -> None:
    body = SummaryBody(
        interval=T0,
        orders=3,
        readings=3,
        households=3,
        trades=1,
        volume_wh=100,
        price_micro_per_kwh=150_000,
        tree_size=40,
        root="ab" * 32,
        rejections={"bad_signature": 2, "late": 1},
        redeliveries=0,
    )
    topic = setup.topics.summary
    forged = _wire(Signer(SigningKey.generate(), MARKET, "operator"), body)
    await setup.listener.handle(Message(topic, forged, retain=False))
    assert setup.recorded.summaries == [] and setup.pushed() == []
    await setup.listener.handle(Message(topic, _wire(setup.operator, body), False))
    assert setup.recorded.summaries == [(T0, {"bad_signature": 2, "late": 1})]
    assert setup.pushed() == [
        {"type": "rejections", "interval": T0, "counts": {"bad_signature": 2, "late": 1}}
    ]


async def test_forecasts_count_only_with_the_forecasters_key(setup: Setup) -> None:
    body = ForecastBody(T0, 900, (100, 120), (0, 10), "naive", None)
    topic = setup.topics.forecast("h1")
    await setup.listener.handle(Message(topic, _wire(setup.operator, body), retain=False))
    await setup.listener.handle(Message(topic, _wire(setup.households["h2"], body), False))
    assert setup.recorded.forecasts == []
    await setup.listener.handle(Message(topic, _wire(setup.forecaster, body), retain=False))
    assert setup.recorded.forecasts == [("h1", T0)]
    assert setup.pushed() == []  # a household's forecast is its own: never broadcast


async def test_a_status_counts_only_with_its_households_key(setup: Setup) -> None:
    online = StatusBody(Presence.ONLINE)
    h1_topic = setup.topics.status("h1")
    # h2 signs a status on h1's topic; a stranger claims h3; then h1 itself.
    await setup.listener.handle(
        Message(h1_topic, _wire(setup.households["h2"], online, interval=0), False)
    )
    stranger = Signer(SigningKey.generate(), MARKET, "h3")
    await setup.listener.handle(
        Message(setup.topics.status("h3"), _wire(stranger, online, interval=0), False)
    )
    assert setup.recorded.presence == {}
    assert setup.rejected("key_mismatch") == 1
    assert setup.rejected("unknown_key") == 1
    await setup.listener.handle(
        Message(h1_topic, _wire(setup.households["h1"], online, interval=0), False)
    )
    assert setup.recorded.presence == {"h1": True}
    assert setup.pushed() == [{"type": "presence", "online": 1, "known": 2}]


async def test_other_topics_and_cleared_retained_messages(setup: Setup) -> None:
    await setup.listener.handle(Message(setup.topics.announce, b"", retain=True))
    await setup.listener.handle(
        Message(setup.topics.reading("h1"), _wire(setup.operator, _cleared()), False)
    )
    assert setup.rejected("bad_topic") == 1
    assert setup.wakes == []


async def test_a_status_heard_before_its_key_is_judged_once_the_key_is_known(
    setup: Setup,
) -> None:
    h3 = Signer(SigningKey.generate(), MARKET, "h3")
    topic = setup.topics.status("h3")
    online = _wire(h3, StatusBody(Presence.ONLINE), interval=0, seq=4)
    await setup.listener.handle(Message(topic, online, retain=True))
    assert setup.rejected("unknown_key") == 1 and setup.recorded.presence == {}
    await setup.listener.keys_changed()  # the key is still unknown: it keeps waiting
    assert setup.recorded.presence == {}
    setup.registry["h3"] = h3.key.verifying  # the log follower folded h3's key entry
    await setup.listener.keys_changed()
    assert setup.recorded.presence == {"h3": True}
    await setup.listener.keys_changed()  # judged once
    assert setup.rejected("duplicate") == 0


async def test_statuses_waiting_for_keys_are_bounded(setup: Setup) -> None:
    stranger = SigningKey.generate()
    for n in range(MAX_WAITING + 5):
        agent = f"x{n}"
        wire = _wire(Signer(stranger, MARKET, agent), StatusBody(Presence.ONLINE), interval=0)
        await setup.listener.handle(Message(setup.topics.status(agent), wire, retain=True))
    for n in range(MAX_WAITING + 5):
        setup.registry[f"x{n}"] = stranger.verifying
    await setup.listener.keys_changed()
    assert len(setup.recorded.presence) == MAX_WAITING  # the 5 oldest were let go
    assert "x0" not in setup.recorded.presence


async def test_the_last_announcement_is_the_markets_current_interval(setup: Setup) -> None:
    """On the wall clock (the listener's now is T0) an interval open now gets a
    countdown; one in simulated time does not; the closing round leaves the market idle.
    Each change of the market's state is pushed once."""
    simulated = 1_751_327_100  # 2025-06-30 23:45, a simulation's interval
    said = [
        (T0, AnnouncementBody(Phase.OPEN, 900, 300_000, 80_000)),
        (T0, _cleared()),
        (simulated, AnnouncementBody(Phase.OPEN, 900, 300_000, 80_000)),
        (simulated, _cleared()),
        (simulated + 900, AnnouncementBody(Phase.CLOSED, 900, 300_000, 80_000)),
    ]
    heard = []
    for seq, (interval, body) in enumerate(said, start=1):
        wire = _wire(setup.operator, body, interval=interval, seq=seq)
        await setup.listener.handle(Message(setup.topics.announce, wire, retain=False))
        heard.append(setup.listener.heard)
    assert [(h.interval, h.phase) for h in heard if h is not None] == [
        (T0, "open"),
        (T0, "cleared"),
        (simulated, "open"),
        (simulated, "cleared"),
        (simulated + 900, "closed"),
    ]
    markets = [e["market"] for e in setup.pushed() if e["type"] == "health"]
    assert markets == [
        {"state": "open", "clock": "wall", "current_interval": T0,
         "next_close_s": T0 + 900, "interval_s": 900},
        {"state": "open", "clock": "simulated", "current_interval": simulated,
         "next_close_s": None, "interval_s": 900},
        {"state": "idle", "clock": None, "current_interval": None,
         "next_close_s": None, "interval_s": 900},
    ]  # fmt: skip


async def test_the_forecasters_health_counts_only_with_its_key(setup: Setup) -> None:
    counters = dict.fromkeys(HEALTH_COUNTERS, 1)
    body = HealthBody("degraded", T0 - 60, counters, None, None)
    topic = setup.topics.forecaster_health
    assert (topic, 1) in setup.listener.subscriptions()
    forged = Signer(SigningKey.generate(), MARKET, "forecaster")
    await setup.listener.handle(Message(topic, _wire(forged, body), retain=True))
    await setup.listener.handle(Message(topic, _wire(setup.operator, body), retain=True))
    assert setup.recorded.health == [] and setup.pushed() == []
    assert setup.rejected("key_mismatch") == 2
    await setup.listener.handle(Message(topic, _wire(setup.forecaster, body, seq=3), True))
    assert setup.recorded.health == [("degraded", T0)]
    (event,) = setup.pushed()
    assert event["type"] == "health"
    shown = event["forecaster"]
    assert (shown["state"], shown["heard"], shown["age_s"]) == ("degraded", True, 0)
    assert shown["counters"] == counters and shown["households"] == 1
