"""The topic tree under ``<prefix>/<market_id>/`` (prefix ``wattmesh``) and what a topic is.

Households publish only below ``.../household/<agent_id>/`` (readings, orders, status),
which a Mosquitto ACL can pin to the MQTT username with ``%u``; the operator publishes
the market topics, rejections, and forecasts (as the forecasting service).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from wattmesh.broker.errors import ConfigError

__all__ = [
    "ANOMALY",
    "AUDIT",
    "DEFAULT_PREFIX",
    "ORDER",
    "READING",
    "STATUS",
    "STATUS_OFFLINE",
    "STATUS_ONLINE",
    "HouseholdTopic",
    "Topics",
    "check_segment",
]

DEFAULT_PREFIX = "wattmesh"
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# The kinds (last level) of the household topics the services subscribe to.
READING, ORDER, STATUS, AUDIT, FORECAST = "reading", "order", "status", "audit", "forecast"
ANOMALY = "anomaly"  # published by the forecasting service, read by the ledger

STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"


def check_segment(value: str, what: str) -> str:
    """Raise ConfigError unless ``value`` is usable as one topic level (no wildcards, no '/')."""
    if not _SEGMENT.fullmatch(value):  # not match(): '$' would let a final newline in
        raise ConfigError(f"{what} {value!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def is_segment(value: str) -> bool:
    """Whether ``value`` is usable as one topic level (what :func:`check_segment` accepts)."""
    return _SEGMENT.fullmatch(value) is not None


class HouseholdTopic(NamedTuple):
    """Where a message on ``<root>/household/<agent>/<kind>`` was published."""

    agent: str
    kind: str  # the level after the agent id: "reading", "order", "status", ...


@dataclass(frozen=True)
class Topics:
    """Topic names for one market."""

    market_id: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_segment(self.market_id, "market id")
        for part in self.prefix.split("/"):
            check_segment(part, "topic prefix level")

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.market_id}"

    def household(self, agent_id: str) -> str:
        return f"{self.root}/household/{check_segment(agent_id, 'agent id')}"

    def reading(self, agent_id: str) -> str:
        return f"{self.household(agent_id)}/{READING}"

    def order(self, agent_id: str) -> str:
        return f"{self.household(agent_id)}/{ORDER}"

    def status(self, agent_id: str) -> str:
        """Retained ``online``/``offline``; ``offline`` is the agent's MQTT last will."""
        return f"{self.household(agent_id)}/{STATUS}"

    def diagnostics(self, agent_id: str) -> str:
        """Retained, unsigned JSON health report of the agent (outbox, clock, links)."""
        return f"{self.household(agent_id)}/diagnostics"

    def forecast(self, agent_id: str) -> str:
        return f"{self.household(agent_id)}/{FORECAST}"

    def anomaly(self, agent_id: str) -> str:
        """The forecasting service's signed anomaly flags about the household."""
        return f"{self.household(agent_id)}/{ANOMALY}"

    def error(self, agent_id: str) -> str:
        return f"{self.household(agent_id)}/error"

    def receipt(self, agent_id: str) -> str:
        """The operator's signed receipts of the household's log entries."""
        return f"{self.household(agent_id)}/receipt"

    def checkpoint_reply(self, agent_id: str) -> str:
        """The operator's answer to an audit request: a signed ``checkpoint``."""
        return f"{self.household(agent_id)}/checkpoint"

    def audit_request(self, agent_id: str) -> str:
        """The household asks for a consistency proof from its saved tree size."""
        return f"{self.household(agent_id)}/{AUDIT}"

    @property
    def checkpoint(self) -> str:
        """Retained signed ``checkpoint`` (note and consistency proof) after each interval."""
        return f"{self.root}/market/checkpoint"

    @property
    def summary(self) -> str:
        """Retained signed ``summary`` of each closed trading interval (counts, rejections)."""
        return f"{self.root}/market/summary"

    @property
    def neighbourhood_forecast(self) -> str:
        """Retained signed ``forecast`` of the neighbourhood's total demand and PV (the
        forecasting service's; the market clears on the aggregate)."""
        return f"{self.root}/market/forecast"

    @property
    def forecaster_health(self) -> str:
        """Retained signed ``health`` of the forecasting service (state and counters)."""
        return f"{self.root}/service/forecaster/health"

    @property
    def all_audit_requests(self) -> str:
        return f"{self.root}/household/+/audit"

    @property
    def announce(self) -> str:
        return f"{self.root}/market/announce"

    @property
    def trades(self) -> str:
        return f"{self.root}/market/trades"

    # Wildcard subscriptions for the services.
    @property
    def all_anomalies(self) -> str:
        return f"{self.root}/household/+/{ANOMALY}"

    @property
    def all_readings(self) -> str:
        return f"{self.root}/household/+/reading"

    @property
    def all_orders(self) -> str:
        return f"{self.root}/household/+/order"

    @property
    def all_status(self) -> str:
        return f"{self.root}/household/+/status"

    def agent_of(self, topic: str) -> str | None:
        """The agent id in a ``.../household/<id>/...`` topic of this market, else None
        (also when the id level is not one an agent id can be). Never raises."""
        head = f"{self.root}/household/"
        if not topic.startswith(head):
            return None
        agent, sep, _rest = topic[len(head) :].partition("/")
        return agent if sep and is_segment(agent) else None

    def classify(self, topic: str) -> HouseholdTopic | None:
        """The household and kind of a ``<root>/household/<agent>/<kind>`` topic of
        this market, both levels valid ids (:func:`check_segment`'s rule); None for
        any other topic. Never raises: every message a service receives is classified
        before anything else is done with it, so the topic names built from the
        result (``reading(agent)``, ``error(agent)``...) cannot fail."""
        head = f"{self.root}/household/"
        if not topic.startswith(head):
            return None
        agent, sep, kind = topic[len(head) :].partition("/")
        if not (sep and is_segment(agent) and is_segment(kind)):
            return None
        return HouseholdTopic(agent, kind)
