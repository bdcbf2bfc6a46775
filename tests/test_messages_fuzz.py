"""broker.messages under fuzzing: random payloads and byte or JSON mutations of signed messages.

Each mutant is either rejected with a signable MessageError, or decodes and verifies
exactly when nothing signed changed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.messagekit import (
    KEY,
    MESSAGES,
    JsonPath,
    assert_rejection_signable,
    get_at,
    wire_obj,
    with_at,
    without_at,
)
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.messages import SignedMessage, decode_message

_VERIFY_FAILURES = {RejectReason.BAD_SIGNATURE, RejectReason.KEY_MISMATCH}


def _check_mutant(payload: bytes, original: SignedMessage) -> None:
    """Either a MessageError, or a decoded message that verifies iff nothing signed changed."""
    try:
        decoded = decode_message(payload)
    except MessageError as exc:
        assert_rejection_signable(exc)
        return
    unchanged = (
        decoded.signed_bytes == original.signed_bytes and decoded.signature == original.signature
    )
    if unchanged:
        decoded.verify(KEY.verifying)
        assert decoded.header == original.header
        assert decoded.body == original.body
        assert decoded.message_id == original.message_id
    else:
        with pytest.raises(MessageError) as info:
            decoded.verify(KEY.verifying)
        assert info.value.reason in _VERIFY_FAILURES


_ORIGINALS = st.sampled_from(sorted(MESSAGES)).map(MESSAGES.__getitem__)


@st.composite
def _byte_mutants(draw: st.DrawFn) -> tuple[bytes, SignedMessage]:
    original = draw(_ORIGINALS)
    data = bytearray(original.to_wire())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "swap"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            other = draw(st.integers(0, len(data) - 1))
            data[at], data[other] = data[other], data[at]
    return bytes(data), original


_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**53) - 2, max_value=2**53 + 2),
    st.floats(),
    st.text(st.characters(exclude_categories=()), max_size=12),  # includes lone surrogates
    st.text(max_size=300),
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def _all_paths(obj: Any, path: JsonPath = ()) -> list[JsonPath]:
    found: list[JsonPath] = [path] if path else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.extend(_all_paths(value, (*path, key)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found.extend(_all_paths(value, (*path, index)))
    return found


def _nearby(draw: st.DrawFn, value: Any) -> Any:
    """A value like ``value``: often the same, often a small change of the same type."""
    if isinstance(value, bool) or value is None:
        return draw(_JSON_LEAVES)
    if isinstance(value, int):
        return value + draw(st.integers(-2, 2))
    if isinstance(value, str):
        return draw(st.sampled_from([value, value + "x", value[:-1], value.upper()]))
    return copy.deepcopy(value)


@st.composite
def _json_mutants(draw: st.DrawFn) -> tuple[bytes, SignedMessage]:
    original = draw(_ORIGINALS)
    obj: Any = wire_obj(original)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_all_paths(obj)))
        op = draw(st.sampled_from(["replace", "nearby", "delete", "add"]))
        parent = get_at(obj, path[:-1])
        if op == "replace":
            obj = with_at(obj, path, draw(_JSON_VALUES))
        elif op == "nearby":
            obj = with_at(obj, path, _nearby(draw, get_at(obj, path)))
        elif op == "delete":
            obj = without_at(obj, path)
        elif isinstance(parent, dict):
            obj = with_at(obj, (*path[:-1], draw(st.text(max_size=8))), draw(_JSON_VALUES))
        else:
            obj = with_at(obj, path[:-1], [*parent, draw(_JSON_VALUES)])
        if not isinstance(obj, dict) or not obj:
            break
    ascii_only = draw(st.booleans())
    text = json.dumps(obj, ensure_ascii=ascii_only, sort_keys=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass"), original


_FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(payload=st.binary(max_size=512) | _JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_fuzz_random_payloads(payload: bytes) -> None:
    _check_mutant(payload, MESSAGES["order"])


@_FUZZ
@given(mutant=_byte_mutants())
def test_fuzz_byte_mutations(mutant: tuple[bytes, SignedMessage]) -> None:
    _check_mutant(*mutant)


@_FUZZ
@given(mutant=_json_mutants())
def test_fuzz_json_mutations(mutant: tuple[bytes, SignedMessage]) -> None:
    _check_mutant(*mutant)
