"""What a transport connects to and how: addresses, sessions, will, TLS, backoff.

Plain values with their checks, no I/O and no aiomqtt: :mod:`broker.transport` uses
them and re-exports them, so ``from broker.transport import TransportConfig`` keeps
working.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

DEFAULT_MQTT_PORT: Final = 1883
_MAX_PORT: Final = 65535
_QOS_LEVELS: Final = (0, 1, 2)
_URL_FORM: Final = "mqtt://host[:port]"


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class BrokerAddress:
    """TCP address of an MQTT broker (TLS is chosen in TransportConfig); ``port`` is a TCP port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.host:
            msg = "broker host must not be empty"
            raise ValueError(msg)
        if not 1 <= self.port <= _MAX_PORT:
            msg = f"broker port must be in 1..{_MAX_PORT}, got {self.port}"
            raise ValueError(msg)

    @property
    def url(self) -> str:
        """The address as ``mqtt://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://host[:port]`` (default port 1883) into a :class:`BrokerAddress`.

    Raises ValueError naming the expected form for anything else: another scheme,
    credentials, a path, query or fragment, a missing host or a bad port.
    """

    def invalid(reason: str) -> ValueError:
        return ValueError(f"invalid broker URL {url!r}: {reason}; expected {_URL_FORM}")

    parts = urlsplit(url.strip())
    if parts.scheme != "mqtt":
        raise invalid(f"scheme must be 'mqtt', got {parts.scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise invalid("credentials do not belong in the URL (use username/password)")
    if parts.path or parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise invalid("no path, query or fragment allowed")
    host = parts.hostname
    if not host:
        raise invalid("missing host")
    try:
        port = parts.port
    except ValueError:
        raise invalid("port must be an integer in 1..65535") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise invalid("empty port")
        port = DEFAULT_MQTT_PORT
    if not 1 <= port <= _MAX_PORT:
        raise invalid("port must be an integer in 1..65535")
    return BrokerAddress(host=host, port=port)


# ------------------------------------------------------------------------ configuration


class Session(Enum):
    """MQTT session kind: ``CLEAN`` forgets everything on disconnect; ``PERSISTENT``
    (``clean_session=False``) keeps subscriptions and queued QoS 1 messages."""

    CLEAN = "clean"
    PERSISTENT = "persistent"


@dataclass(frozen=True)
class Will:
    """Last-will message the broker publishes if the connection dies uncleanly."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def __post_init__(self) -> None:
        _check_publish_topic(self.topic)
        _check_qos(self.qos)


@dataclass(frozen=True)
class ConnectMessages:
    """What one connection leaves and says: its last will, and the messages published
    (``(topic, payload, qos, retain)``) as soon as it is up, before it counts as
    connected. Built afresh for each connection when they differ per connection (a
    signed status with a new seq: :class:`broker.transport.Transport`'s
    ``per_connect``)."""

    will: Will | None
    publish: tuple[tuple[str, bytes, int, bool], ...] = ()


@dataclass(frozen=True)
class TlsConfig:
    """MQTT over TLS (1.2 or later), with the broker's hostname verified.

    ``ca_file`` is the PEM bundle that signs the broker's certificate (None: the
    system's trusted CAs); ``cert_file`` and ``key_file`` (PEM, both or neither)
    are a client certificate for brokers that authenticate clients by certificate.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            msg = "a client certificate needs both cert_file and key_file"
            raise ValueError(msg)

    def context(self) -> ssl.SSLContext:
        """A client SSLContext; raises OSError/ssl.SSLError for unreadable files."""
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if self.ca_file is None else str(self.ca_file)
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx


@dataclass(frozen=True)
class TransportConfig:
    """Connection settings.

    ``keepalive_s`` is the MQTT keepalive in whole seconds. Reconnect delays follow
    :func:`backoff_delays` with ``backoff_initial_s`` and ``backoff_max_s``.
    ``inbound_queue_size`` bounds buffered inbound messages (see :class:`Transport`);
    ``operation_timeout_s`` bounds waiting for CONNACK, SUBACK and PUBACK.
    ``tls`` (None: plain TCP) turns on MQTT over TLS.
    ``max_inflight`` bounds QoS 1/2 publishes sent and not yet acknowledged (paho's
    limit, paho's default 20); further publishes wait inside the client, in order.
    """

    address: BrokerAddress
    client_id: str
    username: str | None = None
    password: str | None = None
    will: Will | None = None
    keepalive_s: int = 30
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    inbound_queue_size: int = 1000
    operation_timeout_s: float = 10.0
    tls: TlsConfig | None = None
    session: Session = Session.CLEAN
    max_inflight: int = 20

    def __post_init__(self) -> None:
        if not self.client_id:
            msg = "client_id must not be empty (clean sessions still need a stable id)"
            raise ValueError(msg)
        if self.password is not None and self.username is None:
            msg = "a password needs a username"
            raise ValueError(msg)
        if self.keepalive_s < 1:
            msg = f"keepalive_s must be >= 1, got {self.keepalive_s}"
            raise ValueError(msg)
        _check_backoff(self.backoff_initial_s, self.backoff_max_s)
        if self.inbound_queue_size < 1:
            msg = f"inbound_queue_size must be >= 1, got {self.inbound_queue_size}"
            raise ValueError(msg)
        if self.operation_timeout_s <= 0:
            msg = f"operation_timeout_s must be > 0, got {self.operation_timeout_s}"
            raise ValueError(msg)
        if self.max_inflight < 1:
            msg = f"max_inflight must be >= 1, got {self.max_inflight}"
            raise ValueError(msg)


# ----------------------------------------------------------------------------- backoff


def backoff_delays(initial_s: float, maximum_s: float, rng: random.Random) -> Iterator[float]:
    """Yield reconnect delays in seconds: exponential backoff with full jitter.

    The n-th delay (n from 0) is uniform in ``[0, min(maximum_s, initial_s * 2**n)]``.
    The generator is infinite; all randomness comes from ``rng``.
    """
    _check_backoff(initial_s, maximum_s)
    attempt = 0
    while True:
        cap = min(maximum_s, initial_s * 2.0**attempt)
        yield rng.uniform(0.0, cap)
        if cap < maximum_s:  # stop growing the exponent once capped (no float overflow)
            attempt += 1


def _check_qos(qos: int) -> None:
    if qos not in _QOS_LEVELS:
        msg = f"qos must be 0, 1 or 2, got {qos!r}"
        raise ValueError(msg)


def _check_publish_topic(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic:
        msg = f"publish topic must be non-empty and wildcard-free, got {topic!r}"
        raise ValueError(msg)


def _check_backoff(initial_s: float, maximum_s: float) -> None:
    if not 0 < initial_s <= maximum_s:
        msg = f"need 0 < backoff initial ({initial_s}) <= maximum ({maximum_s})"
        raise ValueError(msg)
