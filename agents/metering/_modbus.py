"""Modbus TCP and RTU energy meters through pymodbus (the ``modbus`` extra).

The meter's registers come from a :class:`~agents.metering.modbus_maps.RegisterMap`;
registers in one table that lie close together are fetched in one request. Meters
like the Eastron SDM series have no clock, so the reading's time is the system
clock (UTC epoch seconds) when the registers were read. Times in seconds (``_s``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from wattmesh.agents.meter import Clock, MeterReading, system_clock
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.metering.modbus_maps import (
    MAX_REGISTERS_PER_READ,
    Register,
    RegisterMap,
    Table,
)

ModbusClient = AsyncModbusTcpClient | AsyncModbusSerialClient


@dataclass(frozen=True)
class _Block:
    table: Table
    start: int
    count: int


def plan_reads(registers: tuple[Register, ...]) -> dict[Register, tuple[_Block, int]]:
    """Group registers into as few reads as possible: register -> (block, offset)."""
    by_table: dict[Table, list[Register]] = defaultdict(list)
    for register in registers:
        by_table[register.table].append(register)
    plan: dict[Register, tuple[_Block, int]] = {}
    for table, members in by_table.items():
        members.sort(key=lambda r: r.address)
        groups: list[list[Register]] = [[members[0]]]
        for register in members[1:]:
            if (
                register.address + register.type.words - groups[-1][0].address
                > MAX_REGISTERS_PER_READ
            ):
                groups.append([register])
            else:
                groups[-1].append(register)
        for group in groups:
            start = group[0].address
            block = _Block(table, start, max(r.address + r.type.words for r in group) - start)
            plan.update({r: (block, r.address - start) for r in group})
    return plan


class ModbusMeter:
    """One Modbus meter; use ``async with`` (connects, and closes at the end)."""

    def __init__(
        self,
        name: str,
        client: ModbusClient,
        register_map: RegisterMap,
        *,
        unit: int = 1,
        clock: Clock = system_clock,
    ) -> None:
        if not 0 <= unit <= 247:
            raise ValueError(f"Modbus unit id must be 0..247, got {unit}")
        self.name = name
        self.register_map = register_map
        self._client = client
        self._unit = unit
        self._clock = clock
        self._plan = plan_reads(register_map.registers)
        self._lock = asyncio.Lock()  # one request at a time on a shared bus

    async def __aenter__(self) -> Self:
        await self._client.connect()  # pymodbus keeps reconnecting on its own
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.close()

    async def read(self) -> MeterReading:
        async with self._lock:
            if not self._client.connected and not await self._client.connect():
                raise MeterError(f"{self.name}: cannot connect")
            now = self._clock()
            words: dict[_Block, list[int]] = {}
            for block, _offset in self._plan.values():
                if block not in words:
                    words[block] = await self._fetch(block)
        m = self.register_map

        def value(register: Register) -> int:
            block, offset = self._plan[register]
            raw = words[block][offset : offset + register.type.words]
            return register.value(raw, m.word_order)

        import_wh, export_wh = value(m.import_wh), value(m.export_wh)
        if import_wh < 0 or export_wh < 0:
            raise MeterError(f"{self.name}: negative energy register ({import_wh}, {export_wh})")
        return MeterReading(
            time=now, import_wh=import_wh, export_wh=export_wh, pv_wh=0, power_w=value(m.power_w)
        )

    async def _fetch(self, block: _Block) -> list[int]:
        read = (
            self._client.read_input_registers
            if block.table is Table.INPUT
            else self._client.read_holding_registers
        )
        try:
            response = await read(block.start, count=block.count, device_id=self._unit)
        except ModbusException as exc:
            raise MeterError(f"{self.name}: {exc}") from exc
        if response.isError():
            raise MeterError(
                f"{self.name}: unit {self._unit} refused {block.table.value} registers "
                f"{block.start}..{block.start + block.count - 1}: {response}"
            )
        registers = list(response.registers)
        if len(registers) < block.count:
            raise MeterError(f"{self.name}: short response ({len(registers)} of {block.count})")
        return registers[: block.count]


def tcp_client(host: str, port: int, *, timeout_s: float = 3.0) -> AsyncModbusTcpClient:
    return AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=1)


def rtu_client(
    device: str, *, baud: int, parity: str = "N", stopbits: int = 1, timeout_s: float = 1.0
) -> AsyncModbusSerialClient:
    return AsyncModbusSerialClient(
        device, baudrate=baud, parity=parity, stopbits=stopbits, timeout=timeout_s, retries=1
    )
