"""The fast canonical encoder gives exactly the bytes of the rfc8785 reference."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker.canonical import canonical_bytes

# Any code point, surrogates included (st.text() leaves them out by default).
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_KEYS = st.one_of(st.text(max_size=6), _TEXT, st.sampled_from(["a", "b", "é", "😀", "\u20ac"]))
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.integers(min_value=-(2**53) - 2, max_value=2**53 + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_KEYS, inner, max_size=4),
    ),
    max_leaves=16,
)


# rfc8785 0.1.4 raises UnicodeEncodeError (not its own error) for a lone surrogate in a
# key; ours hands non-ASCII keys to it, so both must fail the same way there too.
_NO_FORM = (rfc8785.CanonicalizationError, UnicodeEncodeError)


def _reference(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except _NO_FORM as exc:
        return type(exc)


def _ours(value: Any) -> bytes | type[Exception]:
    try:
        return canonical_bytes(value)
    except _NO_FORM as exc:
        return type(exc)


@settings(max_examples=600)
@given(_VALUES)
def test_equals_the_reference_for_any_json_value(value: Any) -> None:
    assert _ours(value) == _reference(value)


class _Side(StrEnum):
    BUY = "buy"


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, None, "x"]},
        {"ctrl": "\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f", "q": '"\\/'},
        {"line separators": "\u2028\u2029", "astral": "\U0001f600", "euro": "\u20ac"},
        {"side": _Side.BUY, "max": 2**53 - 1, "min": -(2**53) + 1},
        {"\u20ac": 1, "\U0001f600": 2, "\uff61": 3},  # UTF-16 order differs from code points
        [1.5, 1e21, -0.0],
    ],
)
def test_known_edge_cases(value: Any) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("value", [{"big": 2**53}, {"s": "\ud800"}, {1: "non-string key"}])
def test_values_without_canonical_form_raise_like_the_reference(value: Any) -> None:
    with pytest.raises(rfc8785.CanonicalizationError):
        canonical_bytes(value)


def test_a_signed_order_canonicalises_as_compact_sorted_json() -> None:
    obj = {"signed": {"seq": 2, "agent": "h001"}, "sig": "AAAA"}
    assert canonical_bytes(obj) == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
