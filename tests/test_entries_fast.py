"""The ledger's templated entry bytes equal RFC 8785 (the ``rfc8785`` reference)."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.ledger.clearing import Fill
from wattmesh.ledger.entries import _trade_object, trade_entry

TEXT = st.text(max_size=12)  # any Unicode, quotes, backslashes, control characters
INTS = st.integers(min_value=-(2**60), max_value=2**60)  # beyond 2**53 takes the slow path


@settings(max_examples=200)
@given(TEXT, TEXT, INTS, INTS, TEXT, TEXT, INTS)
def test_trade_bytes_are_rfc8785(
    buyer: str, seller: str, qty: int, price: int, buy_ref: str, sell_ref: str, interval: int
) -> None:
    fill = Fill(buyer, seller, qty, price, buy_ref, sell_ref)
    obj = _trade_object(interval, fill)
    try:
        expected = rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError:
        return  # no canonical form (a huge integer or a lone surrogate): nothing to compare
    assert trade_entry(interval=interval, fill=fill).data == expected
