"""broker.messages signatures: bad or foreign signatures, and tampering with each signed field."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from tests.messagekit import (
    KEY,
    MESSAGES,
    OTHER,
    SAMPLES,
    SEQ,
    JsonPath,
    encode,
    get_at,
    reason_of,
    sign,
    wire_obj,
    with_at,
)
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.messages import canonical_bytes, decode_message


@pytest.mark.parametrize("sig", ["not base64!", "abc", "ab=c", "YWJj\n", " YWJj", "YW Jj", "Y"])
def test_bad_base64_signature(sig: str) -> None:
    payload = encode(with_at(wire_obj(MESSAGES["order"]), ("sig",), sig))
    assert reason_of(payload) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "sig", ["", "AAAA", base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()]
)
def test_base64_but_not_a_signature(sig: str) -> None:
    decoded = decode_message(encode(with_at(wire_obj(MESSAGES["order"]), ("sig",), sig)))
    with pytest.raises(MessageError) as info:
        decoded.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


def test_signed_by_another_key_names_another_kid() -> None:
    message = decode_message(sign(SAMPLES["order"], OTHER).to_wire())
    message.verify(OTHER.verifying)
    with pytest.raises(MessageError) as info:
        message.verify(KEY.verifying)
    assert info.value.reason is RejectReason.KEY_MISMATCH


def test_forged_kid_with_another_keys_signature() -> None:
    """OTHER signs a message that claims KEY's kid: the kid matches, the signature does not."""
    signed = wire_obj(MESSAGES["order"])["signed"]
    assert signed["kid"] == KEY.kid
    forged_sig = OTHER.sign(canonical_bytes(signed))
    payload = encode({"signed": signed, "sig": base64.b64encode(forged_sig).decode()})
    message = decode_message(payload)
    assert message.header.kid == KEY.kid
    with pytest.raises(MessageError) as info:
        message.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE
    with pytest.raises(MessageError) as info:
        message.verify(OTHER.verifying)
    assert info.value.reason is RejectReason.KEY_MISMATCH


def test_signature_transplanted_from_another_message() -> None:
    donor = sign(SAMPLES["order"], seq=SEQ + 1)
    obj = with_at(wire_obj(MESSAGES["order"]), ("sig",), base64.b64encode(donor.signature).decode())
    message = decode_message(encode(obj))
    with pytest.raises(MessageError) as info:
        message.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


_TAMPER_CASES: list[tuple[str, JsonPath, Callable[[Any], Any]]] = [
    ("order", ("signed", "market"), lambda v: v + "x"),
    ("order", ("signed", "interval"), lambda v: v + 900),
    ("order", ("signed", "agent"), lambda v: "h2"),
    ("order", ("signed", "seq"), lambda v: v + 1),
    ("order", ("signed", "expires"), lambda v: v + 1),
    ("order", ("signed", "body", "side"), lambda v: "buy"),
    ("order", ("signed", "body", "quantity_wh"), lambda v: v - 1),
    ("order", ("signed", "body", "price_micro_per_kwh"), lambda v: v + 1),
    ("reading", ("signed", "body", "meter_time"), lambda v: v + 1),
    ("reading", ("signed", "body", "import_wh"), lambda v: v + 1),
    ("reading", ("signed", "body", "export_wh"), lambda v: v - 1),
    ("reading", ("signed", "body", "pv_wh"), lambda v: v + 1),
    ("reading", ("signed", "body", "power_w"), lambda v: -v),
    ("forecast", ("signed", "body", "start"), lambda v: v + 900),
    ("forecast", ("signed", "body", "interval_s"), lambda v: 3_600),
    ("forecast", ("signed", "body", "demand_wh"), lambda v: [v[1], v[0], *v[2:]]),
    ("forecast", ("signed", "body", "pv_wh", 2), lambda v: v + 1),
    ("forecast", ("signed", "body", "model"), lambda v: "naive"),
    ("forecast", ("signed", "body", "fallback"), lambda v: "naive"),
    ("forecast", ("signed", "body", "demand_p10_wh", 0), lambda v: v + 1),
    ("forecast", ("signed", "body", "demand_p90_wh", 0), lambda v: v + 1),
    ("forecast", ("signed", "body", "pv_p10_wh", 2), lambda v: v + 1),
    ("forecast", ("signed", "body", "pv_p90_wh", 2), lambda v: v + 1),
    ("forecast", ("signed", "body", "version"), lambda v: "2"),
    ("forecast", ("signed", "body", "issued_s"), lambda v: v + 1),
    ("forecast", ("signed", "body", "trained_on", "tree_size"), lambda v: v + 1),
    ("forecast", ("signed", "body", "trained_on"), lambda v: None),
    ("forecast", ("signed", "body", "trained_on", "root"), lambda v: "ef" * 32),
    ("health", ("signed", "body", "state"), lambda v: "degraded"),
    ("health", ("signed", "body", "started_s"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "households"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "readings_verified"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "readings_ignored"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "logged_readings"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "logged_refused"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "forecasts_published"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "fits"), lambda v: v + 1),
    ("health", ("signed", "body", "counters", "fit_failures"), lambda v: v + 1),
    ("health", ("signed", "body", "trained_on", "tree_size"), lambda v: v + 1),
    ("health", ("signed", "body", "trained_on", "root"), lambda v: "ef" * 32),
    ("health", ("signed", "body", "last_refit_s"), lambda v: None),
    ("announcement", ("signed", "body", "phase"), lambda v: "closed"),
    ("announcement", ("signed", "body", "interval_s"), lambda v: 1_800),
    ("announcement", ("signed", "body", "retail_micro_per_kwh"), lambda v: v + 1),
    ("announcement", ("signed", "body", "feed_in_micro_per_kwh"), lambda v: v + 1),
    ("announcement", ("signed", "body", "price_micro_per_kwh"), lambda v: None),
    ("announcement", ("signed", "body", "volume_wh"), lambda v: 0),
    ("announcement", ("signed", "body", "tree_size"), lambda v: v + 1),
    ("announcement", ("signed", "body", "root"), lambda v: "cd" + v[2:]),
    ("trades", ("signed", "body", "trades"), lambda v: v[::-1]),
    ("trades", ("signed", "body", "trades"), lambda v: v[:1]),
    ("trades", ("signed", "body", "trades", 0, "buyer"), lambda v: "h4"),
    ("trades", ("signed", "body", "trades", 0, "seller"), lambda v: "h4"),
    ("trades", ("signed", "body", "trades", 1, "quantity_wh"), lambda v: v * 2),
    ("trades", ("signed", "body", "trades", 1, "price_micro_per_kwh"), lambda v: 1),
    ("rejection", ("signed", "body", "ref"), lambda v: "1f" + v[2:]),
    ("rejection", ("signed", "body", "ref_seq"), lambda v: None),
    ("rejection", ("signed", "body", "reason"), lambda v: "late"),
    ("rejection", ("signed", "body", "detail"), lambda v: v + "."),
]


@pytest.mark.parametrize(
    ("kind", "path", "change"),
    _TAMPER_CASES,
    ids=[f"{kind}-{'.'.join(map(str, path[1:]))}" for kind, path, _ in _TAMPER_CASES],
)
def test_tampered_field_fails_verification(
    kind: str, path: JsonPath, change: Callable[[Any], Any]
) -> None:
    original = MESSAGES[kind]
    obj = wire_obj(original)
    tampered = decode_message(encode(with_at(obj, path, change(get_at(obj, path)))))
    assert tampered.signed_bytes != original.signed_bytes
    assert tampered.signature == original.signature
    with pytest.raises(MessageError) as info:
        tampered.verify(KEY.verifying)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


def _field_names(obj: Any) -> set[str]:
    """Every object key anywhere inside ``obj``."""
    if isinstance(obj, dict):
        return set(obj).union(*(_field_names(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_field_names(v) for v in obj))
    return set()


def test_tamper_cases_cover_every_signed_field() -> None:
    """Each kind's body fields, and every header field but domain and kid, is tampered with.

    (A changed kid is key_mismatch, a changed domain a schema error: both tested above.)
    """
    tampered = {
        (kind, name)
        for kind, path, _ in _TAMPER_CASES
        for name in path[1:]
        if isinstance(name, str)
    }
    for kind in SAMPLES:
        for name in _field_names(wire_obj(MESSAGES[kind])["signed"]["body"]):
            assert (kind, name) in tampered, (kind, name)
    header = set(wire_obj(MESSAGES["order"])["signed"]) - {"domain", "kid", "body"}
    assert {("order", name) for name in header} <= tampered
