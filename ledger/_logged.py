"""Decode a logged reading or order from its exact signed bytes, for the verifier.

At ingest :func:`broker.messages.decode_message` parses the wire envelope and
re-canonicalises it (RFC 8785) before the signature check. The log stores those
canonical signed bytes verbatim, so re-checking them needs only: parse, the same schema
checks, and a test that the bytes are canonical (:mod:`broker.canonical`, which takes
the C JSON encoder for every value the schema admits).

Nearly every logged message is plain: ASCII names without quotes, backslashes or
control characters, and integers of at most 15 digits well inside the schema's bounds.
Such bytes are canonical exactly when they have the canonical layout, so for them
:func:`plain_header` decides with one pattern match (the keys in RFC 8785 order, no
spaces, integers without leading zeros or ``-0``, strings that are their own JSON
text) what :func:`decode_logged` would: the message decodes, with that header. Anything
else is left to :func:`decode_logged`, which says what is wrong.
``tests/test_logged_fastpath.py`` checks that the two agree.
"""

from __future__ import annotations

import re

from wattmesh.broker.canonical import canonical_bytes_of_checked
from wattmesh.broker.messages import (
    DOMAIN_PREFIX,
    MAX_INT,
    MAX_POWER_W,
    MAX_PRICE_MICRO_PER_KWH,
    MAX_QUANTITY_WH,
    OrderBody,
    ReadingBody,
    Side,
    SignedMessage,
    parse_json,
    parse_signed,
    schema_error,
)

_SIGNED_KINDS = frozenset({ReadingBody.KIND, OrderBody.KIND})


def decode_logged(kind: str, signed: bytes, signature: bytes) -> SignedMessage:
    """The message a log entry of ``kind`` holds; raise MessageError naming what is wrong."""
    if kind not in _SIGNED_KINDS:
        raise schema_error(f"{kind} entries are not signed messages")
    obj = parse_json(signed)
    header, body = parse_signed(obj)
    if header.kind != kind:
        raise schema_error(f"domain is not {DOMAIN_PREFIX + kind}")
    # Exact keys and checked values (parse_signed), so the fast canonical form applies;
    # a lone surrogate in a string has none.
    try:
        canonical = canonical_bytes_of_checked(obj)
    except UnicodeEncodeError:
        canonical = b""
    if canonical != signed:
        raise schema_error("signed bytes are not in canonical (RFC 8785) form")
    return SignedMessage(header, body, signature, signed)


PlainHeader = tuple[str, int, str, str, int]
"""``(market, interval, agent, kid, seq)`` of a signed message's header."""


def _positive_below(bound: int) -> bytes:
    """Canonical positive integers of fewer digits than ``bound``: all below it."""
    return rb"[1-9][0-9]{0,%d}" % (len(str(bound)) - 2)


def _below(bound: int) -> bytes:
    """Canonical natural numbers of fewer digits than ``bound``: all below it."""
    return b"0|" + _positive_below(bound)


_NUMBER = b"(" + _below(MAX_INT) + b")"  # a header's integer, captured


def _text(max_len: int) -> bytes:
    """A JSON string of ASCII from the space on, without ``"`` or ``\\``: its own canonical
    text (RFC 8785 escapes only those two and the control characters below U+0020)."""
    return rb'"([\x20\x21\x23-\x5b\x5d-\x7f]{0,%d})"' % max_len


def _layout(kind: str, body: bytes) -> re.Pattern[bytes]:
    """The canonical bytes of a signed ``kind`` message whose body is ``body``; groups:
    agent, expires, interval, kid, market, seq (with the header's limits on the lengths
    of the names: 128 characters, 64 for the key id)."""
    domain = re.escape((DOMAIN_PREFIX + kind).encode())
    return re.compile(
        rb'\{"agent":%s,"body":\{%s\},"domain":"%s","expires":%s,"interval":%s,"kid":%s,'
        rb'"market":%s,"seq":%s\}'
        % (_text(128), body, domain, _NUMBER, _NUMBER, _text(64), _text(128), _NUMBER)
    )


_LAYOUTS = {
    ReadingBody.KIND: _layout(
        ReadingBody.KIND,
        rb'(?:"battery_in_wh":(?:%s),"battery_out_wh":(?:%s),)?"export_wh":(?:%s),'
        rb'"import_wh":(?:%s),"meter_time":(?:%s),"power_w":(?:0|-?(?:%s)),"pv_wh":(?:%s)'
        % (*(_below(MAX_INT),) * 5, _positive_below(MAX_POWER_W), _below(MAX_INT)),
    ),
    OrderBody.KIND: _layout(
        OrderBody.KIND,
        rb'"price_micro_per_kwh":(?:%s),"quantity_wh":(?:%s),"side":"(?:%s)"'
        % (
            _below(MAX_PRICE_MICRO_PER_KWH),
            _below(MAX_QUANTITY_WH),
            b"|".join(side.value.encode() for side in Side),
        ),
    ),
}


def plain_header(kind: str, signed: bytes) -> PlainHeader | None:
    """When ``signed`` is a plain message of ``kind`` (see above), the header that
    :func:`decode_logged` would give it; else None (then that decides)."""
    layout = _LAYOUTS.get(kind)
    match = None if layout is None else layout.fullmatch(signed)
    if match is None:
        return None
    agent, _expires, interval, kid, market, seq = match.groups()
    return market.decode(), int(interval), agent.decode(), kid.decode(), int(seq)
