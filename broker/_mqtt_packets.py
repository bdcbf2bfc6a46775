"""The MQTT 3.1.1 packets a receive-only client needs, encoded and parsed: pure bytes.

Used by :mod:`broker.subscriber` (the ledger's ingest connection). Only what a
subscriber sends (CONNECT, SUBSCRIBE, PUBACK, PINGREQ, DISCONNECT) is encoded, and
only what a broker sends it (CONNACK, SUBACK, PUBLISH at QoS 0 or 1, PINGRESP) is
parsed; anything else is a :class:`MqttProtocolError`. :class:`PacketReader` takes
the byte stream in arbitrary pieces and returns complete packets, so one read of
thousands of PUBLISH packets costs one pass over a buffer; a PUBLISH above
:data:`MAX_PACKET_BYTES` comes out as an :class:`Oversize` (topic and packet id) and
its bytes are skipped, so the subscriber can acknowledge it and stay connected.
"""

from __future__ import annotations

from dataclasses import dataclass

from wattmesh.broker.errors import BrokerError
from wattmesh.broker.messages import MAX_MESSAGE_BYTES

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

MAX_TOPIC_BYTES = 0xFFFF
"""An MQTT string's limit: a topic takes at most 2 + 65,535 bytes of a PUBLISH."""

MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + 2 + MAX_TOPIC_BYTES + 2
"""Largest remaining length of a packet read whole: a PUBLISH whose payload is the
contract's largest message (:data:`broker.messages.MAX_MESSAGE_BYTES`) on any topic,
with its packet id. A longer PUBLISH is skipped (:class:`Oversize`), never buffered."""

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}

PINGREQ_BYTES = bytes((PINGREQ << 4, 0))
DISCONNECT_BYTES = bytes((DISCONNECT << 4, 0))


class MqttProtocolError(BrokerError):
    """The broker sent something an MQTT 3.1.1 subscriber cannot accept, or refused
    the connection or a subscription; the message says which."""


@dataclass(frozen=True, slots=True)
class Publish:
    """An inbound PUBLISH. ``packet_id`` is None at QoS 0."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


@dataclass(frozen=True, slots=True)
class Oversize:
    """An inbound PUBLISH longer than the reader's limit: only its start was read
    (topic and packet id, to acknowledge and report it); the rest is skipped as it
    streams in. ``size`` is its remaining length in bytes."""

    topic: str
    qos: int
    packet_id: int | None
    size: int


@dataclass(frozen=True, slots=True)
class Control:
    """Any other inbound packet: its type and body (after the fixed header)."""

    kind: int
    body: bytes


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_packet(first: int, body: bytes) -> bytes:
    """A packet: its first byte (type and flags), the remaining length, the body."""
    return bytes((first,)) + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, *, qos: int, packet_id: int, retain: bool) -> bytes:
    """PUBLISH (``packet_id`` is left out at QoS 0). The client here never sends one;
    publishers in tests and benchmarks do."""
    body = encode_string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return encode_packet((PUBLISH << 4) | (qos << 1) | int(retain), body)


def encode_string(text: str) -> bytes:
    """An MQTT UTF-8 string: two length bytes, then the bytes."""
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65,535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(
    client_id: str,
    *,
    keepalive_s: int,
    clean_session: bool,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT (protocol level 4), no will."""
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive must fit in 16 bits")
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = encode_string("MQTT") + bytes((4, flags)) + keepalive_s.to_bytes(2, "big")
    body += encode_string(client_id)
    if username is not None:
        body += encode_string(username)
    if password is not None:
        body += encode_string(password)
    return encode_packet(CONNECT << 4, body)


def subscribe_packet(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE for ``(topic filter, max QoS)`` pairs."""
    if not filters:
        raise ValueError("subscribe to at least one filter")
    body = packet_id.to_bytes(2, "big")
    for topic_filter, qos in filters:
        if qos not in (0, 1):
            raise ValueError("a subscriber here takes QoS 0 or 1")
        body += encode_string(topic_filter) + bytes((qos,))
    return encode_packet((SUBSCRIBE << 4) | 0x02, body)


def puback_packet(packet_id: int) -> bytes:
    return bytes((PUBACK << 4, 2)) + packet_id.to_bytes(2, "big")


def connack_problem(body: bytes) -> str | None:
    """Why a CONNACK refuses the connection, or None when it accepts it."""
    if len(body) != 2:
        return "malformed CONNACK"
    code = body[1]
    return None if code == 0 else CONNACK_REASONS.get(code, f"CONNACK return code {code}")


def suback_codes(body: bytes, packet_id: int) -> bytes:
    """The granted QoS codes of a SUBACK for ``packet_id`` (0x80: refused)."""
    if len(body) < 3 or int.from_bytes(body[:2], "big") != packet_id:
        raise MqttProtocolError("SUBACK for another SUBSCRIBE")
    return body[2:]


class FrameReader:
    """Splits a byte stream fed in pieces of any size into ``(first byte, body)``
    frames, whatever their type."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Append ``data``; return every frame now complete, in order."""
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            length, at = _remaining_length(buf, pos + 1, end)
            if length < 0:
                break  # the length itself is incomplete
            if length > MAX_PACKET_BYTES:
                raise MqttProtocolError(f"packet of {length} bytes (limit {MAX_PACKET_BYTES})")
            if end - at < length:
                break
            out.append((buf[pos], bytes(buf[at : at + length])))
            pos = at + length
        del buf[:pos]
        return out


class PacketReader:
    """Reassembles the packets a broker sends a subscriber from a byte stream fed in
    pieces of any size. A PUBLISH longer than ``limit`` bytes is an :class:`Oversize`
    as soon as its topic and packet id are in, and its remaining bytes are dropped as
    they arrive (memory stays bounded by ``limit``); any other packet above ``limit``
    is a :class:`MqttProtocolError`."""

    def __init__(self, limit: int = MAX_PACKET_BYTES) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._skip = 0  # bytes of an oversize PUBLISH still to drop

    def feed(self, data: bytes) -> list[Publish | Oversize | Control]:
        """Append ``data``; return every packet now complete, in order."""
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        buf = self._buf
        buf += data
        out: list[Publish | Oversize | Control] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            length, at = _remaining_length(buf, pos + 1, end)
            if length < 0:
                break  # the length itself is incomplete
            first = buf[pos]
            if length > self._limit:
                head = _oversize_head(first, buf, at, end, length)
                if head < 0:
                    break  # wait for the topic and packet id
                out.append(_oversize(first, bytes(buf[at : at + head]), length))
                self._skip = max(at + length - end, 0)
                pos = min(at + length, end)
                continue
            if end - at < length:
                break
            body = bytes(buf[at : at + length])
            kind = first >> 4
            out.append(_publish(first, body) if kind == PUBLISH else _control(kind, first, body))
            pos = at + length
        del buf[:pos]
        return out


def _oversize_head(first: int, buf: bytearray, at: int, end: int, length: int) -> int:
    """How many bytes of an oversize packet's body say its topic and packet id; -1
    while they are not all in ``buf``. Only a PUBLISH may be oversize."""
    if first >> 4 != PUBLISH:
        raise MqttProtocolError(f"packet of {length} bytes, type {first >> 4}: over the limit")
    if end - at < 2:
        return -1
    head = 2 + int.from_bytes(buf[at : at + 2], "big") + (2 if (first >> 1) & 0x03 else 0)
    if head > length:
        raise MqttProtocolError("PUBLISH shorter than its topic and packet id")
    return head if end - at >= head else -1


def _oversize(first: int, head: bytes, length: int) -> Oversize:
    start = _publish(first, head)  # its checks: QoS, topic, packet id
    return Oversize(start.topic, start.qos, start.packet_id, length)


def _remaining_length(buf: bytearray, at: int, end: int) -> tuple[int, int]:
    """The remaining length encoded at ``buf[at:]`` and where the body starts; -1 when
    the buffer ends inside it."""
    length, multiplier = 0, 1
    for _ in range(4):
        if at >= end:
            return -1, at
        digit = buf[at]
        at += 1
        length += (digit & 0x7F) * multiplier
        if not digit & 0x80:
            return length, at
        multiplier *= 128
    raise MqttProtocolError("remaining length longer than four bytes")


def _publish(first: int, body: bytes) -> Publish:
    qos = (first >> 1) & 0x03
    if qos > 1:
        raise MqttProtocolError(f"PUBLISH at QoS {qos}; this subscriber asked for at most 1")
    if len(body) < 2:
        raise MqttProtocolError("PUBLISH without a topic")
    size = int.from_bytes(body[:2], "big")
    cut = 2 + size
    if len(body) < cut + (2 if qos else 0):
        raise MqttProtocolError("PUBLISH shorter than its topic and packet id")
    try:
        topic = body[2:cut].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MqttProtocolError("PUBLISH topic is not UTF-8") from exc
    packet_id = None
    if qos:
        packet_id = int.from_bytes(body[cut : cut + 2], "big")
        cut += 2
    return Publish(topic, body[cut:], qos, bool(first & 0x01), bool(first & 0x08), packet_id)


_EXPECTED_FLAGS = {CONNACK: 0, SUBACK: 0, PINGRESP: 0}


def _control(kind: int, first: int, body: bytes) -> Control:
    if kind not in _EXPECTED_FLAGS:
        raise MqttProtocolError(f"unexpected packet type {kind} for a subscriber")
    if first & 0x0F != _EXPECTED_FLAGS[kind]:
        raise MqttProtocolError(f"packet type {kind} with reserved flags set")
    return Control(kind, body)
