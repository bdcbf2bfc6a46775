"""``wattmesh meter read --meter SPEC [--json]``: one reading, to test the wiring.

Prints the meter's UTC time, the import and export registers (Wh) and the present
power (W, + import, - export). Exit 0 with a reading, 1 when the meter gives none
in time (with the reason), 2 for a malformed SPEC. Imports only agent modules.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

from wattmesh.agents.meter import MeterReading
from wattmesh.agents.metering.errors import MeterError
from wattmesh.agents.metering.open import open_meter
from wattmesh.agents.metering.spec import MeterSpec, describe, parse_meter_spec

EXIT_NO_READING = 1


async def read_once(spec: MeterSpec, timeout_s: float) -> MeterReading:
    async with open_meter(spec, timeout_s=timeout_s) as meter:
        return await meter.read()


def format_reading(name: str, reading: MeterReading, *, as_json: bool) -> str:
    when = datetime.fromtimestamp(reading.time, UTC).isoformat().replace("+00:00", "Z")
    fields = {
        "meter": name,
        "time": when,
        "meter_time": reading.time,
        "import_wh": reading.import_wh,
        "export_wh": reading.export_wh,
        "power_w": reading.power_w,
    }
    if as_json:
        return json.dumps(fields)
    return "\n".join(f"{key:<11}{value}" for key, value in fields.items())


def run_meter_read(spec_text: str, *, as_json: bool, timeout_s: float) -> int:
    spec = parse_meter_spec(spec_text)  # ConfigError -> exit 2 in wattmesh.cli
    try:
        reading = asyncio.run(read_once(spec, timeout_s))
    except MeterError as exc:
        print(f"wattmesh: no reading: {exc}", file=sys.stderr)
        return EXIT_NO_READING
    print(format_reading(describe(spec), reading, as_json=as_json))
    return 0
