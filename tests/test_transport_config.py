"""broker.transport_config without a broker: broker URLs, configuration checks and the
reconnect backoff delays.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattmesh.broker.transport import (
    BrokerAddress,
    Transport,
    TransportConfig,
    Will,
    backoff_delays,
    parse_broker_url,
)

# --------------------------------------------------------------------------- backoff


@given(
    initial_s=st.floats(min_value=0.001, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=1000.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delays_stay_within_the_exponential_cap(
    initial_s: float, factor: float, seed: int
) -> None:
    maximum_s = initial_s * factor
    delays = backoff_delays(initial_s, maximum_s, random.Random(seed))
    for n in range(60):
        delay = next(delays)
        assert 0.0 <= delay <= min(maximum_s, initial_s * 2**n)


def test_backoff_is_full_jitter_and_seedable() -> None:
    first = backoff_delays(1.0, 8.0, random.Random(42))
    second = backoff_delays(1.0, 8.0, random.Random(42))
    sample = [next(first) for _ in range(4004)]
    assert sample == [next(second) for _ in range(4004)]
    capped = sample[4:]  # from n = 3 on the cap is the maximum, 8 s
    assert abs(sum(capped) / len(capped) - 4.0) < 0.25  # uniform on [0, 8] has mean 4
    assert min(capped) < 0.1
    assert max(capped) > 7.9


@pytest.mark.parametrize(("initial_s", "maximum_s"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_rejects_bad_bounds(initial_s: float, maximum_s: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        next(backoff_delays(initial_s, maximum_s, random.Random(0)))


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost", BrokerAddress("localhost", 1883)),
        ("mqtt://127.0.0.1:18830", BrokerAddress("127.0.0.1", 18830)),
        ("mqtt://[::1]:1884", BrokerAddress("::1", 1884)),
        ("mqtt://Broker.Example:65535", BrokerAddress("broker.example", 65535)),
    ],
)
def test_parse_broker_url(url: str, expected: BrokerAddress) -> None:
    address = parse_broker_url(url)
    assert address == expected
    assert parse_broker_url(address.url) == address


@pytest.mark.parametrize(
    "url",
    [
        "",
        "localhost:1883",
        "mqtts://localhost",
        "tcp://localhost:1883",
        "http://localhost",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://localhost:",
        "mqtt://localhost:0",
        "mqtt://localhost:65536",
        "mqtt://localhost:port",
        "mqtt://user:secret@localhost",
        "mqtt://localhost/",
        "mqtt://localhost/topic",
        "mqtt://localhost?x=1",
        "mqtt://localhost#frag",
    ],
)
def test_parse_broker_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=r"expected mqtt://host\[:port\]"):
        parse_broker_url(url)


def test_config_validation() -> None:
    address = BrokerAddress("127.0.0.1", 1883)
    with pytest.raises(ValueError, match="qos"):
        Will("wm/status", b"offline", qos=3, retain=True)
    with pytest.raises(ValueError, match="wildcard"):
        Will("wm/#", b"offline", qos=1, retain=True)
    with pytest.raises(ValueError, match="client_id"):
        TransportConfig(address=address, client_id="")
    with pytest.raises(ValueError, match="backoff"):
        TransportConfig(address=address, client_id="c", backoff_initial_s=5, backoff_max_s=1)
    with pytest.raises(ValueError, match="port"):
        BrokerAddress("127.0.0.1", 0)
    with pytest.raises(ValueError, match="qos"):
        Transport(TransportConfig(address=address, client_id="c"), subscriptions=[("a/#", 5)])
