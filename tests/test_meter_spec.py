"""Meter specifications: every kind parses, every mistake gets one clear reason."""

from __future__ import annotations

import pytest

from wattmesh.agents.metering.p1 import P1Version
from wattmesh.agents.metering.spec import (
    ModbusRtuSpec,
    ModbusTcpSpec,
    P1FileSpec,
    P1SerialSpec,
    P1TcpSpec,
    describe,
    parse_meter_spec,
)
from wattmesh.broker.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p1-serial:/dev/ttyUSB0", P1SerialSpec("/dev/ttyUSB0")),
        ("p1-serial:/dev/ttyAMA0?version=4", P1SerialSpec("/dev/ttyAMA0", P1Version.DSMR4)),
        ("p1-serial:/dev/ttyUSB0?baud=9600", P1SerialSpec("/dev/ttyUSB0", baud=9600)),
        ("p1-tcp:192.168.1.20:2001", P1TcpSpec("192.168.1.20", 2001)),
        ("p1-tcp:[fd00::2]:23?version=5B", P1TcpSpec("fd00::2", 23, P1Version.BELGIUM)),
        ("p1-file:captures/p1.txt", P1FileSpec("captures/p1.txt")),
        ("modbus-tcp:gw.local:502/3?map=sdm630", ModbusTcpSpec("gw.local", 502, "sdm630", 3)),
        ("modbus-tcp:10.0.0.5:502?map=sdm120", ModbusTcpSpec("10.0.0.5", 502, "sdm120", 1)),
        (
            "modbus-rtu:/dev/ttyUSB0?map=sdm120&baud=2400&unit=2&parity=e",
            ModbusRtuSpec("/dev/ttyUSB0", "sdm120", 2, 2400, "E", 1),
        ),
        ("modbus-rtu:/dev/ttyUSB1?map=./my.toml", ModbusRtuSpec("/dev/ttyUSB1", "./my.toml")),
    ],
)
def test_specs_parse(text: str, expected: object) -> None:
    assert parse_meter_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("serial:/dev/ttyUSB0", "unknown kind 'serial'; expected one of p1-serial"),
        ("/dev/ttyUSB0", "unknown kind"),
        ("p1-tcp:host", "missing host or port; expected p1-tcp:host:port"),
        ("p1-tcp:host:99999", "port must be an integer in 1..65535"),
        ("p1-tcp:fd00::2:23", "put an IPv6 address in brackets"),
        ("p1-tcp:host:23?version=6", "unknown P1 version '6'"),
        ("p1-tcp:host:23?speed=fast", "unknown option(s) speed"),
        ("p1-serial:", "missing serial device"),
        ("p1-file:", "missing file path"),
        ("modbus-tcp:host:502", "map=NAME is required"),
        ("modbus-tcp:host:502/300?map=sdm630", "unit must be an integer in 0..247"),
        ("modbus-rtu:/dev/ttyUSB0?map=sdm630&parity=X", "parity must be N, E or O"),
        ("modbus-rtu:/dev/ttyUSB0?map=sdm630&baud=fast", "baud must be an integer"),
        ("modbus-rtu:/dev/ttyUSB0?map=a&map=b", "option 'map' given twice"),
    ],
)
def test_bad_specs_name_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_meter_spec(text)
    message = str(info.value)
    assert reason in message and "\n" not in message


def test_describe_round_trips() -> None:
    for text in ("p1-tcp:[fd00::2]:23", "p1-serial:/dev/ttyUSB0", "modbus-tcp:h:502/3?map=sdm630"):
        spec = parse_meter_spec(text)
        assert parse_meter_spec(describe(spec)) == spec
