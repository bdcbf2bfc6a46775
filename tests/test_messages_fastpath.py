"""The schema's quick paths (a common message checked at a glance) decide exactly as the
field-by-field checks they skip: the same value, or the same rejection and reason.

The references here are the plain checks, written out with :mod:`broker._validate`;
hypothesis feeds both objects near the valid ones (bools for integers, negative and
huge numbers, long, non-ASCII and surrogate strings, missing and extra keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker._validate import MAX_INT, exact_keys, get_choice, get_int, get_str
from wattmesh.broker.errors import MessageError
from wattmesh.broker.messages import (
    MAX_POWER_W,
    MAX_PRICE_MICRO_PER_KWH,
    MAX_QUANTITY_WH,
    Header,
    OrderBody,
    ReadingBody,
    Side,
    parse_header,
    parse_json,
)

_INTS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=-2 * MAX_POWER_W, max_value=2 * MAX_PRICE_MICRO_PER_KWH),
    st.sampled_from([MAX_INT, MAX_INT + 1, -MAX_INT, MAX_QUANTITY_WH, MAX_QUANTITY_WH + 1]),
    st.sampled_from([MAX_POWER_W, MAX_POWER_W + 1, -MAX_POWER_W, -MAX_POWER_W - 1]),
    st.booleans(),
)
_STRS = st.one_of(
    st.sampled_from(["buy", "sell", "Buy", "", "m1", "h1"]),
    st.text(max_size=3),
    st.text(alphabet="ab\u00e9\ud800", min_size=60, max_size=140),
    st.sampled_from(["k" * 64, "k" * 65, "m" * 128, "m" * 129]),
)
_VALUES = st.one_of(_INTS, _STRS, st.none(), st.lists(st.integers(), max_size=2))
_READING = ["meter_time", "import_wh", "export_wh", "pv_wh", "power_w"]
_BATTERY = ["battery_in_wh", "battery_out_wh"]


def _near(valid: dict[str, Any], extra: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with one or two fields given other values, maybe one dropped, maybe an
    ``extra`` key added."""
    keys = sorted(valid)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        obj = dict(valid)
        for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2)):
            obj[key] = draw(_VALUES)
        if draw(st.booleans()):
            del obj[draw(st.sampled_from(keys))]
        if extra and draw(st.booleans()):
            obj[draw(st.sampled_from(extra))] = draw(_INTS)
        return obj

    return build()


def _outcome(parse: Callable[[], Any]) -> Any:
    try:
        return ("ok", parse())
    except MessageError as exc:
        return ("rejected", exc.reason, exc.detail)


def _order_reference(obj: dict[str, Any]) -> OrderBody:
    exact_keys(obj, {"side", "quantity_wh", "price_micro_per_kwh"}, "order")
    return OrderBody(
        Side(get_choice(obj, "side", ("buy", "sell"))),
        get_int(obj, "quantity_wh", maximum=MAX_QUANTITY_WH),
        get_int(obj, "price_micro_per_kwh", maximum=MAX_PRICE_MICRO_PER_KWH),
    )


def _reading_reference(obj: dict[str, Any]) -> ReadingBody:
    battery = obj.keys() & set(_BATTERY)
    exact_keys(obj, set(_READING) | (set(_BATTERY) if battery else set()), "reading")
    return ReadingBody(
        meter_time=get_int(obj, "meter_time"),
        import_wh=get_int(obj, "import_wh"),
        export_wh=get_int(obj, "export_wh"),
        pv_wh=get_int(obj, "pv_wh"),
        power_w=get_int(obj, "power_w", minimum=-MAX_POWER_W, maximum=MAX_POWER_W),
        battery_in_wh=get_int(obj, "battery_in_wh") if battery else None,
        battery_out_wh=get_int(obj, "battery_out_wh") if battery else None,
    )


def _header_reference(obj: dict[str, Any]) -> Header:
    return Header(
        kind="order",
        market=get_str(obj, "market"),
        interval=get_int(obj, "interval"),
        agent=get_str(obj, "agent"),
        kid=get_str(obj, "kid", max_len=64),
        seq=get_int(obj, "seq"),
        expires=get_int(obj, "expires"),
    )


@settings(max_examples=600)
@given(_near({"side": "buy", "quantity_wh": 1500, "price_micro_per_kwh": 250_000}, ["extra"]))
def test_order_quick_path_decides_as_the_checks(obj: dict[str, Any]) -> None:
    assert _outcome(lambda: OrderBody.from_json(obj)) == _outcome(lambda: _order_reference(obj))


@settings(max_examples=600)
@given(
    _near(dict.fromkeys(_READING, 7), [*_BATTERY, "extra"])
    | _near(dict.fromkeys([*_READING, *_BATTERY], 7), ["extra"])
)
def test_reading_quick_path_decides_as_the_checks(obj: dict[str, Any]) -> None:
    assert _outcome(lambda: ReadingBody.from_json(obj)) == _outcome(lambda: _reading_reference(obj))


@settings(max_examples=600)
@given(
    _near(
        {"market": "m1", "interval": 900, "agent": "h1", "kid": "k" * 64, "seq": 7, "expires": 1},
        [],
    ).filter(lambda obj: len(obj) == 6)  # parse_header runs after the exact-keys check
)
def test_header_quick_path_decides_as_the_checks(obj: dict[str, Any]) -> None:
    assert _outcome(lambda: parse_header(obj, "order")) == _outcome(lambda: _header_reference(obj))


@given(st.integers(min_value=1, max_value=60), st.sampled_from(["", "-"]))
def test_long_integers_are_refused_before_int_sees_them(digits: int, sign: str) -> None:
    """A run of over 32 digits takes the hooked decoder (whatever the number's place,
    even inside a string, where it is harmless and decodes as before)."""
    number = sign + "7" * digits
    as_number = _outcome(lambda: parse_json(f'{{"a":{number}}}'.encode()))
    as_text = _outcome(lambda: parse_json(f'{{"a":"{number}"}}'.encode()))
    assert as_text == ("ok", {"a": number})
    if digits > 32:
        assert as_number[:2] == ("rejected", "out_of_bounds")
    else:
        assert as_number == ("ok", {"a": int(number)})
