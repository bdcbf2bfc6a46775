"""Home Assistant MQTT discovery for one household agent (pure: payloads only).

HA finds the agent's sensors through retained config messages at
``<prefix>/<component>/<node_id>/<object_id>/config`` (full key names, no
abbreviations). Each entity has a ``unique_id``, the agent's ``device``, an
``origin``, and ``availability`` on two retained topics, both ``all`` required:
the agent's signed status (its state read by a ``value_template``; its MQTT last will
says ``offline``) and the bridge's own plain
``ha/availability`` (the same, for the bridge's connection). State lives in
retained JSON topics below the household (``ha/meter``, ``ha/price``,
``ha/trade``) that are only ever published from real data: never a 0 or NaN
placeholder at start-up, and meter registers never decrease: a reading with a
register below the last published one is dropped, across restarts too (the floor
is read back from the retained ``ha/meter`` state before the first publish), so
HA's ``total_increasing`` statistics see no false meter resets. Meter sensors
also expire (``expire_after``) when no fresh reading arrives, so a dead meter
shows as unavailable rather than as a stale value.

Prices are published in currency units per kWh, as exact decimal strings from the
integer micro-units on the wire (HA can cost energy with such a price sensor).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from wattmesh.agents.meter import MeterReading
from wattmesh.broker.messages import Presence
from wattmesh.broker.topics import STATUS_OFFLINE, STATUS_ONLINE, Topics

__all__ = ["HaTopics", "HomeAssistantConfig"]

# The state in the agent's signed status message (docs/protocol.md, "Status").
STATUS_STATE_TEMPLATE = "{{ value_json.signed.body.state }}"

ORIGIN: Final = "wattmesh"
_NOT_ID: Final = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Discovery settings. ``state_interval_s``: seconds between meter state updates."""

    prefix: str = "homeassistant"
    currency: str = "EUR"
    state_interval_s: float = 10.0


@dataclass(frozen=True)
class HaTopics:
    """Where one agent's discovery state lives (below its own household topic)."""

    topics: Topics
    agent_id: str
    prefix: str

    @property
    def node_id(self) -> str:
        """``wattmesh_<market>_<agent>``, with characters HA refuses replaced by ``_``."""
        return _NOT_ID.sub("_", f"wattmesh_{self.topics.market_id}_{self.agent_id}")

    @property
    def status(self) -> str:
        return self.topics.status(self.agent_id)

    @property
    def availability(self) -> str:
        return f"{self.topics.household(self.agent_id)}/ha/availability"

    @property
    def meter(self) -> str:
        return f"{self.topics.household(self.agent_id)}/ha/meter"

    @property
    def price(self) -> str:
        return f"{self.topics.household(self.agent_id)}/ha/price"

    @property
    def trade(self) -> str:
        return f"{self.topics.household(self.agent_id)}/ha/trade"

    @property
    def sync(self) -> str:
        """The bridge's own echo: once it is back, retained state has been delivered."""
        return f"{self.topics.household(self.agent_id)}/ha/sync"

    @property
    def ha_status(self) -> str:
        """HA publishes ``online`` here when it (re)starts: discovery is sent again."""
        return f"{self.prefix}/status"

    def config(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node_id}/{object_id}/config"


@dataclass(frozen=True)
class _Entity:
    component: str
    object_id: str
    name: str
    fields: dict[str, Any]


def _entities(ha: HaTopics, config: HomeAssistantConfig) -> list[_Entity]:
    expire_s = max(60, round(3 * config.state_interval_s))
    meter = {"state_topic": ha.meter, "expire_after": expire_s}
    price_unit = f"{config.currency}/kWh"
    return [
        _Entity(
            "sensor",
            "power",
            "Grid power",
            meter
            | {
                "value_template": "{{ value_json.power_w }}",
                "unit_of_measurement": "W",
                "device_class": "power",
                "state_class": "measurement",
            },
        ),
        _Entity(
            "sensor",
            "import_energy",
            "Grid import",
            meter
            | {
                "value_template": "{{ value_json.import_wh }}",
                "unit_of_measurement": "Wh",
                "device_class": "energy",
                "state_class": "total_increasing",
            },
        ),
        _Entity(
            "sensor",
            "export_energy",
            "Grid export",
            meter
            | {
                "value_template": "{{ value_json.export_wh }}",
                "unit_of_measurement": "Wh",
                "device_class": "energy",
                "state_class": "total_increasing",
            },
        ),
        _Entity(
            "sensor",
            "clearing_price",
            "Clearing price",
            {
                "state_topic": ha.price,
                "value_template": "{{ value_json.price }}",
                "unit_of_measurement": price_unit,
                "state_class": "measurement",
                "json_attributes_topic": ha.price,
            },
        ),
        _Entity(
            "sensor",
            "last_trade_price",
            "Last trade price",
            {
                "state_topic": ha.trade,
                "value_template": "{{ value_json.price }}",
                "unit_of_measurement": price_unit,
                "state_class": "measurement",
                "json_attributes_topic": ha.trade,
            },
        ),
        _Entity(
            "binary_sensor",
            "status",
            "Agent online",
            {
                "state_topic": ha.status,
                "value_template": STATUS_STATE_TEMPLATE,
                "payload_on": Presence.ONLINE.value,
                "payload_off": Presence.OFFLINE.value,
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            },
        ),
    ]


def discovery_messages(
    topics: Topics, agent_id: str, config: HomeAssistantConfig, *, sw_version: str
) -> list[tuple[str, bytes]]:
    """Retained ``(topic, payload)`` config messages for every entity of one agent."""
    ha = HaTopics(topics, agent_id, config.prefix)
    device = {
        "identifiers": [ha.node_id],
        "name": f"wattmesh {agent_id}",
        "manufacturer": "wattmesh",
        "model": "household agent",
        "sw_version": sw_version,
    }
    availability = [
        {
            "topic": ha.status,  # the agent's signed status: its body's state
            "value_template": STATUS_STATE_TEMPLATE,
            "payload_available": Presence.ONLINE.value,
            "payload_not_available": Presence.OFFLINE.value,
        },
        {
            "topic": ha.availability,  # the bridge's own, plain online/offline
            "payload_available": STATUS_ONLINE.decode(),
            "payload_not_available": STATUS_OFFLINE.decode(),
        },
    ]
    messages = []
    for entity in _entities(ha, config):
        payload: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"{ha.node_id}_{entity.object_id}",
            "device": device,
            "origin": {"name": ORIGIN, "sw_version": sw_version},
            "qos": 1,
        } | entity.fields
        if entity.component != "binary_sensor":  # the status sensor shows offline itself
            payload |= {"availability": availability, "availability_mode": "all"}
        messages.append((ha.config(entity.component, entity.object_id), _json(payload)))
    return messages


def removal_messages(topics: Topics, agent_id: str, config: HomeAssistantConfig) -> list[str]:
    """Config topics to clear (empty retained payload) to remove the entities from HA."""
    ha = HaTopics(topics, agent_id, config.prefix)
    return [ha.config(e.component, e.object_id) for e in _entities(ha, config)]


def price_per_kwh(micro_per_kwh: int) -> str:
    """Exact decimal currency units per kWh: 251000 -> ``"0.251000"``."""
    return f"{Decimal(micro_per_kwh).scaleb(-6):.6f}"


def meter_state(reading: MeterReading) -> bytes:
    return _json(
        {
            "meter_time": reading.time,
            "import_wh": reading.import_wh,
            "export_wh": reading.export_wh,
            "power_w": reading.power_w,
        }
    )


def price_state(*, interval: int, price_micro_per_kwh: int, volume_wh: int) -> bytes:
    return _json(
        {
            "interval": interval,
            "price": price_per_kwh(price_micro_per_kwh),
            "price_micro_per_kwh": price_micro_per_kwh,
            "volume_wh": volume_wh,
        }
    )


def trade_state(
    *, interval: int, side: str, counterparty: str, quantity_wh: int, price_micro_per_kwh: int
) -> bytes:
    return _json(
        {
            "interval": interval,
            "side": side,
            "counterparty": counterparty,
            "quantity_wh": quantity_wh,
            "price": price_per_kwh(price_micro_per_kwh),
            "price_micro_per_kwh": price_micro_per_kwh,
        }
    )


class RegisterGuard:
    """Lets a reading through only if neither register is below the published floor.

    The floor is the last admitted reading, or (after a restart) the registers of the
    retained state the previous run published (:meth:`seed`).
    """

    def __init__(self) -> None:
        self._import_wh = 0
        self._export_wh = 0
        self.refused = 0

    def seed(self, import_wh: int, export_wh: int) -> None:
        """Raise the floor to registers published earlier (never lowers it)."""
        self._import_wh = max(self._import_wh, import_wh)
        self._export_wh = max(self._export_wh, export_wh)

    def admit(self, reading: MeterReading) -> bool:
        if reading.import_wh < self._import_wh or reading.export_wh < self._export_wh:
            self.refused += 1
            return False
        self._import_wh, self._export_wh = reading.import_wh, reading.export_wh
        return True


def parse_meter_state(payload: bytes) -> tuple[int, int] | None:
    """``(import_wh, export_wh)`` of a retained meter state, or None if unusable."""
    try:
        state = json.loads(payload)
        registers = state["import_wh"], state["export_wh"]
    except (ValueError, TypeError, KeyError):
        return None
    if all(type(v) is int and v >= 0 for v in registers):
        return registers[0], registers[1]
    return None


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
