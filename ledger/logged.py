"""Decode a logged reading or order from its exact signed bytes, for the verifier.

At ingest :func:`broker.messages.decode_message` parses the wire envelope and
re-canonicalises it (RFC 8785) before the signature check. The log stores those
canonical signed bytes verbatim, so re-checking them needs only: parse, the same schema
checks, and a test that the bytes are canonical (:mod:`broker.canonical`, which takes
the C JSON encoder for every value the schema admits).
"""

from __future__ import annotations

import json
from typing import Any

from broker._validate import as_object, schema_error
from broker.canonical import canonical_bytes_of_checked
from broker.errors import MessageError, RejectReason
from broker.messages import (
    DOMAIN_PREFIX,
    Body,
    OrderBody,
    ReadingBody,
    SignedMessage,
    parse_header,
)

_BODIES: dict[str, type[ReadingBody] | type[OrderBody]] = {
    ReadingBody.KIND: ReadingBody,
    OrderBody.KIND: OrderBody,
}
_HEADER_KEYS = frozenset({"domain", "market", "interval", "agent", "kid", "seq", "expires", "body"})


def _no_number(value: str) -> Any:
    raise schema_error(f"non-integer number {value}")


_DECODE = json.JSONDecoder(parse_float=_no_number, parse_constant=_no_number).decode


def decode_logged(kind: str, signed: bytes, signature: bytes) -> SignedMessage:
    """The message a log entry of ``kind`` holds; raise MessageError naming what is wrong."""
    body_type = _BODIES.get(kind)
    if body_type is None:
        raise schema_error(f"{kind} entries are not signed messages")
    try:
        obj = _DECODE(signed.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageError(RejectReason.MALFORMED_JSON, str(exc)[:200]) from exc
    obj = as_object(obj, "signed")
    if obj.keys() != _HEADER_KEYS:
        raise schema_error("signed object does not have exactly the header fields")
    if obj["domain"] != DOMAIN_PREFIX + kind:
        raise schema_error(f"domain is not {DOMAIN_PREFIX + kind}")
    header = parse_header(obj, kind)
    body: Body = body_type.from_json(as_object(obj["body"], "body"))
    # Exact keys and checked values (the header and body parsers above), so the fast
    # canonical form applies; a lone surrogate in a string has none.
    try:
        canonical = canonical_bytes_of_checked(obj)
    except UnicodeEncodeError:
        canonical = b""
    if canonical != signed:
        raise schema_error("signed bytes are not in canonical (RFC 8785) form")
    return SignedMessage(header, body, signature, signed)
