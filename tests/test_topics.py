"""Tests of broker.topics: the topic tree, agent id parsing, and segment checks."""

from __future__ import annotations

import pytest

from wattmesh.broker.errors import ConfigError
from wattmesh.broker.topics import DEFAULT_PREFIX, HouseholdTopic, Topics, check_segment


def test_default_prefix_names() -> None:
    topics = Topics("m1")
    assert DEFAULT_PREFIX == "wattmesh"
    assert topics.root == "wattmesh/m1"
    assert topics.household("h-07") == "wattmesh/m1/household/h-07"
    assert topics.reading("h-07") == "wattmesh/m1/household/h-07/reading"
    assert topics.order("h-07") == "wattmesh/m1/household/h-07/order"
    assert topics.status("h-07") == "wattmesh/m1/household/h-07/status"
    assert topics.forecast("h-07") == "wattmesh/m1/household/h-07/forecast"
    assert topics.error("h-07") == "wattmesh/m1/household/h-07/error"
    assert topics.announce == "wattmesh/m1/market/announce"
    assert topics.trades == "wattmesh/m1/market/trades"


def test_wildcard_subscriptions() -> None:
    topics = Topics("m1")
    assert topics.all_readings == "wattmesh/m1/household/+/reading"
    assert topics.all_orders == "wattmesh/m1/household/+/order"
    assert topics.all_status == "wattmesh/m1/household/+/status"


def test_multi_level_prefix() -> None:
    topics = Topics("north", prefix="site/grid_2")
    assert topics.root == "site/grid_2/north"
    assert topics.reading("a.b") == "site/grid_2/north/household/a.b/reading"
    assert topics.agent_of("site/grid_2/north/household/a.b/reading") == "a.b"


@pytest.mark.parametrize(
    ("topic", "agent"),
    [
        ("wattmesh/m1/household/h1/reading", "h1"),
        ("wattmesh/m1/household/h1/order", "h1"),
        ("wattmesh/m1/household/h1/status", "h1"),
        ("wattmesh/m1/household/h_1.x-2/error", "h_1.x-2"),
        ("wattmesh/m1/household/h1/a/b", "h1"),
    ],
)
def test_agent_of_own_market(topic: str, agent: str) -> None:
    assert Topics("m1").agent_of(topic) == agent


@pytest.mark.parametrize(
    "topic",
    [
        "wattmesh/m2/household/h1/reading",  # another market
        "wattmesh/m10/household/h1/reading",  # a market whose id starts with ours
        "other/m1/household/h1/reading",  # another prefix
        "wattmesh/m1/market/announce",  # not a household topic
        "wattmesh/m1/household/h1",  # no level after the agent id
        "wattmesh/m1/household//reading",  # empty agent id
        "wattmesh/m1/household/",
        "wattmesh/m1/households/h1/reading",
        "",
    ],
)
def test_agent_of_rejects(topic: str) -> None:
    assert Topics("m1").agent_of(topic) is None


def test_agent_of_round_trips_every_household_topic() -> None:
    topics = Topics("m1")
    for name in (topics.reading, topics.order, topics.status, topics.forecast, topics.error):
        assert topics.agent_of(name("agent-9")) == "agent-9"


@pytest.mark.parametrize("value", ["a", "A-z_0.9", "x" * 64, "-", "."])
def test_check_segment_accepts(value: str) -> None:
    assert check_segment(value, "agent id") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "+",
        "#",
        "a/b",
        "/",
        "a+",
        "#a",
        "x" * 65,
        "a b",
        "abc\n",  # '$' in a regex would match before this final newline
        "\nabc",
        "é",
        "a\x00",
    ],
)
def test_check_segment_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="agent id"):
        check_segment(value, "agent id")


@pytest.mark.parametrize("market_id", ["", "+", "#", "a/b", "m" * 65])
def test_bad_market_id(market_id: str) -> None:
    with pytest.raises(ConfigError, match="market id"):
        Topics(market_id)


@pytest.mark.parametrize("prefix", ["", "a//b", "/a", "a/", "a/+", "#", "a/" + "p" * 65])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ConfigError, match="topic prefix level"):
        Topics("m1", prefix=prefix)


@pytest.mark.parametrize("agent_id", ["", "+", "#", "a/b", "a" * 65])
def test_household_topics_check_agent_id(agent_id: str) -> None:
    topics = Topics("m1")
    for name in (topics.reading, topics.order, topics.status, topics.forecast, topics.error):
        with pytest.raises(ConfigError, match="agent id"):
            name(agent_id)


@pytest.mark.parametrize(
    "topic",
    [
        "wattmesh/m1/household/x y/status",  # a level no agent id can have
        "wattmesh/m1/household/" + "a" * 65 + "/reading",
        "wattmesh/m1/household/h1\n/order",
        "wattmesh/m1/household/h\u00e9/reading",
        "wattmesh/m1/household/h1/a/b",  # more than one level after the id
        "wattmesh/m1/household/h1/",
        "wattmesh/m1/household/h1/re ading",
        "wattmesh/m2/household/h1/reading",
        "wattmesh/m1/market/announce",
    ],
)
def test_classify_refuses_without_raising_what_no_household_topic_can_be(topic: str) -> None:
    topics = Topics("m1")
    assert topics.classify(topic) is None
    if topic.startswith("wattmesh/m1/household/x y"):
        assert topics.agent_of(topic) is None  # was "x y", which reading() then refused


def test_classify_names_the_household_and_kind_of_every_household_topic() -> None:
    topics = Topics("m1", prefix="a/b")
    for kind in ("reading", "order", "status", "audit", "forecast", "error"):
        topic = getattr(topics, kind if kind != "audit" else "audit_request")("h_1.x-2")
        assert topics.classify(topic) == HouseholdTopic("h_1.x-2", kind)
