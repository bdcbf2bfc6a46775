"""Home Assistant discovery: payload rules, and the bridge over a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import pytest

from wattmesh.agents.agent import AgentConfig
from wattmesh.agents.ha_bridge import HomeAssistantBridge
from wattmesh.agents.homeassistant import (
    HomeAssistantConfig,
    RegisterGuard,
    discovery_messages,
    price_per_kwh,
)
from wattmesh.agents.meter import MeterReading
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Phase,
    Presence,
    TradeLine,
    TradesBody,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig

TOPICS = Topics("m1")
CONFIG = HomeAssistantConfig()
ABBREVIATIONS = {"stat_t", "uniq_id", "dev", "o", "avty", "avty_t", "unit_of_meas", "val_tpl"}


def _configs() -> dict[str, dict[str, object]]:
    return {
        topic: json.loads(payload)
        for topic, payload in discovery_messages(TOPICS, "h.001", CONFIG, sw_version="0.1.0")
    }


def test_discovery_topics_and_identities_follow_home_assistant_rules() -> None:
    configs = _configs()
    assert len(configs) == 6
    for topic, payload in configs.items():
        assert re.fullmatch(
            r"homeassistant/(sensor|binary_sensor)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config", topic
        )
        assert not ABBREVIATIONS & set(payload), "full key names only"
        assert payload["device"]["identifiers"] == ["wattmesh_m1_h_001"]  # type: ignore[index]
        assert payload["origin"]["name"] == "wattmesh"  # type: ignore[index]
    unique_ids = [p["unique_id"] for p in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)


def test_sensors_suit_the_energy_dashboard() -> None:
    configs = {
        str(p["unique_id"]).removeprefix("wattmesh_m1_h_001_"): p for p in _configs().values()
    }
    for name in ("import_energy", "export_energy"):
        assert configs[name]["device_class"] == "energy"
        assert configs[name]["unit_of_measurement"] == "Wh"
        assert configs[name]["state_class"] == "total_increasing"
    assert configs["power"]["device_class"] == "power"
    assert configs["power"]["unit_of_measurement"] == "W"
    assert configs["power"]["state_class"] == "measurement"
    for name in ("clearing_price", "last_trade_price"):
        assert configs[name]["unit_of_measurement"] == "EUR/kWh"
        assert configs[name]["state_class"] == "measurement"
    status = TOPICS.status("h.001")
    for name in ("power", "import_energy", "export_energy", "clearing_price"):
        topics = [a["topic"] for a in configs[name]["availability"]]  # type: ignore[index, union-attr]
        assert status in topics and configs[name]["availability_mode"] == "all"
    assert configs["power"]["expire_after"] == 60
    assert configs["status"]["state_topic"] == status
    assert configs["status"]["payload_off"] == "offline"
    # The status is a signed message: HA reads its body's state with the template.
    signer = StatusSigner(SigningKey.generate(), TOPICS, "h.001")
    template = configs["status"]["value_template"]
    assert template == "{{ value_json.signed.body.state }}"
    for state in Presence:
        value_json = json.loads(signer.sign(state))
        path = str(template).strip("{} ").split(".")[1:]
        for part in path:
            value_json = value_json[part]
        assert value_json == state.value
        assert state.value in (configs["status"]["payload_on"], configs["status"]["payload_off"])
    for name in ("power", "import_energy", "export_energy", "clearing_price"):
        [on_status] = [a for a in configs[name]["availability"] if a["topic"] == status]  # type: ignore[index, union-attr]
        assert on_status["value_template"] == template
        assert (on_status["payload_available"], on_status["payload_not_available"]) == (
            "online",
            "offline",
        )


def test_discovery_prefix_is_configurable() -> None:
    messages = discovery_messages(
        TOPICS, "h1", HomeAssistantConfig(prefix="ha/test"), sw_version="x"
    )
    assert all(topic.startswith("ha/test/") for topic, _ in messages)


def test_prices_are_exact_decimal_strings() -> None:
    assert price_per_kwh(251_000) == "0.251000"
    assert price_per_kwh(1) == "0.000001"
    assert price_per_kwh(123_456_789) == "123.456789"


def test_register_guard_refuses_a_decrease() -> None:
    guard = RegisterGuard()
    assert guard.admit(MeterReading(1, 100, 10, 0, 5))
    assert not guard.admit(MeterReading(2, 99, 10, 0, 5))
    assert not guard.admit(MeterReading(3, 100, 9, 0, 5))
    assert guard.admit(MeterReading(4, 100, 10, 0, 5))
    assert guard.refused == 2


class ScriptedMeter:
    """A Meter that returns (or raises) a fixed script, then repeats its last reading."""

    def __init__(self, script: list[MeterReading | MeterError]) -> None:
        self._script = list(script)
        self._last: MeterReading | None = None

    async def read(self) -> MeterReading:
        item = self._script.pop(0) if self._script else self._last
        if isinstance(item, MeterError):
            raise item
        assert item is not None
        self._last = item
        return item


async def _collect_until(
    transport: Transport, seen: list[Message], done: Callable[[list[Message]], bool]
) -> None:
    async def consume() -> None:
        async for message in transport.messages():
            seen.append(message)
            if done(seen):
                return

    await asyncio.wait_for(consume(), 10)


async def test_bridge_over_mosquitto(mosquitto: BrokerAddress) -> None:
    operator = SigningKey.generate()
    agent = AgentConfig(agent_id="h1", topics=TOPICS, operator_key=operator.verifying)
    meter = ScriptedMeter(
        [
            MeterError("p1 silent"),
            MeterReading(1, 1000, 50, 0, 300),
            MeterReading(2, 990, 50, 0, 300),
            MeterReading(3, 1010, 51, 0, -20),
        ]
    )
    base = TransportConfig(address=mosquitto, client_id="m1-h1")
    bridge = HomeAssistantBridge(
        HomeAssistantConfig(state_interval_s=3600), agent, base, meter, sw_version="0.1.0"
    )
    ha = bridge.ha
    async with bridge.transport:
        await asyncio.wait_for(bridge.transport.wait_connected(), 10)
        assert [await bridge.publish_meter_state() for _ in range(4)] == [False, True, False, True]
        assert bridge.meter_failures == 1 and bridge.guard.refused == 1

        # A fresh subscriber (Home Assistant starting) gets every config and the last state.
        viewer = Transport(
            TransportConfig(address=mosquitto, client_id="ha-viewer"),
            subscriptions=[("homeassistant/#", 1), (f"{TOPICS.household('h1')}/ha/#", 1)],
        )
        async with viewer:
            seen: list[Message] = []
            await _collect_until(
                viewer,
                seen,
                lambda s: (
                    {m.topic for m in s}
                    >= {t for t, _ in bridge._discovery} | {ha.meter, ha.availability}
                ),
            )
            retained = {m.topic: m for m in seen}
            assert all(m.retain for m in seen)
            assert json.loads(retained[ha.meter].payload) == {
                "meter_time": 3,
                "import_wh": 1010,
                "export_wh": 51,
                "power_w": -20,
            }
            assert retained[ha.availability].payload == b"online"

            runner = asyncio.create_task(bridge.run())
            t = 1_764_600_000
            forged = SigningKey.generate()

            def cleared(key: SigningKey, price: int) -> bytes:
                body = AnnouncementBody(Phase.CLEARED, 900, 300_000, 80_000, price, 1200)
                return sign_message(
                    key, body, market="m1", interval=t, agent="operator", seq=1, expires=t + 900
                ).to_wire()

            trades = TradesBody((TradeLine("h2", "h3", 5, 1), TradeLine("h1", "h2", 420, 251_000)))
            trades_wire = sign_message(
                operator, trades, market="m1", interval=t, agent="operator", seq=2, expires=t + 900
            ).to_wire()
            async with Transport(TransportConfig(address=mosquitto, client_id="op")) as op:
                await op.publish(TOPICS.announce, cleared(forged, 999_999), qos=1)
                await op.publish(TOPICS.announce, cleared(operator, 251_000), qos=1, retain=True)
                await op.publish(TOPICS.trades, trades_wire, qos=1)
                # HA restarts: the bridge sends its discovery again.
                await op.publish("homeassistant/status", b"online", qos=1)
                start = len(seen)
                await _collect_until(
                    viewer,
                    seen,
                    lambda s: (
                        {m.topic for m in s[start:]}
                        >= {ha.price, ha.trade, ha.config("sensor", "power")}
                    ),
                )
                await op.publish(
                    TOPICS.announce, b"", qos=1, retain=True
                )  # tidy the session broker
            prices = [json.loads(m.payload) for m in seen[start:] if m.topic == ha.price]
            assert prices[0] == {
                "interval": t,
                "price": "0.251000",
                "price_micro_per_kwh": 251_000,
                "volume_wh": 1200,
            }
            trade = next(json.loads(m.payload) for m in seen[start:] if m.topic == ha.trade)
            assert trade == {
                "interval": t,
                "side": "buy",
                "counterparty": "h2",
                "quantity_wh": 420,
                "price": "0.251000",
                "price_micro_per_kwh": 251_000,
            }
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner
            await bridge.go_offline()
            await _collect_until(
                viewer,
                seen,
                lambda s: s[-1].topic == ha.availability and s[-1].payload == b"offline",
            )
        # Leave the session broker clean for other tests.
        async with Transport(TransportConfig(address=mosquitto, client_id="cleanup")) as cleanup:
            for topic in {
                m.topic
                for m in seen
                if m.retain or m.topic.startswith(("homeassistant/", TOPICS.household("h1")))
            }:
                await cleanup.publish(topic, b"", qos=1, retain=True)


def test_guard_seeded_from_retained_state_and_bad_states_ignored() -> None:
    from wattmesh.agents.homeassistant import parse_meter_state

    guard = RegisterGuard()
    guard.seed(5000, 100)
    guard.seed(10, 10)  # never lowers the floor
    assert not guard.admit(MeterReading(1, 0, 0, 0, 0))  # a meter that woke up with zeros
    assert guard.admit(MeterReading(2, 5000, 100, 0, 0))
    assert parse_meter_state(b'{"import_wh": 7, "export_wh": 8}') == (7, 8)
    for bad in (
        b"",
        b"not json",
        b'{"import_wh": 1.5, "export_wh": 1}',
        b'{"import_wh": -1, "export_wh": 0}',
        b"[]",
    ):
        assert parse_meter_state(bad) is None


async def test_bridge_restart_keeps_the_floor_of_the_previous_run(mosquitto: BrokerAddress) -> None:
    agent = AgentConfig(agent_id="h9", topics=TOPICS)
    state_topic = f"{TOPICS.household('h9')}/ha/meter"
    async with Transport(TransportConfig(address=mosquitto, client_id="prev-run")) as previous:
        await previous.publish(
            state_topic,
            b'{"export_wh":100,"import_wh":5000,"meter_time":1,"power_w":0}',
            qos=1,
            retain=True,
        )
    meter = ScriptedMeter([MeterReading(2, 0, 0, 0, 0), MeterReading(3, 5001, 100, 0, 40)])
    base = TransportConfig(address=mosquitto, client_id="m1-h9")
    bridge = HomeAssistantBridge(
        HomeAssistantConfig(state_interval_s=0.05), agent, base, meter, sw_version="t"
    )
    viewer = Transport(
        TransportConfig(address=mosquitto, client_id="h9-viewer"), subscriptions=[(state_topic, 1)]
    )
    async with viewer, bridge.transport:
        await asyncio.wait_for(viewer.wait_connected(), 10)
        runner = asyncio.create_task(bridge.run())
        seen: list[Message] = []
        await _collect_until(viewer, seen, lambda s: any(not m.retain for m in s))
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    live = [json.loads(m.payload) for m in seen if not m.retain]
    assert live[0]["import_wh"] == 5001  # the zeros were never published
    assert bridge.guard.refused >= 1
    async with Transport(TransportConfig(address=mosquitto, client_id="h9-clean")) as clean:
        for topic in (state_topic, *(t for t, _ in bridge._discovery), bridge.ha.availability):
            await clean.publish(topic, b"", qos=1, retain=True)
