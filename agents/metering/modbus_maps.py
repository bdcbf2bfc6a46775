"""Modbus register maps, kept as data (``maps/*.toml``), and exact register decoding.

A map names where a meter keeps three values and how to turn the raw registers into
wattmesh's units::

    name = "sdm630"
    description = "Eastron SDM630 three-phase meter"
    word_order = "big"            # optional: "big" (default) or "little"

    [import_wh]                   # also [export_wh] and [power_w]
    table = "input"               # "input" (function 4) or "holding" (function 3)
    address = 0x0048              # 0-based protocol address (30073 -> 0x48)
    type = "float32"              # int16 uint16 int32 uint32 int64 uint64 float32 float64
    scale = "1000"                # decimal string: target unit per raw unit (kWh -> Wh)

The value is ``raw * scale`` computed exactly (the float's exact binary value
times the decimal scale, as a fraction) and rounded half to even to an integer.
So a float32 register is converted without any further error; its own precision
is the limit (a float32 kWh register resolves 1 Wh up to 8,388 kWh and 8 Wh around
100,000 kWh). NaN and infinities are refused. Bytes within a register are always
big-endian (the Modbus rule); ``word_order`` orders the 16-bit registers of a value.
"""

from __future__ import annotations

import math
import struct
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wattmesh.agents.metering.errors import MeterError

__all__ = ["load_map"]

MAX_REGISTERS_PER_READ: Final = 125  # Modbus limit for function 3/4


class RegisterType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def words(self) -> int:
        """Number of 16-bit registers."""
        return struct.calcsize(_STRUCT[self]) // 2


_STRUCT: Final = {
    RegisterType.INT16: ">h",
    RegisterType.UINT16: ">H",
    RegisterType.INT32: ">i",
    RegisterType.UINT32: ">I",
    RegisterType.INT64: ">q",
    RegisterType.UINT64: ">Q",
    RegisterType.FLOAT32: ">f",
    RegisterType.FLOAT64: ">d",
}


class Table(StrEnum):
    INPUT = "input"
    HOLDING = "holding"


class _Register(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    table: Table
    address: int = Field(ge=0, le=0xFFFF)
    type: RegisterType
    scale: str

    @field_validator("scale")
    @classmethod
    def _decimal(cls, value: str) -> str:
        try:
            parsed = Decimal(value)
        except ArithmeticError:
            raise ValueError(f"scale {value!r} is not a decimal number") from None
        if not parsed.is_finite() or parsed == 0:
            raise ValueError("scale must be a finite, non-zero decimal")
        return value


class _Map(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    description: str
    word_order: Literal["big", "little"] = "big"
    import_wh: _Register
    export_wh: _Register
    power_w: _Register


@dataclass(frozen=True)
class Register:
    """Where one value lives and how to scale it to integer Wh or W."""

    table: Table
    address: int
    type: RegisterType
    scale: Fraction

    def value(self, registers: list[int], word_order: Literal["big", "little"]) -> int:
        """The integer value (Wh or W) of this register's raw 16-bit words."""
        return scale_exactly(decode(registers, self.type, word_order), self.scale)


@dataclass(frozen=True)
class RegisterMap:
    name: str
    description: str
    word_order: Literal["big", "little"]
    import_wh: Register
    export_wh: Register
    power_w: Register

    @property
    def registers(self) -> tuple[Register, Register, Register]:
        return (self.import_wh, self.export_wh, self.power_w)


def decode(
    registers: list[int], kind: RegisterType, word_order: Literal["big", "little"]
) -> int | float:
    """Raw 16-bit words to the number they encode."""
    if len(registers) != kind.words or any(not 0 <= r <= 0xFFFF for r in registers):
        raise MeterError(f"{kind.value} needs {kind.words} registers of 16 bits, got {registers}")
    words = registers if word_order == "big" else list(reversed(registers))
    data = b"".join(word.to_bytes(2, "big") for word in words)
    value: int | float = struct.unpack(_STRUCT[kind], data)[0]
    return value


def scale_exactly(raw: int | float, scale: Fraction) -> int:
    """``raw * scale`` rounded half to even, computed without floating-point error."""
    if isinstance(raw, float) and not math.isfinite(raw):
        raise MeterError(f"meter sent {raw}")
    return round(Fraction(raw) * scale)


def _convert(register: _Register) -> Register:
    return Register(
        table=register.table,
        address=register.address,
        type=register.type,
        scale=Fraction(Decimal(register.scale)),
    )


def parse_map(text: str, source: str) -> RegisterMap:
    """A register map from TOML text; MeterError naming every problem."""
    try:
        model = _Map.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise MeterError(f"register map {source} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise MeterError(f"register map {source}: {problems}") from exc
    return RegisterMap(
        name=model.name,
        description=model.description,
        word_order=model.word_order,
        import_wh=_convert(model.import_wh),
        export_wh=_convert(model.export_wh),
        power_w=_convert(model.power_w),
    )


def builtin_maps() -> list[str]:
    """Names of the maps shipped in ``agents/metering/maps``."""
    folder = resources.files("wattmesh.agents.metering") / "maps"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_map(name_or_path: str) -> RegisterMap:
    """A built-in map by name (``sdm630``) or a map file by path (``./my-meter.toml``)."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        try:
            return parse_map(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise MeterError(f"cannot read register map {path}: {exc.strerror}") from exc
    if name_or_path not in builtin_maps():
        known = ", ".join(builtin_maps())
        raise MeterError(f"unknown register map {name_or_path!r}; built in: {known}")
    resource = resources.files("wattmesh.agents.metering") / "maps" / f"{name_or_path}.toml"
    register_map = parse_map(resource.read_text(encoding="utf-8"), name_or_path)
    if register_map.name != name_or_path:
        raise MeterError(f"map file {name_or_path}.toml names itself {register_map.name!r}")
    return register_map
