"""Decode a logged reading or order from its exact signed bytes, for the verifier.

At ingest :func:`broker.messages.decode_message` parses the wire envelope and
re-canonicalises it (RFC 8785) before the signature check. The log stores those
canonical signed bytes verbatim, so re-checking them needs only: parse, the same schema
checks, and a test that the bytes are canonical (:mod:`broker.canonical`, which takes
the C JSON encoder for every value the schema admits).
"""

from __future__ import annotations

from broker._validate import schema_error
from broker.canonical import canonical_bytes_of_checked
from broker.messages import (
    DOMAIN_PREFIX,
    OrderBody,
    ReadingBody,
    SignedMessage,
    parse_json,
    parse_signed,
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
