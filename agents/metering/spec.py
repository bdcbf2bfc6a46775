"""Meter specifications, as typed on the command line (pure parsing, no I/O).

=====================================================  =================================
``p1-serial:/dev/ttyUSB0[?version=5&baud=115200]``     P1 port on a serial device
``p1-tcp:host:port[?version=5]``                       P1 via ser2net / a Wi-Fi dongle
``p1-file:PATH[?version=5]``                           replay a captured P1 stream
``modbus-tcp:host:port[/unit]?map=NAME``               Modbus TCP meter (unit default 1)
``modbus-rtu:/dev/ttyUSB0?map=NAME[&baud=9600]``       Modbus RTU meter on RS485
``[&unit=1&parity=N&stopbits=1]``
=====================================================  =================================

``version`` is a P1 dialect (``4``, ``5``, ``5B``, ``5L``, ``5S``); ``map`` a built-in
register map (``sdm630``, ``sdm120``, ``sdm72``) or the path of a map file.
IPv6 hosts go in brackets (``p1-tcp:[fd00::2]:2001``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from wattmesh.agents.metering.p1 import P1Version
from wattmesh.broker.errors import AgentError, ConfigError

__all__ = [
    "MeterSpec",
    "ModbusRtuSpec",
    "ModbusTcpSpec",
    "P1FileSpec",
    "P1SerialSpec",
    "P1TcpSpec",
    "describe",
    "parse_meter_spec",
]

_MAX_PORT: Final = 65535
_PARITIES: Final = ("N", "E", "O")


@dataclass(frozen=True)
class P1SerialSpec:
    device: str
    version: P1Version = P1Version.DSMR5
    baud: int | None = None  # None: the dialect's standard (115200 for DSMR 4 and 5)


@dataclass(frozen=True)
class P1TcpSpec:
    host: str
    port: int
    version: P1Version = P1Version.DSMR5


@dataclass(frozen=True)
class P1FileSpec:
    path: str
    version: P1Version = P1Version.DSMR5


@dataclass(frozen=True)
class ModbusTcpSpec:
    host: str
    port: int
    map: str
    unit: int = 1


@dataclass(frozen=True)
class ModbusRtuSpec:
    device: str
    map: str
    unit: int = 1
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1


MeterSpec = P1SerialSpec | P1TcpSpec | P1FileSpec | ModbusTcpSpec | ModbusRtuSpec

KINDS: Final = ("p1-serial", "p1-tcp", "p1-file", "modbus-tcp", "modbus-rtu")


class _Bad(AgentError, ValueError):
    pass


def parse_meter_spec(text: str) -> MeterSpec:
    """Parse a meter specification; ConfigError with the reason and expected form."""
    kind, sep, rest = text.strip().partition(":")
    if not sep or kind not in KINDS:
        raise ConfigError(
            f"invalid meter {text!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    target, _, query = rest.partition("?")
    try:
        params = _params(query)
        spec = _PARSERS[kind](target, params)
        if params:
            raise _Bad(f"unknown option(s) {', '.join(sorted(params))}")
    except _Bad as exc:
        raise ConfigError(f"invalid meter {text!r}: {exc}; expected {_FORMS[kind]}") from None
    return spec


def _params(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise _Bad(f"malformed options {query!r}") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise _Bad(f"option {key!r} given twice")
        params[key] = value
    return params


def _int(params: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = params.pop(key, None)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _Bad(f"{key} must be an integer in {low}..{high}, got {raw!r}")
    return int(raw)


def _version(params: dict[str, str]) -> P1Version:
    raw = params.pop("version", P1Version.DSMR5.value)
    try:
        return P1Version(raw)
    except ValueError:
        known = ", ".join(v.value for v in P1Version)
        raise _Bad(f"unknown P1 version {raw!r} (known: {known})") from None


def _host_port(target: str) -> tuple[str, int, str]:
    """``host:port[/rest]`` -> (host, port, rest)."""
    address, _, rest = target.partition("/")
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise _Bad("put an IPv6 address in brackets")
    if not sep or not host:
        raise _Bad("missing host or port")
    if not port.isdigit() or not 1 <= int(port) <= _MAX_PORT:
        raise _Bad(f"port must be an integer in 1..{_MAX_PORT}, got {port!r}")
    return host, int(port), rest


def _path(target: str, what: str) -> str:
    if not target:
        raise _Bad(f"missing {what}")
    return target


def _map(params: dict[str, str]) -> str:
    name = params.pop("map", "")
    if not name:
        raise _Bad("map=NAME is required (e.g. map=sdm630)")
    return name


def _p1_serial(target: str, params: dict[str, str]) -> MeterSpec:
    device = _path(target, "serial device")
    version = _version(params)
    baud = None if "baud" not in params else _int(params, "baud", 0, 300, 4_000_000)
    return P1SerialSpec(device, version, baud)


def _p1_tcp(target: str, params: dict[str, str]) -> MeterSpec:
    host, port, rest = _host_port(target)
    if rest:
        raise _Bad("no path allowed after host:port")
    return P1TcpSpec(host, port, _version(params))


def _p1_file(target: str, params: dict[str, str]) -> MeterSpec:
    return P1FileSpec(_path(target, "file path"), _version(params))


def _modbus_tcp(target: str, params: dict[str, str]) -> MeterSpec:
    host, port, rest = _host_port(target)
    if rest and (not rest.isdigit() or not 0 <= int(rest) <= 247):
        raise _Bad(f"unit must be an integer in 0..247, got {rest!r}")
    unit = int(rest) if rest else 1
    return ModbusTcpSpec(host, port, _map(params), unit)


def _modbus_rtu(target: str, params: dict[str, str]) -> MeterSpec:
    device = _path(target, "serial device")
    register_map = _map(params)
    unit = _int(params, "unit", 1, 0, 247)
    baud = _int(params, "baud", 9600, 300, 4_000_000)
    parity = params.pop("parity", "N").upper()
    if parity not in _PARITIES:
        raise _Bad(f"parity must be N, E or O, got {parity!r}")
    stopbits = _int(params, "stopbits", 1, 1, 2)
    return ModbusRtuSpec(device, register_map, unit, baud, parity, stopbits)


_PARSERS: Final = {
    "p1-serial": _p1_serial,
    "p1-tcp": _p1_tcp,
    "p1-file": _p1_file,
    "modbus-tcp": _modbus_tcp,
    "modbus-rtu": _modbus_rtu,
}

_FORMS: Final = {
    "p1-serial": "p1-serial:/dev/ttyUSB0[?version=5&baud=115200]",
    "p1-tcp": "p1-tcp:host:port[?version=5]",
    "p1-file": "p1-file:PATH[?version=5]",
    "modbus-tcp": "modbus-tcp:host:port[/unit]?map=NAME",
    "modbus-rtu": "modbus-rtu:/dev/ttyUSB0?map=NAME[&baud=9600&unit=1&parity=N&stopbits=1]",
}


def describe(spec: MeterSpec) -> str:
    """The spec back as text (for logs and messages)."""
    match spec:
        case P1SerialSpec():
            return f"p1-serial:{spec.device}"
        case P1TcpSpec():
            return f"p1-tcp:{_host(spec.host)}:{spec.port}"
        case P1FileSpec():
            return f"p1-file:{spec.path}"
        case ModbusTcpSpec():
            return f"modbus-tcp:{_host(spec.host)}:{spec.port}/{spec.unit}?map={spec.map}"
        case ModbusRtuSpec():
            return f"modbus-rtu:{spec.device}?map={spec.map}&unit={spec.unit}&baud={spec.baud}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
