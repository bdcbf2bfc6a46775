"""Turns a :mod:`~agents.metering.spec` into a running meter (the I/O edge).

Modbus meters need the ``modbus`` extra (pymodbus); it is imported only for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from wattmesh.agents.meter import Meter
from wattmesh.agents.metering._p1_sources import (
    P1ReplayMeter,
    P1StreamMeter,
    serial_connector,
    tcp_connector,
)
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.metering.spec import (
    MeterSpec,
    ModbusRtuSpec,
    ModbusTcpSpec,
    P1FileSpec,
    P1SerialSpec,
    P1TcpSpec,
    describe,
)

__all__ = ["open_meter"]


@contextlib.asynccontextmanager
async def open_meter(
    spec: MeterSpec, *, base: Path | None = None, timeout_s: float = 30.0
) -> AsyncIterator[Meter]:
    """The meter ``spec`` names, running for the duration of the block.

    ``base`` resolves relative file paths (a config file's folder); ``timeout_s``
    bounds how long one ``read()`` waits for a telegram or a Modbus response.
    """
    name = describe(spec)
    match spec:
        case P1FileSpec():
            yield P1ReplayMeter(_resolve(spec.path, base), spec.version)
        case P1TcpSpec():
            async with P1StreamMeter(
                name, tcp_connector(spec.host, spec.port), spec.version, timeout_s=timeout_s
            ) as m:
                yield m
        case P1SerialSpec():
            connect = serial_connector(spec.device, spec.version, spec.baud)
            async with P1StreamMeter(name, connect, spec.version, timeout_s=timeout_s) as m:
                yield m
        case ModbusTcpSpec() | ModbusRtuSpec():
            async with _modbus(spec, name, base, timeout_s) as m:
                yield m


@contextlib.asynccontextmanager
async def _modbus(
    spec: ModbusTcpSpec | ModbusRtuSpec, name: str, base: Path | None, timeout_s: float
) -> AsyncIterator[Meter]:
    try:
        from wattmesh.agents.metering._modbus import (
            ModbusClient,
            ModbusMeter,
            rtu_client,
            tcp_client,
        )
    except ImportError as exc:
        raise MeterError(
            f"{name} needs pymodbus: pip install 'wattmesh[agent,modbus]' ({exc})"
        ) from exc
    from wattmesh.agents.metering.modbus_maps import load_map

    map_ref = spec.map
    if map_ref.endswith(".toml") or "/" in map_ref:
        map_ref = str(_resolve(map_ref, base))
    register_map = load_map(map_ref)
    client: ModbusClient
    if isinstance(spec, ModbusTcpSpec):
        client = tcp_client(spec.host, spec.port, timeout_s=min(timeout_s, 10.0))
    else:
        client = rtu_client(
            spec.device,
            baud=spec.baud,
            parity=spec.parity,
            stopbits=spec.stopbits,
            timeout_s=min(timeout_s, 10.0),
        )
    async with ModbusMeter(name, client, register_map, unit=spec.unit) as meter:
        yield meter


def _resolve(path: str, base: Path | None) -> Path:
    candidate = Path(path)
    return candidate if base is None or candidate.is_absolute() else base / candidate
