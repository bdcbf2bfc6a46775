"""Who may publish and read which topic: the Mosquitto ACL of one market (pure).

Every filter is built from :class:`broker.topics.Topics` (never a retyped string), so
the ACL follows the topic tree. The roles and what each really uses
(``tests/test_acl.py`` checks these against the code of every part):

- a household (MQTT username = its agent id) writes only below its own
  ``household/<id>/``: reading, order, status (also its last will), diagnostics, audit
  request, and its Home Assistant state (``ha/...``, which its bridge also reads back);
  it reads the public market topics (announce, trades, checkpoint, summary, the
  neighbourhood's forecast) and its
  own forecast, error, receipt and checkpoint reply, and its own status and
  diagnostics (for its owner's tools: Home Assistant logs in as the household); with
  Home Assistant, it writes the discovery configs of its own device and reads
  ``<prefix>/status``;
- the ledger (operator) reads every household's reading, order, status, audit request
  and the forecaster's anomaly flags; it writes the market topics and each household's
  error, receipt and checkpoint reply;
- the forecasting service reads readings and the checkpoint; it writes forecasts (the
  households' and the neighbourhood's), anomaly flags and its health (which its
  health probe reads back);
- the dashboard reads the market topics, the forecaster's health, forecasts and
  statuses; it writes nothing.

Mosquitto acknowledges a QoS 1 publish its ACL denies and drops it; a subscription
its ACL does not allow is refused in the SUBACK.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from wattmesh.broker.errors import ConfigError
from wattmesh.broker.topics import Topics, check_segment

__all__ = [
    "DASHBOARD",
    "FORECASTER",
    "LEDGER",
    "MONITOR",
    "Access",
    "Grant",
    "HomeAssistantAccess",
    "UserAccess",
    "allows",
    "dashboard_grants",
    "forecaster_grants",
    "household_grants",
    "ledger_grants",
    "market_acl",
    "monitor_grants",
    "render_acl",
]

# MQTT usernames of the services (a household's is its agent id).
LEDGER: Final = "ledger"
FORECASTER: Final = "forecaster"
DASHBOARD: Final = "dashboard"
MONITOR: Final = "healthcheck"  # health checks: reads the broker's uptime only
_SERVICES: Final = (LEDGER, FORECASTER, DASHBOARD, MONITOR)
_UPTIME: Final = "$SYS/broker/uptime"
_PLACEHOLDER: Final = "x"  # an agent id, replaced by "+" in a per-household filter


class Access(Enum):
    READ = "read"
    WRITE = "write"
    READWRITE = "readwrite"

    def permits(self, wanted: Access) -> bool:
        return self is Access.READWRITE or self is wanted


@dataclass(frozen=True)
class Grant:
    """``topic <access> <filter>`` in an acl_file."""

    access: Access
    filter: str


@dataclass(frozen=True)
class HomeAssistantAccess:
    """A household's Home Assistant discovery: the prefix and its device's node id
    (as :class:`agents.homeassistant.HaTopics` names it)."""

    prefix: str
    node_id: str


@dataclass(frozen=True)
class UserAccess:
    username: str
    grants: tuple[Grant, ...]


def _every(topics: Topics, per_household: Callable[[str], str]) -> str:
    """``per_household``'s topic for any household: its id level as ``+``."""
    own, head = per_household(_PLACEHOLDER), topics.household(_PLACEHOLDER)
    return f"{topics.root}/household/+{own[len(head) :]}"


def _public_market(topics: Topics) -> list[str]:
    """The operator's market topics."""
    return [topics.announce, topics.trades, topics.checkpoint, topics.summary]


def household_grants(
    topics: Topics, agent_id: str, *, home_assistant: HomeAssistantAccess | None = None
) -> tuple[Grant, ...]:
    """What household ``agent_id``'s agent (and its Home Assistant bridge) needs."""
    me = check_segment(agent_id, "agent id")
    writes = [
        topics.reading(me),
        topics.order(me),
        topics.status(me),
        topics.diagnostics(me),
        topics.audit_request(me),
    ]
    reads = [
        *_public_market(topics),
        topics.neighbourhood_forecast,
        topics.forecast(me),
        topics.error(me),
        topics.receipt(me),
        topics.checkpoint_reply(me),
        topics.status(me),
        topics.diagnostics(me),
    ]
    grants = [Grant(Access.WRITE, t) for t in writes if t not in reads]
    grants += [Grant(Access.READWRITE if t in writes else Access.READ, t) for t in reads]
    if home_assistant is not None:
        ha = home_assistant
        grants += [
            Grant(Access.READWRITE, f"{topics.household(me)}/ha/#"),
            Grant(Access.WRITE, f"{ha.prefix}/+/{ha.node_id}/+/config"),
            Grant(Access.READ, f"{ha.prefix}/status"),
        ]
    return tuple(grants)


def ledger_grants(topics: Topics) -> tuple[Grant, ...]:
    reads = [
        topics.all_readings,
        topics.all_orders,
        topics.all_status,
        topics.all_audit_requests,
        topics.all_anomalies,
    ]
    writes = [
        *_public_market(topics),
        _every(topics, topics.error),
        _every(topics, topics.receipt),
        _every(topics, topics.checkpoint_reply),
    ]
    return (*(Grant(Access.READ, t) for t in reads), *(Grant(Access.WRITE, t) for t in writes))


def forecaster_grants(topics: Topics) -> tuple[Grant, ...]:
    """Also reads its own retained health: its container's health probe does."""
    reads = [topics.all_readings, topics.checkpoint]
    writes = [
        _every(topics, topics.forecast),
        _every(topics, topics.anomaly),
        topics.neighbourhood_forecast,
    ]
    return (
        *(Grant(Access.READ, t) for t in reads),
        *(Grant(Access.WRITE, t) for t in writes),
        Grant(Access.READWRITE, topics.forecaster_health),
    )


def dashboard_grants(topics: Topics) -> tuple[Grant, ...]:
    reads = [
        *_public_market(topics),
        topics.forecaster_health,
        _every(topics, topics.forecast),
        topics.all_status,
    ]
    return tuple(Grant(Access.READ, t) for t in reads)


def monitor_grants() -> tuple[Grant, ...]:
    """A health check's user: ``mosquitto_sub -t '$SYS/broker/uptime'``."""
    return (Grant(Access.READ, _UPTIME),)


def market_acl(
    topics: Topics,
    households: Iterable[str],
    *,
    home_assistant: Callable[[str], HomeAssistantAccess] | None = None,
) -> tuple[UserAccess, ...]:
    """Every user of one market: the services, then the households in id order.

    ``home_assistant`` gives a household's discovery access (None: no household
    publishes Home Assistant discovery).
    """
    ids = sorted(households)
    clash = sorted(set(ids) & set(_SERVICES))
    if clash:
        raise ConfigError(f"agent ids {clash} are service usernames")
    if len(set(ids)) != len(ids):
        raise ConfigError("agent ids must be unique")
    users = [
        UserAccess(LEDGER, ledger_grants(topics)),
        UserAccess(FORECASTER, forecaster_grants(topics)),
        UserAccess(DASHBOARD, dashboard_grants(topics)),
        UserAccess(MONITOR, monitor_grants()),
    ]
    for agent in ids:
        ha = None if home_assistant is None else home_assistant(agent)
        users.append(UserAccess(agent, household_grants(topics, agent, home_assistant=ha)))
    _check_node_ids(users)
    return tuple(users)


def _check_node_ids(users: Sequence[UserAccess]) -> None:
    """Two households with the same discovery filter could publish each other's."""
    seen: dict[str, str] = {}
    for user in users:
        for grant in user.grants:
            if grant.filter.endswith("/config"):
                other = seen.setdefault(grant.filter, user.username)
                if other != user.username:
                    msg = f"{other} and {user.username} share Home Assistant node {grant.filter}"
                    raise ConfigError(msg)


def render_acl(users: Iterable[UserAccess]) -> str:
    """A Mosquitto ``acl_file``: one ``user`` block each, nothing for anonymous clients."""
    lines = [
        "# Generated by `wattmesh provision` from broker/topics.py (broker/acl.py).",
        "# No lines before the first `user`: an anonymous client may do nothing.",
    ]
    for user in users:
        lines += ["", f"user {user.username}"]
        lines += [f"topic {g.access.value} {g.filter}" for g in user.grants]
    return "\n".join(lines) + "\n"


def allows(grants: Iterable[Grant], wanted: Access, topic: str) -> bool:
    """Whether ``grants`` let a client publish (``WRITE``) on a topic, or subscribe
    (``READ``) to a filter: Mosquitto's rule, a wildcard in a subscription only
    matching the same wildcard of a grant."""
    return any(g.access.permits(wanted) and _within(topic, g.filter) for g in grants)


def _within(topic: str, pattern: str) -> bool:
    levels, wanted = pattern.split("/"), topic.split("/")
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(wanted):
            return False
        if level == "+":
            if wanted[i] == "#":
                return False
            continue
        if level != wanted[i]:
            return False
    return len(wanted) == len(levels)
