"""The dashboard in a real Chromium over a simulated neighbourhood's ledger.

A short simulation (3 households, 1 day, over the session's Mosquitto) makes a real
ledger; the dashboard serves it on a free port; Chromium (Debian's, driven by
Playwright) opens every page and checks what a user would: every chart plots data, the
proof checker says valid for a real trade and invalid for tampered answers, a household
logs in with its own key and sees only its own page, and the overview follows the
market live as intervals close. Screenshots of each page go to out/screenshots/.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route

from tests.browserkit import chromium, screenshots  # noqa: F401 (a fixture)
from wattmesh.broker.forecast_bodies import HEALTH_COUNTERS, HealthBody
from wattmesh.broker.messages import Signer
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.dashboard.app import DashboardSettings, serve
from wattmesh.dashboard.auth import login_link
from wattmesh.sim.simkeys import simulation_key
from wattmesh.sim.simulate import SimulationConfig, run_simulation

pytestmark = pytest.mark.slow

SEED = 7
TOKEN = "operator-token-for-the-browser-test"
VIEWPORT = {"width": 1280, "height": 800}


def _config(workdir: Path, broker: BrokerAddress) -> SimulationConfig:
    return SimulationConfig(
        households=3, days=1, seed=SEED, pv_share=0.5, forecaster="naive", history_days=7,
        broker=broker.url, workdir=workdir, gate_timeout_s=30.0,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _dashboard(ledger_url: str, broker: BrokerAddress | None = None) -> AsyncIterator[str]:
    """The dashboard served over ``ledger_url`` on a free port (listening to the
    simulation's bus when ``broker`` is given); yields its base URL."""
    transport = (
        None if broker is None else TransportConfig(address=broker, client_id="dash-browser")
    )
    settings = DashboardSettings(
        ledger_url=ledger_url, broker=transport, operator_token=TOKEN,
        forecaster_key=simulation_key(SEED, "forecaster").verifying,
        host="127.0.0.1", port=0, sync_every_s=0.05,
    )  # fmt: skip
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(settings, stop=stop, ready=lambda url: ready.done() or ready.set_result(url))
    )
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _show(page: Page, base: str, route: str) -> None:
    """Open ``#/route`` and wait until that page has rendered."""
    target = f"{base}#/{route}"
    if page.url == target:
        await page.reload()  # the same hash would not render the page again
    else:
        await page.goto(target)
    await page.wait_for_function(
        "(r) => { const m = document.getElementById('view');"
        " return m.dataset.route === r && m.dataset.ready === '1'; }",
        arg=f"#/{route}",
    )


async def _charts(page: Page) -> dict[str, dict[str, Any]]:
    """Each chart on the page: its exposed series and point count."""
    found = await page.eval_on_selector_all(
        "[data-chart]",
        "els => els.map(e => [e.dataset.chart, e.dataset.series, Number(e.dataset.points)])",
    )
    return {name: {**json.loads(series), "points": points} for name, series, points in found}


async def _api(page: Page, base: str, path: str) -> Any:
    """GET an endpoint with the page's cookies."""
    response = await page.request.get(base + path)
    assert response.ok, (path, response.status)
    return await response.json()


async def _shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=folder / f"dashboard-{name}.png")


async def _proof_result(page: Page, base: str, idx: int) -> tuple[str, str]:
    await _show(page, base, f"ledger/proof/{idx}")
    verdict = await page.get_attribute("#proof-result", "data-result")
    reason = await page.inner_text("#proof-result p")
    return verdict or "", reason


def _tampered(change: Callable[[dict[str, Any]], None]) -> Callable[[Route], Any]:
    async def handle(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        change(body)
        await route.fulfill(response=response, json=body)

    return handle


def _flip_entry(body: dict[str, Any]) -> None:
    entry = bytearray(base64.b64decode(body["entry_b64"]))
    at = entry.index(b'"quantity_wh":') + len(b'"quantity_wh":')
    entry[at] = ord("9") if entry[at] != ord("9") else ord("8")
    body["entry_b64"] = base64.b64encode(bytes(entry)).decode()
    del body["leaf_hash_hex"]  # a consistent lie: no leaf hash to contradict the bytes


def _flip_path(body: dict[str, Any]) -> None:
    first = body["path_hex"][0]
    body["path_hex"][0] = ("0" if first[0] != "0" else "1") + first[1:]


def _flip_signature(body: dict[str, Any]) -> None:
    der = bytearray(base64.b64decode(body["signature_der_b64"]))
    der[-1] ^= 0x01
    body["signature_der_b64"] = base64.b64encode(bytes(der)).decode()


async def test_pages_charts_proofs_and_logins(
    tmp_path: Path,
    mosquitto: BrokerAddress,
    screenshots: Path,  # noqa: F811
) -> None:
    report = await run_simulation(_config(tmp_path, mosquitto))
    assert report["verified"] is True and report["trades"] > 0
    async with _dashboard(report["db"]) as base, chromium() as browser:
        page = await browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(  # a blocked inline script or style would show here
            "console",
            lambda m: "Content Security Policy" in m.text and errors.append(m.text),
        )
        shot = lambda name: _shot(page, screenshots, name)  # noqa: E731

        await _show(page, base, "overview")
        charts = await _charts(page)
        assert charts["price"]["points"] > 0 and charts["volume"]["points"] > 0
        overview = await _api(page, base, "api/overview")
        root = await page.inner_text("#ov-root")
        assert root == overview["ledger"]["root_hex"] and len(root) >= 16
        assert int(root, 16) >= 0
        assert await page.inner_text("#ov-trades") == f"{report['trades']:,}"
        await shot("overview")

        await _show(page, base, "market")
        market = await _api(page, base, "api/market")
        charts = await _charts(page)
        assert charts["price"]["data"][0] == market["intervals"]
        assert charts["price"]["data"][1] == [
            None if p is None else p / 1e6 for p in market["price_micro_per_kwh"]
        ]
        assert charts["volume"]["data"][1] == [wh / 1000 for wh in market["p2p_wh"]]
        await shot("market")
        trades = (await _api(page, base, "api/ledger/trades?limit=200"))["trades"]
        per_interval = Counter(t["interval"] for t in trades)
        traded = max(per_interval, key=lambda t: (per_interval[t], t))  # the busiest
        await _show(page, base, f"market/{traded}")
        book = (await _charts(page))["book"]
        assert book["points"] > 0
        detail = await _api(page, base, f"api/market/intervals/{traded}")
        clearing = [p for p in book["data"][3] if p is not None]
        assert clearing == [detail["clearing"]["price_micro_per_kwh"] / 1e6]
        await page.locator("#interval-detail").scroll_into_view_if_needed()
        await shot("interval")

        await _show(page, base, "ledger")
        await shot("ledger")
        await page.click(f'a.btn[data-idx="{trades[0]["idx"]}"]')
        await page.wait_for_function("() => document.getElementById('proof-result') !== null")
        assert await page.get_attribute("#proof-result", "data-result") == "valid"
        await shot("proof")
        for change, why in (
            (_flip_entry, "does not lead to the checkpoint's root"),
            (_flip_path, "does not lead to the checkpoint's root"),
            (_flip_signature, "signature does not verify"),
        ):
            await page.route("**/api/ledger/entries/*/proof", _tampered(change))
            verdict, reason = await _proof_result(page, base, trades[1]["idx"])
            await page.unroute("**/api/ledger/entries/*/proof")
            assert (verdict, why in reason) == ("invalid", True), (change.__name__, reason)
        await shot("proof-invalid")
        idx = trades[1]["idx"]
        size = (await _api(page, base, f"api/ledger/entries/{idx}/proof"))["tree_size"]
        assert await _proof_result(page, base, idx) == (
            "valid",
            f"entry {idx} is in the log of {size} entries whose checkpoint the operator signed",
        )

        await _show(page, base, "health")
        assert await page.inner_text("#health-status") == "ok"
        await shot("health")

        await _show(page, base, "households")
        assert await page.get_attribute(".forbidden", "data-status") == "401"
        await _show(page, base, "login")
        await shot("login")

        # A household logs in with its own key and sees its own page only.
        link = await asyncio.to_thread(login_link, base, simulation_key(SEED, "h001"), "h001")
        await page.goto(link)
        await page.wait_for_function(
            "() => { const m = document.getElementById('view');"
            " return m.dataset.view === 'household' && m.dataset.ready === '1'; }"
        )
        assert page.url.endswith("#/households/h001")
        assert await page.get_attribute("#session", "data-role") == "household"
        charts = await _charts(page)
        assert charts["household-energy"]["points"] > 0 and charts["forecast"]["points"] > 0
        mine = await _api(page, base, "api/households/h001")
        assert charts["household-energy"]["data"][0] == mine["series"]["intervals"]
        csv_href = await page.get_attribute("#statement-csv", "href")
        csv = await page.request.get(base.rstrip("/") + (csv_href or ""))
        assert csv.ok and (await csv.text()).splitlines()[-1].startswith("total,")
        await shot("household")
        await _show(page, base, "households")
        rows = await page.eval_on_selector_all(
            "#households-table tbody tr", "rs => rs.map(r => r.dataset.household)"
        )
        assert rows == ["h001"]
        await _show(page, base, "households/h002")
        assert await page.get_attribute(".forbidden", "data-status") == "403"
        assert await page.locator("[data-chart]").count() == 0
        await shot("household-forbidden")

        # The operator logs in with the token and sees every household.
        await page.click("#logout")
        await page.wait_for_function(
            "() => document.getElementById('session').dataset.role === 'anonymous'"
        )
        await _show(page, base, "login")
        await page.fill("#operator-token", TOKEN)
        await page.click("#operator-form button[type=submit]")
        await page.wait_for_function(
            "() => document.getElementById('session').dataset.role === 'operator'"
        )
        await _show(page, base, "households")
        await page.click('th[data-key="bill_micro"] button')
        rows = await page.eval_on_selector_all(
            "#households-table tbody tr", "rs => rs.map(r => r.dataset.household)"
        )
        bills = {h["agent"]: h["community_micro"] for h in report["per_household"]}
        assert rows == sorted(bills, key=lambda h: bills[h])
        await shot("households")
        assert errors == []


async def test_the_overview_follows_the_market_live(
    tmp_path: Path,
    mosquitto: BrokerAddress,
    screenshots: Path,  # noqa: F811
) -> None:
    """The simulation runs in a thread of its own and waits after its first interval
    until the page is open; then every interval it closes reaches the open page."""
    first_closed, page_open = threading.Event(), threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 1:
            first_closed.set()
            page_open.wait(timeout=60)

    config = _config(tmp_path, mosquitto)
    run = asyncio.create_task(
        asyncio.to_thread(asyncio.run, run_simulation(config, progress=progress))
    )
    try:
        assert await asyncio.to_thread(first_closed.wait, 60)
        ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
        async with _dashboard(ledger_url, mosquitto) as base, chromium() as browser:
            page = await browser.new_page(viewport=VIEWPORT)
            await _show(page, base, "overview")
            await page.wait_for_function(
                "() => document.getElementById('live').dataset.state === 'live'"
            )
            await page.evaluate("() => { window.notReloaded = true; }")
            before = await page.get_attribute("#ov-last", "data-interval")
            points = int(await page.get_attribute("#ov-volume", "data-points") or 0)
            page_open.set()
            report = await run
            last = report["series"]["intervals"][-1]
            assert before == "" or int(before) < last
            # The day's last interval reaches the open page over the WebSocket.
            await page.wait_for_function(
                "(t) => Number(document.getElementById('ov-last').dataset.interval) >= t",
                arg=last,
            )
            await page.wait_for_function(
                "(t) => JSON.parse(document.getElementById('ov-volume').dataset.series)"
                ".data[0].slice(-1)[0] >= t",
                arg=last,
            )
            # The day's last interval settles in the simulation's closing step, which
            # closes no trading interval: an event brings its settled grid figures too.
            series = report["series"]
            await page.wait_for_function(
                "([imp, exp]) => { const d = JSON.parse(document.getElementById('ov-volume')"
                ".dataset.series).data; return d[2].slice(-1)[0] === imp"
                " && d[3].slice(-1)[0] === exp; }",
                arg=[series["grid_import_wh"][-1] / 1000, series["grid_export_wh"][-1] / 1000],
            )
            assert await page.evaluate("() => window.notReloaded === true")
            # What the live updates drew is what the API says now, grid figures settled.
            shown = (await _charts(page))["volume"]["data"]
            market = await _api(page, base, f"api/market?start={shown[0][0]}")
            assert shown[0] == market["intervals"]
            api = [
                [wh / 1000 for wh in market[k]]
                for k in ("p2p_wh", "grid_import_wh", "grid_export_wh")
            ]
            stale = [
                (t, [col[n] for col in shown[1:]], [col[n] for col in api])
                for n, t in enumerate(shown[0])
                if [col[n] for col in shown[1:]] != [col[n] for col in api]
            ]
            assert stale == []
            assert int(await page.get_attribute("#ov-volume", "data-points") or 0) > points
            assert int(await page.get_attribute("#live", "data-events") or 0) > 0
            await _shot(page, screenshots, "overview-live")

            # The forecasts the dashboard heard on the bus beside what the meter said.
            link = await asyncio.to_thread(login_link, base, simulation_key(SEED, "h002"), "h002")
            await page.goto(link)
            await page.wait_for_function(
                "() => { const m = document.getElementById('view');"
                " return m.dataset.view === 'household' && m.dataset.ready === '1'; }"
            )
            forecast = (await _charts(page))["forecast"]
            high, median, low, actual = forecast["data"][1:]
            assert forecast["labels"][1:] == [
                "forecast 90 %", "forecast net demand", "forecast 10 %", "actual net demand",
            ]  # fmt: skip
            assert sum(v is not None for v in median) > 48  # most of the day
            assert sum(v is not None for v in actual) == 96
            # The 10-90 % band: drawn wherever a forecast is, around its median.
            banded = [(lo, mid, hi) for lo, mid, hi in zip(low, median, high, strict=True)
                      if mid is not None]  # fmt: skip
            assert len(banded) == sum(v is not None for v in median)
            assert all(lo <= mid <= hi for lo, mid, hi in banded)
            assert sum(hi - lo for lo, _mid, hi in banded) > 0
            mine = await _api(page, base, "api/households/h002")
            model = mine["forecast"]["model"]
            assert model in await page.inner_text("#hh-forecast-model")
            await _shot(page, screenshots, "household-forecast")

            # The neighbourhood: the sum of the household forecasts against the meters.
            await _show(page, base, "market")
            summed = (await _charts(page))["market-forecast"]
            assert summed["labels"][1:] == ["forecast (sum of households)", "metered"]
            assert sum(v is not None for v in summed["data"][1]) > 48
            assert sum(v is not None for v in summed["data"][2]) == len(summed["data"][0])
            assert int(await page.inner_text("#market-forecast-n")) > 0
            await page.locator("#market-forecast-note").scroll_into_view_if_needed()
            await _shot(page, screenshots, "market-forecast")

            # The forecasting service's signed health, as `forecast serve` publishes it.
            topics = Topics(config.market_id)
            counters = dict.fromkeys(HEALTH_COUNTERS, 0) | {"households": 3, "fits": 6}
            body = HealthBody("ok", last - 86_400, counters, None, last)
            signer = Signer(simulation_key(SEED, "forecaster"), config.market_id, "forecaster")
            signed = signer.sign(body, interval=last, seq=1, expires=0)
            await _show(page, base, "health")
            publisher = TransportConfig(address=mosquitto, client_id="browser-fc-health")
            async with Transport(publisher) as bus:
                await bus.wait_connected()
                await bus.publish(topics.forecaster_health, signed.to_wire(), retain=True)
            await page.wait_for_function(
                "() => document.getElementById('forecaster-state').textContent === 'ok'"
            )
            assert "fits" in await page.inner_text("#forecaster")
            await _shot(page, screenshots, "health-live")
            async with Transport(publisher) as bus:  # clear the retained message
                await bus.wait_connected()
                await bus.publish(topics.forecaster_health, b"", retain=True)
    finally:
        page_open.set()
        await asyncio.gather(run, return_exceptions=True)
    assert report["verified"] is True
