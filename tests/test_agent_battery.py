"""``[battery]`` in agent.toml: validation with TOML paths, and the agent process with a
simulated battery ordering by the battery strategy over a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_agent_config import _validate_cli, _write
from wattmesh.agents._battery_strategy import battery_order_for
from wattmesh.agents._strategy import LimitPricePolicy
from wattmesh.agents.battery import BatterySpec
from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.messages import (
    AnnouncementBody,
    Body,
    ForecastBody,
    OrderBody,
    Phase,
    Presence,
    ReadingBody,
    Side,
    StatusBody,
    decode_message,
    sign_message,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig
from wattmesh.config.agent_config import (
    BatterySettings,
    check_agent_config,
    check_agent_config_isolated,
    load_agent_config,
)

ROOT = Path(__file__).resolve().parents[1]
TOPICS = Topics("batm")
BATTERY = (
    '[battery]\ncontroller = "simulated"\ncapacity_wh = 10000\nmax_charge_w = 3600\n'
    "max_discharge_w = 6000\n"
)


def test_a_battery_reaches_the_agent_with_its_defaults(tmp_path: Path) -> None:
    config = load_agent_config(_write(tmp_path, BATTERY))
    assert config.battery == BatterySettings(
        spec=BatterySpec(
            capacity_wh=10_000, max_charge_w=3_600, max_discharge_w=6_000, round_trip_permille=900
        ),
        initial_soc_wh=0,
        controller="simulated",
    )
    assert load_agent_config(_write(tmp_path)).battery is None  # no [battery]: none


def test_every_battery_setting_reaches_the_agent(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        BATTERY + "round_trip_permille = 850\nmin_soc_wh = 500\ninitial_soc_wh = 4000\n",
    )
    settings = load_agent_config(path).battery
    assert settings is not None
    assert settings.spec == BatterySpec(10_000, 3_600, 6_000, 850, 500)
    assert settings.initial_soc_wh == 4_000
    # The battery starts at its floor unless told otherwise.
    floor = load_agent_config(_write(tmp_path, BATTERY + "min_soc_wh = 500\n")).battery
    assert floor is not None and floor.initial_soc_wh == 500
    result = _validate_cli(path)
    assert result.returncode == 0 and "ok (agent h001" in result.stdout


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[battery]\ncontroller = "modbus"\ncapacity_wh = 0\nmax_charge_w = -1\n'
            'max_discharge_w = "lots"\nround_trip_permille = 1001\nmin_soc_wh = -5\n'
            "round_trip_efficiency = 0.9\n",
            {
                "battery.controller": "Input should be 'simulated'",
                "battery.capacity_wh": "Input should be greater than or equal to 1",
                "battery.max_charge_w": "Input should be greater than or equal to 0",
                "battery.max_discharge_w": "Input should be a valid integer",
                "battery.round_trip_permille": "Input should be less than or equal to 1000",
                "battery.min_soc_wh": "Input should be greater than or equal to 0",
                "battery.round_trip_efficiency": "unknown key",
            },
        ),
        (
            "[battery]\ncapacity_wh = 10.5\nmax_charge_w = 1\nmax_discharge_w = 1\n"
            "round_trip_permille = 0\n",
            {
                "battery.controller": "Field required",
                "battery.capacity_wh": "Input should be a valid integer",
                "battery.round_trip_permille": "Input should be greater than or equal to 1",
            },
        ),
        (BATTERY + "min_soc_wh = 20000\n", {"battery.min_soc_wh": "20000 Wh is above"}),
        (
            BATTERY + "min_soc_wh = 500\ninitial_soc_wh = 100\n",
            {"battery.initial_soc_wh": "100 Wh is outside [min_soc_wh, capacity_wh]"},
        ),
        (
            BATTERY + "initial_soc_wh = 10001\n",
            {"battery.initial_soc_wh": "10001 Wh is outside [min_soc_wh, capacity_wh]"},
        ),
        (
            BATTERY + '[meter]\nkind = "p1-tcp"\nhost = "127.0.0.1"\nport = 2001\n',
            {
                "battery.controller": "a simulated battery runs in the replayed household",
            },
        ),
        (
            "battery = 5\n",
            {"battery": "Input should be a dictionary or an instance of BatterySection"},
        ),
    ],
)
def test_bad_battery_settings_are_listed_with_their_paths(
    tmp_path: Path, extra: str, expected: dict[str, str]
) -> None:
    if extra.startswith("battery = "):  # a top-level key must come before any table
        path = _write(tmp_path)
        path.write_text(extra + path.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        path = _write(tmp_path, extra)
    config, problems = check_agent_config(path)
    assert config is None
    assert len(problems) == len(expected), problems
    for where, message in expected.items():
        assert any(p.startswith(f"{where}: {message}") for p in problems), (where, problems)
    # The agent's own check (pydantic in a child process, sections back as JSON) agrees.
    assert check_agent_config_isolated(path) == (None, problems)


def test_the_isolated_check_carries_the_battery(tmp_path: Path) -> None:
    path = _write(tmp_path, BATTERY + "initial_soc_wh = 2000\n")
    isolated, here = check_agent_config_isolated(path), check_agent_config(path)
    assert isolated[0] is not None and here[0] is not None
    assert replace(isolated[0], key=here[0].key) == here[0]
    assert isolated[0].battery is not None and isolated[0].battery.initial_soc_wh == 2_000


def test_identifiers_and_home_assistant_names_are_checked_by_pattern(tmp_path: Path) -> None:
    path = _write(tmp_path, '[homeassistant]\nprefix = "a b"\ncurrency = "eur"\n')
    path.write_text(path.read_text(encoding="utf-8").replace('"h001"', '"h 001"'), "utf-8")
    problems = _problems_of(path)
    assert len(problems) == 3, problems
    for where in ("agent_id", "homeassistant.prefix", "homeassistant.currency"):
        assert any(p.startswith(f"{where}: String should match pattern '^") for p in problems)


def _problems_of(path: Path) -> list[str]:
    config, problems = check_agent_config(path)
    assert config is None
    return problems


# --- the agent process with a simulated battery ----------------------------------------

RETAIL, FEED_IN = 300_000, 80_000


def _signed(key: SigningKey, body: Body, interval: int, seq: int) -> bytes:
    return sign_message(
        key, body, market=TOPICS.market_id, interval=interval, agent="operator", seq=seq,
        expires=interval + 3600,
    ).to_wire()  # fmt: skip


def _upcoming(step_s: int, margin_s: int) -> int:
    """The first interval start at least ``margin_s`` from now: it can still be commanded."""
    return (int(time.time()) + margin_s) // step_s * step_s + step_s


class Household:
    """``wattmesh agent`` on a replay profile with a simulated ``[battery]``, watched."""

    def __init__(self, op: Transport, inbox: asyncio.Queue[Message], operator: SigningKey):
        self.op, self.inbox, self.operator = op, inbox, operator
        self.topic = TOPICS.household("h001")
        self._seq = 0

    async def next_on(self, suffix: str) -> Message:
        while True:
            message = await asyncio.wait_for(self.inbox.get(), 30)
            if message.topic == f"{self.topic}/{suffix}":
                return message

    async def interval(
        self, interval: int, step_s: int, forecast: tuple[int, int]
    ) -> tuple[ReadingBody, OrderBody]:
        """Announce ``interval``, answer its reading with ``forecast`` (demand, PV in Wh):
        the reading and the order the agent publishes."""
        self._seq += 2
        announced = AnnouncementBody(Phase.OPEN, step_s, RETAIL, FEED_IN)
        await self.op.publish(
            TOPICS.announce, _signed(self.operator, announced, interval, self._seq)
        )
        reading = decode_message((await self.next_on("reading")).payload)
        assert isinstance(reading.body, ReadingBody) and reading.header.interval == interval
        body = ForecastBody(interval, step_s, (forecast[0],), (forecast[1],), "test", None)
        await self.op.publish(
            TOPICS.forecast("h001"), _signed(self.operator, body, interval, self._seq + 1)
        )
        order = decode_message((await self.next_on("order")).payload)
        assert isinstance(order.body, OrderBody) and order.header.interval == interval
        return reading.body, order.body


def _is_online(payload: bytes) -> bool:
    """Whether a status payload is the household's signed ``online``."""
    return decode_message(payload).body_as(StatusBody).state is Presence.ONLINE


@contextlib.asynccontextmanager
async def running_household(
    mosquitto: BrokerAddress, folder: Path, profile: dict[str, object], battery: BatterySpec,
    initial_soc_wh: int,
) -> AsyncIterator[Household]:  # fmt: skip
    operator = write_key_pair(folder / "operator")
    write_key_pair(folder / "keys")
    (folder / "profile.json").write_text(json.dumps(profile), encoding="utf-8")
    config = folder / "agent.toml"
    config.write_text(
        f'agent_id = "h001"\nmarket_id = "{TOPICS.market_id}"\n'
        f'broker = "mqtt://{mosquitto.host}:{mosquitto.port}"\n'
        'key_file = "keys/private_key.pem"\nstate_dir = "state"\nforecast_timeout_s = 120\n'
        'forecaster_key_file = "operator/public_key.pem"\n'  # the stand-in signs with it
        "max_power_w = 1000000\n"  # 500 Wh in a 2 s interval: within 556 Wh
        '[meter]\nkind = "replay"\nfile = "profile.json"\n'
        f'[battery]\ncontroller = "simulated"\ncapacity_wh = {battery.capacity_wh}\n'
        f"max_charge_w = {battery.max_charge_w}\nmax_discharge_w = {battery.max_discharge_w}\n"
        f"round_trip_permille = {battery.round_trip_permille}\ninitial_soc_wh = {initial_soc_wh}\n",
        encoding="utf-8",
    )
    topic = TOPICS.household("h001")
    viewer = Transport(
        TransportConfig(address=mosquitto, client_id="bat-viewer"),
        subscriptions=[(f"{topic}/#", 1)],
    )
    inbox: asyncio.Queue[Message] = asyncio.Queue()

    async def collect() -> None:
        async for message in viewer.messages():
            inbox.put_nowait(message)

    async with viewer, Transport(TransportConfig(address=mosquitto, client_id="bat-op")) as op:
        await asyncio.wait_for(viewer.wait_connected(), 10)
        collector = asyncio.create_task(collect())
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wattmesh.cli", "agent", "--config", str(config),
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        household = Household(op, inbox, operator)
        try:
            while not _is_online((await household.next_on("status")).payload):
                pass
            yield household
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
        finally:
            collector.cancel()
            if process.returncode is None:
                process.kill()
                await process.wait()
            stderr = await process.stderr.read() if process.stderr else b""
            for retained in (f"{topic}/status", f"{topic}/diagnostics"):
                await op.publish(retained, b"", qos=1, retain=True)  # leave no retained state
        assert b"Traceback" not in stderr, stderr.decode()
        assert b"battery command refused" not in stderr, stderr.decode()


async def test_agent_process_with_a_simulated_battery_orders_by_the_strategy(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    # A replayed household in 60 s intervals around now, without demand or PV of its
    # own: the battery keeps its initial SoC, so every order depends on the forecast.
    step_s, soc_wh = 60, 2_000
    spec = BatterySpec(capacity_wh=10_000, max_charge_w=3_600, max_discharge_w=6_000)
    start = int(time.time()) // step_s * step_s - 2 * step_s
    profile = {"start": start, "interval_s": step_s, "demand_wh": [0] * 30, "pv_wh": [0] * 30}
    async with running_household(mosquitto, tmp_path, profile, spec, soc_wh) as household:
        first = _upcoming(step_s, margin_s=10)
        # A shortfall (covered from the battery up to its discharge limit), then a
        # surplus (stored up to the charge limit: a stored Wh is worth more than the ask).
        cases = [(first, 500, 0, Side.BUY, 400), (first + step_s, 0, 300, Side.SELL, 240)]
        for interval, demand, pv, side, quantity in cases:
            reading, order = await household.interval(interval, step_s, (demand, pv))
            # The battery's own registers travel with the reading.
            assert (reading.battery_in_wh, reading.battery_out_wh) == (0, 0)
            assert (
                order
                == battery_order_for(
                    demand_wh=demand,
                    pv_wh=pv,
                    soc_wh=soc_wh,
                    battery=spec,
                    interval_s=step_s,
                    retail_micro_per_kwh=RETAIL,
                    feed_in_micro_per_kwh=FEED_IN,
                    policy=LimitPricePolicy(),
                ).order
            )
            assert (order.side, order.quantity_wh) == (side, quantity)


async def test_the_battery_runs_the_interval_in_the_mode_the_agent_commanded(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    # A battery so lossy (10 % round trip) that storing surplus is worth less than
    # selling it: the agent commands SELL_SURPLUS, where a battery left to itself
    # would store it (its default, STORE_SURPLUS). 2 s intervals, so that the
    # household lives through the commanded one; its registers tell which mode ran.
    step_s, surplus_wh = 2, 500
    spec = BatterySpec(10_000, 3_600_000, 3_600_000, round_trip_permille=100)
    start = int(time.time()) // step_s * step_s - 10 * step_s
    pv = [0] * 200
    profile = {"start": start, "interval_s": step_s, "demand_wh": [0] * 200, "pv_wh": pv}
    interval = _upcoming(step_s, margin_s=8)
    pv[(interval - start) // step_s] = surplus_wh
    async with running_household(mosquitto, tmp_path, profile, spec, 0) as household:
        assert int(time.time()) < interval, "the agent took too long to start"
        _, order = await household.interval(interval, step_s, (0, surplus_wh))
        assert (order.side, order.quantity_wh) == (Side.SELL, surplus_wh)
        # The household's time is the wall clock: wait until the interval is over
        # (the simulated physics, not synchronisation between components).
        await asyncio.sleep(max(0.0, interval + step_s - time.time()))
        later = _upcoming(step_s, margin_s=0)
        reading, _ = await household.interval(later, step_s, (0, 0))
        assert (reading.battery_in_wh, reading.export_wh, reading.pv_wh) == (
            0,
            surplus_wh,
            surplus_wh,
        )
