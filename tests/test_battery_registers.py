"""Battery registers in readings: on the wire, and what the forecaster learns from them."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.agents.battery import BatteryMode, BatterySpec
from wattmesh.agents.battery_meter import BatteryMeter
from wattmesh.agents.meter import MarketClock
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import ReadingBody, decode_message, sign_message
from wattmesh.forecasting.service import demand_and_pv

KEY = SigningKey.generate()
INTERVAL = 1_700_000_100


def _wire(body: ReadingBody) -> bytes:
    return sign_message(
        KEY, body, market="m", interval=INTERVAL, agent="h1", seq=1, expires=INTERVAL + 900
    ).to_wire()


def test_battery_registers_round_trip_and_are_absent_without_a_battery() -> None:
    with_battery = ReadingBody(INTERVAL, 10, 20, 30, -4, battery_in_wh=5, battery_out_wh=6)
    decoded = decode_message(_wire(with_battery))
    decoded.verify(KEY.verifying)
    assert decoded.body_as(ReadingBody) == with_battery
    plain = ReadingBody(INTERVAL, 10, 20, 30, -4)
    assert "battery" not in json.dumps(plain.to_json())
    assert decode_message(_wire(plain)).body_as(ReadingBody) == plain


def test_one_battery_register_alone_is_refused() -> None:
    with pytest.raises(ValueError, match="go together"):
        ReadingBody(INTERVAL, 10, 20, 30, 0, battery_in_wh=5)
    wire = json.loads(_wire(ReadingBody(INTERVAL, 10, 20, 30, 0, 5, 6)))
    del wire["signed"]["body"]["battery_out_wh"]
    with pytest.raises(MessageError, match="battery_out_wh") as caught:
        decode_message(json.dumps(wire).encode())
    assert caught.value.reason is RejectReason.SCHEMA


def test_demand_excludes_battery_flows() -> None:
    last = ReadingBody(0, 100, 50, 200, 0, battery_in_wh=1_000, battery_out_wh=2_000)
    # 300 Wh PV, 400 Wh charged, 0 Wh imported, 0 exported: demand 300 - 400 + 100 out.
    now = ReadingBody(900, 100, 50, 500, 0, battery_in_wh=1_400, battery_out_wh=2_100)
    assert demand_and_pv(last, now) == (0, 300)
    now = ReadingBody(900, 400, 50, 500, 0, battery_in_wh=1_400, battery_out_wh=2_100)
    assert demand_and_pv(last, now) == (300, 300)
    plain = ReadingBody(900, 400, 50, 500, 0)
    assert demand_and_pv(last, plain) is None  # the battery vanished: no baseline
    backwards = ReadingBody(900, 400, 50, 500, 0, battery_in_wh=999, battery_out_wh=2_100)
    assert demand_and_pv(last, backwards) is None


PROFILES = st.integers(min_value=1, max_value=24).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=0, max_value=3_000), min_size=n, max_size=n),
        st.lists(st.integers(min_value=0, max_value=3_000), min_size=n, max_size=n),
        st.lists(st.sampled_from(BatteryMode), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(
    PROFILES,
    st.integers(min_value=500, max_value=10_000),
    st.integers(min_value=0, max_value=5_000),
    st.integers(min_value=1, max_value=1000),
)
async def test_the_forecaster_learns_true_demand_from_a_battery_household(
    profiles: tuple[list[int], list[int], list[BatteryMode]],
    capacity: int,
    power: int,
    round_trip: int,
) -> None:
    demand, pv, modes = profiles
    battery = BatterySpec(capacity, power, power, round_trip_permille=round_trip)
    clock = MarketClock(INTERVAL)
    meter = BatteryMeter(
        start=INTERVAL, interval_s=900, demand_wh=demand, pv_wh=pv, battery=battery, clock=clock
    )
    readings = []
    for k in range(len(demand) + 1):
        clock.set(INTERVAL + k * 900)
        r = await meter.read()
        readings.append(
            ReadingBody(
                r.time,
                r.import_wh,
                r.export_wh,
                r.pv_wh,
                r.power_w,
                r.battery_in_wh,
                r.battery_out_wh,
            )
        )
        if k < len(demand):
            meter.command(INTERVAL + k * 900, modes[k])
    learnt = [demand_and_pv(a, b) for a, b in pairwise(readings)]
    assert learnt == list(zip(demand, pv, strict=True))
