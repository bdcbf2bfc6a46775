"""Modbus meters against a real pymodbus TCP server; register maps as data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tty
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
import pytest_asyncio
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from wattmesh.agents.metering._modbus import ModbusMeter, rtu_client, tcp_client
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.metering.modbus_maps import (
    RegisterType,
    builtin_maps,
    decode,
    load_map,
    parse_map,
    scale_exactly,
)
from wattmesh.broker.mosquitto import free_port


def float32_words(value: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


def input_registers(values: dict[int, list[int]], size: int = 0x50) -> list[int]:
    words = [0] * size
    for address, chunk in values.items():
        words[address : address + len(chunk)] = chunk
    return words


class ModbusSim:
    """A pymodbus TCP server for unit 1; fill ``tables`` before ``start()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.tables: dict[str, list[int]] = {"input": [0] * 0x50, "holding": [0] * 0x50}
        self._servers: list[ModbusTcpServer] = []

    def _device(self) -> SimDevice:
        return SimDevice(
            id=1,
            simdata=(
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=False, datatype=DataType.BITS)],
                [SimData(0, values=self.tables["holding"], datatype=DataType.REGISTERS)],
                [SimData(0, values=self.tables["input"], datatype=DataType.REGISTERS)],
            ),
        )

    async def start(self) -> None:
        server = ModbusTcpServer(self._device(), address=("127.0.0.1", self.port))
        await server.serve_forever(background=True)
        self._servers.append(server)

    async def start_rtu(self, device: str, baud: int) -> None:
        server = ModbusSerialServer(self._device(), port=device, baudrate=baud)
        await server.serve_forever(background=True)
        self._servers.append(server)

    async def stop(self) -> None:
        for server in self._servers:
            await server.shutdown()


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[ModbusSim]:
    server = ModbusSim()
    yield server
    await server.stop()


async def test_sdm630_reading_is_exact_integer_wh_and_w(sim: ModbusSim) -> None:
    sim.tables["input"][:] = input_registers(
        {
            0x34: float32_words(-2345.25),  # total system power, W (exporting)
            0x48: float32_words(12345.678),  # import kWh: float32 holds 12345.677734375
            0x4A: float32_words(1234.5),  # export kWh
        }
    )
    await sim.start()
    meter = ModbusMeter(
        "sdm630", tcp_client("127.0.0.1", sim.port), load_map("sdm630"), clock=lambda: 1_764_600_000
    )
    async with meter:
        reading = await meter.read()
    assert reading.import_wh == 12_345_678
    assert reading.export_wh == 1_234_500
    assert reading.power_w == -2345
    assert reading.time == 1_764_600_000 and reading.pv_wh == 0


async def test_sdm120_single_phase_map_reads_its_own_power_register(sim: ModbusSim) -> None:
    sim.tables["input"][:] = input_registers(
        {0x0C: float32_words(812.0), 0x48: float32_words(3.25), 0x4A: float32_words(0.0)}
    )
    await sim.start()
    async with ModbusMeter(
        "sdm120", tcp_client("127.0.0.1", sim.port), load_map("sdm120")
    ) as meter:
        reading = await meter.read()
    assert (reading.import_wh, reading.export_wh, reading.power_w) == (3250, 0, 812)


async def test_custom_map_with_integer_holding_registers(sim: ModbusSim, tmp_path: Path) -> None:
    # uint64 in units of 0.01 kWh, words little-endian; int32 power in 0.1 W
    import_raw = 123_456_789
    words = list(struct.unpack(">HHHH", struct.pack(">Q", import_raw)))[::-1]
    power = list(struct.unpack(">HH", struct.pack(">i", -15)))[::-1]
    sim.tables["holding"][:] = input_registers({0x10: words, 0x14: [0, 0, 0, 7][::-1], 0x20: power})
    await sim.start()
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\ndescription = "test meter"\nword_order = "little"\n'
        '[import_wh]\ntable = "holding"\naddress = 0x10\ntype = "uint64"\nscale = "10"\n'
        '[export_wh]\ntable = "holding"\naddress = 0x14\ntype = "uint64"\nscale = "10"\n'
        '[power_w]\ntable = "holding"\naddress = 0x20\ntype = "int32"\nscale = "0.1"\n',
        encoding="utf-8",
    )
    async with ModbusMeter("mine", tcp_client("127.0.0.1", sim.port), load_map(str(path))) as meter:
        reading = await meter.read()
    assert reading.import_wh == 1_234_567_890
    assert reading.export_wh == 70
    assert reading.power_w == -2  # -1.5 W rounds half to even


@contextlib.contextmanager
def null_modem() -> Iterator[tuple[str, str]]:
    """Two pseudo-terminals wired together like an RS485 pair: yields their device paths."""
    loop = asyncio.get_running_loop()
    (ctrl_a, dev_a), (ctrl_b, dev_b) = os.openpty(), os.openpty()
    for dev in (dev_a, dev_b):
        tty.setraw(dev)

    def forward(source: int, sink: int) -> None:
        with contextlib.suppress(OSError):
            os.write(sink, os.read(source, 4096))

    loop.add_reader(ctrl_a, forward, ctrl_a, ctrl_b)
    loop.add_reader(ctrl_b, forward, ctrl_b, ctrl_a)
    try:
        yield os.ttyname(dev_a), os.ttyname(dev_b)
    finally:
        loop.remove_reader(ctrl_a)
        loop.remove_reader(ctrl_b)
        for fd in (ctrl_a, dev_a, ctrl_b, dev_b):
            os.close(fd)


async def test_sdm120_over_modbus_rtu_on_a_serial_line(sim: ModbusSim) -> None:
    sim.tables["input"][:] = input_registers(
        {0x0C: float32_words(-640.5), 0x48: float32_words(7.125), 0x4A: float32_words(1.5)}
    )
    with null_modem() as (meter_side, agent_side):
        await sim.start_rtu(meter_side, 9600)
        client = rtu_client(agent_side, baud=9600, timeout_s=2.0)
        async with ModbusMeter("rtu", client, load_map("sdm120")) as meter:
            reading = await meter.read()
        await sim.stop()
    assert (reading.import_wh, reading.export_wh, reading.power_w) == (7125, 1500, -640)


async def test_a_unit_that_is_not_there_is_a_meter_error(sim: ModbusSim) -> None:
    await sim.start()
    meter = ModbusMeter(
        "sdm630", tcp_client("127.0.0.1", sim.port, timeout_s=0.5), load_map("sdm630"), unit=7
    )
    async with meter:
        with pytest.raises(MeterError, match="sdm630"):
            await meter.read()


async def test_no_server_is_a_meter_error() -> None:
    meter = ModbusMeter(
        "gone", tcp_client("127.0.0.1", free_port(), timeout_s=0.3), load_map("sdm630")
    )
    async with meter:
        with pytest.raises(MeterError, match="gone: cannot connect"):
            await meter.read()


def test_builtin_maps_cover_a_three_phase_and_a_single_phase_meter() -> None:
    assert {"sdm630", "sdm120", "sdm72"} <= set(builtin_maps())
    for name in builtin_maps():
        assert load_map(name).name == name


def test_unknown_and_malformed_maps_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(MeterError, match="unknown register map 'abb'; built in: sdm120"):
        load_map("abb")
    with pytest.raises(MeterError, match=r"import_wh\.colour: Extra inputs are not permitted"):
        parse_map(
            load_map_text("sdm630").replace(
                'type = "float32"', 'type = "float32"\ncolour = "red"', 1
            ),
            "x",
        )
    with pytest.raises(MeterError, match=r"power_w\.scale: Value error, scale must be"):
        parse_map(load_map_text("sdm630").replace('scale = "1"\n', 'scale = "0"\n'), "x")


def load_map_text(name: str) -> str:
    return (Path(__file__).parents[1] / "agents" / "metering" / "maps" / f"{name}.toml").read_text()


def test_decoding_and_scaling_are_exact() -> None:
    assert decode([0x3F80, 0x0000], RegisterType.FLOAT32, "big") == 1.0
    assert decode([0x0000, 0x3F80], RegisterType.FLOAT32, "little") == 1.0
    assert decode([0xFFFF], RegisterType.INT16, "big") == -1
    assert scale_exactly(0.1, Fraction(1000)) == 100  # 0.1000000000000000055... * 1000
    assert scale_exactly(2.5, Fraction(1)) == 2 and scale_exactly(3.5, Fraction(1)) == 4
    with pytest.raises(MeterError):
        scale_exactly(float("nan"), Fraction(1))
    with pytest.raises(MeterError):
        decode([1], RegisterType.FLOAT32, "big")


def test_reads_are_grouped_per_table_within_125_registers() -> None:
    from wattmesh.agents.metering._modbus import plan_reads
    from wattmesh.agents.metering.modbus_maps import Register, Table

    near = Register(Table.INPUT, 0x34, RegisterType.FLOAT32, Fraction(1))
    near2 = Register(Table.INPUT, 0x48, RegisterType.FLOAT32, Fraction(1000))
    far = Register(Table.INPUT, 0x34 + 125, RegisterType.FLOAT32, Fraction(1000))
    holding = Register(Table.HOLDING, 0x34, RegisterType.UINT64, Fraction(10))
    plan = plan_reads((near, near2, far, holding))
    assert plan[near][0] == plan[near2][0] and plan[near2][1] == 0x48 - 0x34
    assert plan[near][0].count == 0x48 + 2 - 0x34
    assert plan[far][0] != plan[near][0] and plan[far][1] == 0
    assert plan[holding][0].table is Table.HOLDING and plan[holding][0].count == 4
