"""``wattmesh ledger run``'s summary on the bus and its /metrics, against its log lines.

A real ``ledger run`` process (2 s intervals), real Mosquitto, SQLite; the test's
households answer every announcement, one with an extra forged order per interval (a
``bad_signature`` rejection each time). Each interval's log line must be matched by a
signed, retained ``summary`` on ``market/summary`` and by the counters at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ledgerrunkit import SUMMARY, LedgerProcess, answering_households, write_market
from wattmesh.broker.messages import SummaryBody, decode_message
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig

pytestmark = pytest.mark.slow

TIMEOUT_S = 30.0
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), TIMEOUT_S)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _reasons(line: re.Match[str]) -> dict[str, int]:
    pairs = (part.rsplit(" ", 1) for part in (line["reasons"] or "").split(", ") if part)
    return {reason: int(n) for reason, n in pairs}


def _summary_lines(lines: list[str]) -> list[re.Match[str]]:
    found = []
    for line in lines:
        message = line.partition("wattmesh.ledger.operator: ")[2]
        if message and (match := SUMMARY.fullmatch(message)):
            found.append(match)
    return found


def _assert_same(body: SummaryBody, line: re.Match[str]) -> None:
    price = None if line["price"] == "-" else int(line["price"])
    assert (body.orders, body.readings, body.households) == (
        int(line["orders"]),
        int(line["readings"]),
        int(line["households"]),
    )
    assert (body.trades, body.volume_wh, body.price_micro_per_kwh) == (
        int(line["trades"]),
        int(line["volume"]),
        price,
    )
    assert body.tree_size == int(line["size"]) and body.root.startswith(line["root"])
    assert body.rejections == _reasons(line) and body.redeliveries == int(line["redelivered"])


async def test_each_interval_is_summarised_on_the_bus_and_counted_at_metrics(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    market = write_market(tmp_path / "market", db_url=db_url, broker=mosquitto)
    port = _free_port()
    with market.config.open("a", encoding="utf-8") as toml:
        toml.write(f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n')
    topics, operator = market.topics, market.operator.verifying
    watch = Transport(
        TransportConfig(address=mosquitto, client_id=f"{topics.market_id}-watch"),
        subscriptions=[(topics.summary, 1)],
    )
    async with watch, answering_households(market, mosquitto, 10) as households:
        await asyncio.wait_for(watch.wait_connected(), TIMEOUT_S)
        households.forger = "h002"  # one forged order per interval: bad_signature 1
        ledger = await LedgerProcess.start(market.config)
        try:
            await ledger.until(f"metrics on http://127.0.0.1:{port}/metrics")
            lines = [await ledger.summary(), await ledger.summary()]
            status, text = await _get(port, "/metrics")
            assert status == 200
            metrics = _samples(text.decode())
            closed = int(metrics["wattmesh_ledger_intervals_closed_total", ()])
            assert closed >= 2
            while len(lines) < closed:  # the counters follow the lines, never lead them
                lines.append(await ledger.summary())
            lines = lines[:closed]
            # The counters are the lines' figures added up.
            rejected: dict[str, int] = {}
            for line in lines:
                for reason, n in _reasons(line).items():
                    rejected[reason] = rejected.get(reason, 0) + n
            assert rejected == {"bad_signature": closed}
            for reason, n in rejected.items():
                key = ("wattmesh_ledger_rejections_total", (("reason", reason),))
                assert metrics[key] == n
            for name, group in (
                ("trades", "trades"),
                ("orders", "orders"),
                ("readings", "readings"),
                ("traded_volume_wh", "volume"),
                ("redeliveries", "redelivered"),
            ):
                total = sum(int(line[group]) for line in lines)
                assert metrics[f"wattmesh_ledger_{name}_total", ()] == total, name
            assert metrics["wattmesh_ledger_tree_size", ()] == int(lines[-1]["size"])
            assert metrics["wattmesh_ledger_last_closed_interval", ()] == int(lines[-1]["interval"])
            assert metrics["wattmesh_ledger_gate_seconds_count", ()] == closed
            assert metrics["wattmesh_ledger_close_seconds_count", ()] == closed
            logged = sum(int(line[k]) for line in lines for k in ("orders", "readings"))
            assert metrics["wattmesh_ledger_messages_received_total", ()] >= logged + closed
            assert (await _get(port, "/other"))[0] == 404
            # Every line's summary is on the bus, signed by the operator.
            seen: dict[int, SummaryBody] = {}
            async with asyncio.timeout(TIMEOUT_S):
                async for message in watch.messages():
                    signed = decode_message(message.payload)
                    signed.verify(operator)
                    body = signed.body_as(SummaryBody)
                    assert body.interval == signed.header.interval
                    seen[body.interval] = body
                    if all(int(line["interval"]) in seen for line in lines):
                        break
            for line in lines:
                _assert_same(seen[int(line["interval"])], line)
            await ledger.stop(20)
        finally:
            await ledger.kill()
    # Retained: a newcomer gets the summary of the last interval logged.
    last = _summary_lines(ledger.lines)[-1]
    newcomer = Transport(
        TransportConfig(address=mosquitto, client_id=f"{topics.market_id}-late"),
        subscriptions=[(topics.summary, 1)],
    )
    async with newcomer:
        retained = await asyncio.wait_for(anext(newcomer.messages()), TIMEOUT_S)
    assert retained.retain
    signed = decode_message(retained.payload)
    signed.verify(operator)
    assert signed.header.interval == int(last["interval"])
    _assert_same(signed.body_as(SummaryBody), last)
    with pytest.raises(ConnectionRefusedError):  # the metrics server went with the process
        await _get(port, "/metrics")


async def test_the_dashboard_shows_the_rejections_the_ledger_run_publishes(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    """``ledger run`` and ``dashboard serve --db --broker`` as processes: the bus summary's
    rejections reach a browser's WebSocket and the overview, as the log line says them."""
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    market = write_market(tmp_path / "market", db_url=db_url, broker=mosquitto)
    async with answering_households(market, mosquitto, 10) as households:
        households.forger = "h002"
        ledger = await LedgerProcess.start(market.config)
        dashboard = None
        try:
            await ledger.until("leader of market")  # its database exists
            dashboard = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "wattmesh.cli", "dashboard", "serve", "--port", "0"),
                *("--db", db_url, "--broker", mosquitto.url),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert dashboard.stdout is not None
            line = (await asyncio.wait_for(dashboard.stdout.readline(), TIMEOUT_S)).decode()
            assert line.startswith("dashboard: http://"), line
            url = line.removeprefix("dashboard: ").strip()
            async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws") as socket:
                async with asyncio.timeout(TIMEOUT_S):
                    async for frame in socket:
                        event = json.loads(frame.data)
                        if event["type"] == "rejections":
                            break
                assert event["counts"] == {"bad_signature": 1}
                interval = event["interval"]
                while int((logged := await ledger.summary())["interval"]) < interval:
                    pass
                assert int(logged["interval"]) == interval and _reasons(logged) == event["counts"]
                async with http.get(url + "api/overview") as response:
                    shown = (await response.json())["rejections"]
                assert {"interval": interval, "reason": "bad_signature", "count": 1} in shown
            dashboard.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(dashboard.communicate(), TIMEOUT_S)
            assert dashboard.returncode == 0, err.decode()
            await ledger.stop(20)
        finally:
            if dashboard is not None and dashboard.returncode is None:
                dashboard.kill()
                await dashboard.wait()
            await ledger.kill()


async def test_a_metrics_port_in_use_stops_the_ledger_with_exit_2(
    tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    market = write_market(tmp_path / "market", db_url=db_url, broker=mosquitto)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with market.config.open("a", encoding="utf-8") as toml:
            toml.write(f"[metrics]\nport = {port}\n")
        ledger = await LedgerProcess.start(market.config)
        try:
            log = await ledger.rest()
            assert await asyncio.wait_for(ledger.process.wait(), TIMEOUT_S) == 2
        finally:
            await ledger.kill()
    assert "Traceback" not in log
    assert log.splitlines()[-1] == (
        f"wattmesh: error: metrics: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
