"""The dashboard's HTTP and WebSocket server over a real simulated ledger and a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession, WSMsgType
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from tests.dashsimkit import (
    HOUSEHOLDS,
    MARKET,
    TOKEN,
    Client,
    SimLedger,
    Tail,
    check_shape,
    cut_last_interval,
    get_json,
    operator_cookie,
    session_cookie,
    simulate_ledger,
    started,
)
from wattmesh.broker.forecast_bodies import HEALTH_COUNTERS, HealthBody, TrainedOn
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import (
    AnnouncementBody,
    Phase,
    Presence,
    Signer,
    StatusBody,
    SummaryBody,
)
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.dashboard._routes import RUNTIME
from wattmesh.dashboard.app import CSP, DashboardSettings, serve
from wattmesh.dashboard.auth import COOKIE_NAME, LoginFailed, login_link
from wattmesh.ledger.statement import build_statement
from wattmesh.ledger.store import LedgerStore

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim(tmp_path_factory: pytest.TempPathFactory, mosquitto: BrokerAddress) -> SimLedger:
    return await simulate_ledger(tmp_path_factory.mktemp("dash-sim"), mosquitto)


def _settings(ledger: Path, tmp_path: Path, **overrides: Any) -> DashboardSettings:
    base: dict[str, Any] = {
        "ledger_url": f"sqlite:///{ledger}",
        "read_model_url": f"sqlite:///{tmp_path / 'read-model.db'}",
        "operator_token": TOKEN,
    }
    return DashboardSettings(**{**base, **overrides})


@pytest.fixture
async def client(sim: SimLedger, tmp_path: Path) -> AsyncIterator[Client]:
    client = await started(_settings(sim.path, tmp_path))
    try:
        yield client
    finally:
        await client.close()


async def _household_cookie(client: Client, sim: SimLedger, household: str) -> str:
    base = str(client.make_url("/"))
    link = await asyncio.to_thread(login_link, base, sim.key(household), household)
    response = await client.get(link.removeprefix(base.rstrip("/")), allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"/#/households/{household}"
    return session_cookie(response)


async def test_every_public_endpoint_answers_its_shape(client: Client, sim: SimLedger) -> None:
    overview = await get_json(client, "/api/overview")
    check_shape(overview, "Overview")
    assert overview["market_id"] == MARKET
    assert overview["currency"] == "EUR"  # the default
    assert overview["ledger"]["trades"] == sim.report["trades"]
    market = await get_json(client, "/api/market")
    check_shape(market, "Market")
    assert len({len(column) for column in market.values()}) == 1
    assert len(market["intervals"]) == sim.report["intervals"]
    trades = await get_json(client, "/api/ledger/trades?limit=5")
    check_shape(trades, "Trades")
    interval = trades["trades"][0]["interval"]
    detail = await get_json(client, f"/api/market/intervals/{interval}")
    check_shape(detail, "Interval")
    assert detail["trades"]
    checkpoints = await get_json(client, "/api/ledger/checkpoints?limit=3")
    check_shape(checkpoints, "Checkpoints")
    assert len(checkpoints["checkpoints"]) == 3
    proof = await get_json(client, f"/api/ledger/entries/{trades['trades'][0]['idx']}/proof")
    check_shape(proof, "Proof")
    health = await get_json(client, "/api/health")
    check_shape(health, "Health")
    assert health["status"] == "ok" and health["read_model"]["lag_entries"] == 0
    assert health["forecaster"]["state"] == "not configured"  # no broker to hear it on
    check_shape(await get_json(client, "/api/session"), "Session")
    document = await get_json(client, "/api/openapi.json")
    validate(document)


async def test_bad_requests_get_json_errors(client: Client) -> None:
    operator = await operator_cookie(client)
    for path, status in (
        ("/api/market/intervals/12345", 404),
        ("/api/market/intervals/soon", 400),
        ("/api/market?start=x", 400),
        ("/api/market?start=10&end=5", 400),
        ("/api/ledger/checkpoints?limit=-1", 400),
        ("/api/ledger/trades?interval=1.5", 400),
        ("/api/ledger/entries/999999/proof", 404),
        ("/api/households/h999", 404),
        ("/api/households/h999/statement", 404),
        ("/api/no-such-thing", 404),
    ):
        body = await get_json(client, path, status, cookie=operator)
        assert body["error"]["status"] == status
        assert "Traceback" not in json.dumps(body)
    response = await client.post("/api/overview")
    assert response.status == 405
    assert (await response.json())["error"]["status"] == 405
    response = await client.post("/api/login/challenge", data=b"{not json")
    assert response.status == 400
    assert (await response.json())["error"]["reason"] == "bad_request"


PERSONAL = (
    "/api/households/{h}",
    "/api/households/{h}/statement",
    "/api/households/{h}/statement.csv",
)


async def _personal_entry(client: Client, sim: SimLedger, household: str) -> int:
    """The index of one of ``household``'s readings in the log."""
    with sqlite3.connect(sim.path) as conn:
        (idx,) = conn.execute(
            "SELECT min(idx) FROM log_entry WHERE kind = 'reading' AND agent = ?", (household,)
        ).fetchone()
    return int(idx)


async def test_anonymous_sees_no_households_figures(client: Client, sim: SimLedger) -> None:
    await get_json(client, "/api/households", 401)
    for household in HOUSEHOLDS:
        for path in PERSONAL:
            await get_json(client, path.format(h=household), 401)
        idx = await _personal_entry(client, sim, household)
        await get_json(client, f"/api/ledger/entries/{idx}/proof", 401)
    overview = await get_json(client, "/api/overview")
    assert all("household" not in item for item in overview["anomalies"])


async def test_one_household_cannot_read_anothers_figures(client: Client, sim: SimLedger) -> None:
    mine = await _household_cookie(client, sim, "h001")
    assert await get_json(client, "/api/session", cookie=mine) == {
        "role": "household",
        "household": "h001",
        "currency": "EUR",  # the default; every page shows money in it
    }
    table = await get_json(client, "/api/households", cookie=mine)
    check_shape(table, "Households")
    assert [row["household"] for row in table["households"]] == ["h001"]
    for other in ("h002", "h003"):
        for path in PERSONAL:
            body = await get_json(client, path.format(h=other), 403, cookie=mine)
            assert other in body["error"]["message"] and "import_wh" not in json.dumps(body)
        idx = await _personal_entry(client, sim, other)
        await get_json(client, f"/api/ledger/entries/{idx}/proof", 403, cookie=mine)
    own = await get_json(client, "/api/households/h001", cookie=mine)
    check_shape(own, "Household")
    statement = await get_json(client, "/api/households/h001/statement", cookie=mine)
    assert statement["household"] == "h001" and statement["rows"]
    csv_text = await get_json(client, "/api/households/h001/statement.csv", cookie=mine)
    assert csv_text.splitlines()[-1].startswith("total")
    idx = await _personal_entry(client, sim, "h001")
    check_shape(await get_json(client, f"/api/ledger/entries/{idx}/proof", cookie=mine), "Proof")
    overview = await get_json(client, "/api/overview", cookie=mine)
    assert {a.get("household", "h001") for a in overview["anomalies"]} <= {"h001"}


async def test_the_operator_sees_every_household(client: Client) -> None:
    operator = await operator_cookie(client)
    table = await get_json(client, "/api/households", cookie=operator)
    assert sorted(row["household"] for row in table["households"]) == list(HOUSEHOLDS)
    for household in HOUSEHOLDS:
        for path in PERSONAL:
            await get_json(client, path.format(h=household), cookie=operator)
    response = await client.post("/api/login/operator", json={"token": TOKEN + "x"})
    assert response.status == 401 and COOKIE_NAME not in response.cookies
    response = await client.post("/api/logout", headers={"Cookie": f"{COOKIE_NAME}={operator}"})
    assert (await response.json())["role"] == "anonymous"


async def test_the_login_round_trip_with_a_real_key(client: Client, sim: SimLedger) -> None:
    base = str(client.make_url("/"))
    link = await asyncio.to_thread(login_link, base, sim.key("h002"), "h002")
    path = link.removeprefix(base.rstrip("/"))
    response = await client.get(path, allow_redirects=False)
    assert response.status == 303
    set_cookie = response.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in set_cookie
    session = await get_json(client, "/api/session", cookie=session_cookie(response))
    assert session == {"role": "household", "household": "h002", "currency": "EUR"}
    again = await client.get(path, allow_redirects=False)  # a ticket is single-use
    assert again.status == 401
    with pytest.raises(LoginFailed, match="401"):  # h001's key is not h002's
        await asyncio.to_thread(login_link, base, sim.key("h001"), "h002")
    with pytest.raises(LoginFailed, match="401"):
        await asyncio.to_thread(login_link, base, SigningKey.generate(), "h009")
    forged = await get_json(client, "/api/session", cookie=session_cookie(response)[:-3] + "AAA")
    assert forged["role"] == "anonymous"
    keys = client.app[RUNTIME].keys
    revoked = keys.pop("h002")  # as when the log folds h002's key revocation
    try:
        gone = await get_json(client, "/api/session", cookie=session_cookie(response))
        assert gone["role"] == "anonymous"
        await get_json(client, "/api/households/h002", 401, cookie=session_cookie(response))
    finally:
        keys["h002"] = revoked


async def test_static_files_and_metrics(client: Client) -> None:
    css = await client.get("/static/vendor/uPlot.min.css")
    assert css.status == 200 and css.headers["Content-Security-Policy"] == CSP
    index = await client.get("/")
    assert index.status == 200 and index.content_type == "text/html"
    assert index.headers["Content-Security-Policy"] == CSP
    page = await index.text()
    for script in ("/static/app.js", "/static/charts.js", "/static/proof.js"):
        assert script in page
        served = await client.get(script)
        assert served.status == 200 and "javascript" in served.content_type
        assert served.headers["X-Content-Type-Options"] == "nosniff"
    outside = await client.get(URL("/static/%2e%2e/app.py", encoded=True))
    assert outside.status in {403, 404}  # nothing outside static/
    assert "DashboardSettings" not in await outside.text()
    await get_json(client, "/api/overview")
    text = await get_json(client, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["wattmesh_dashboard_http_requests"]
    routes = {s.labels["route"] for s in requests.samples if s.name.endswith("_total")}
    assert "/api/overview" in routes


async def test_health_is_503_when_the_ledger_is_gone(sim: SimLedger, tmp_path: Path) -> None:
    ledger = sim.copy(tmp_path / "gone")
    client = await started(_settings(ledger, tmp_path))
    try:
        await get_json(client, "/api/health")
        ledger.unlink()
        health = await get_json(client, "/api/health", 503)
        assert health["ledger"]["ok"] is False and "no such file" in health["ledger"]["problem"]
        assert health["status"] == "degraded"
        ledger.write_bytes(b"this is not a database at all, " * 8)
        health = await get_json(client, "/api/health", 503)
        assert health["ledger"]["ok"] is False
        await get_json(client, "/api/overview")  # the read model still answers
    finally:
        await client.close()


async def test_a_ledger_that_appears_later_is_followed(sim: SimLedger, tmp_path: Path) -> None:
    """No ledger yet (the server started first): /health is 503 and the follower keeps
    trying; once the database is there, a health event says so and the figures come."""
    ledger = tmp_path / "later" / "ledger.db"
    ledger.parent.mkdir()
    client = await started(_settings(ledger, tmp_path, sync_every_s=0.05))
    try:
        health = await get_json(client, "/api/health", 503)
        assert "no such file" in health["ledger"]["problem"]
        overview = await get_json(client, "/api/overview")  # an empty read model answers
        assert overview["last"] is None and overview["ledger"]["trades"] == 0
        socket = await client.ws_connect("/ws")
        sim.copy(tmp_path / "staged").rename(ledger)  # whole, at once
        event = await _next_event(socket, "health")
        assert event == {"type": "health", "ledger": {"ok": True, "problem": None}}
        await socket.close()
        await get_json(client, "/api/health")
        overview = await get_json(client, "/api/overview")
        assert overview["ledger"]["trades"] == sim.report["trades"]
    finally:
        await client.close()


async def _rejected(client: Client, reason: str) -> float:
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wattmesh_dashboard_mqtt_rejected_total" and (
                sample.labels.get("reason") == reason
            ):
                return float(sample.value)
    return 0.0


async def _next_event(socket: Any, kind: str) -> dict[str, Any]:
    while True:
        message = await socket.receive(timeout=10)
        assert message.type is WSMsgType.TEXT, message
        event = json.loads(message.data)
        if event["type"] == kind:
            return dict(event)


async def test_a_signed_cleared_interval_reaches_the_browser(
    sim: SimLedger, tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    tail = cut_last_interval(sim.copy(tmp_path / "live"))
    market = f"{MARKET}-live-{tmp_path.name}"[:60]  # its own topics on the shared broker
    broker = TransportConfig(address=mosquitto, client_id=f"dash-{tmp_path.name}"[:60])
    settings = _settings(tail.path, tmp_path, broker=broker, market_id=market, sync_every_s=3600)
    client = await started(settings)
    operator = Signer(sim.key("operator"), market, "operator")
    forger = Signer(SigningKey.generate(), market, "operator")
    topics = Topics(market)
    publisher = TransportConfig(address=mosquitto, client_id=f"pub-{tmp_path.name}"[:60])
    try:
        await asyncio.wait_for(client.app[RUNTIME].on_bus.wait(), 10)
        socket = await client.ws_connect("/ws")
        tail.append()  # the ledger logs the interval
        cleared = AnnouncementBody(Phase.CLEARED, 900, 300_000, 80_000, 150_000, 10, 1, "ab" * 32)
        summary_topic = topics.summary
        async with Transport(publisher) as bus:
            await bus.wait_connected()
            # A forger announces the interval and sends a summary; then the operator's
            # summary. The listener takes them in order: when the operator's summary is
            # pushed, the forgeries were judged, counted and not pushed, and no sync ran.
            forged = forger.sign(cleared, interval=tail.interval, seq=1, expires=0)
            await bus.publish(topics.announce, forged.to_wire())
            await bus.publish(summary_topic, _signed(forger, _summary_body(tail, late=99), tail))
            await bus.publish(summary_topic, _signed(operator, _summary_body(tail, late=1), tail))
            event = await _next_event(socket, "rejections")
            assert event == {
                "type": "rejections",
                "interval": tail.interval,
                "counts": {"bad_signature": 4, "late": 1},
            }
            assert await _rejected(client, "key_mismatch") == 2
            health = await get_json(client, "/api/health")
            assert health["broker"] == {"configured": True, "connected": True}
            assert health["last_interval_closed"] < tail.interval  # the forgery woke nothing
            # The operator's own announcement wakes the log follower: the interval event.
            real = operator.sign(cleared, interval=tail.interval, seq=10, expires=0)
            await bus.publish(topics.announce, real.to_wire())
            event = await _next_event(socket, "interval")
            assert event["interval"] == tail.interval
            assert event["overview"]["last"]["interval"] == tail.interval
            assert not any(h in json.dumps(event) for h in HOUSEHOLDS)  # nobody's own figures
            # A household's signed status: the presence event carries counts only.
            h001 = Signer(sim.key("h001"), market, "h001")
            status = h001.sign(StatusBody(Presence.ONLINE), interval=0, seq=1, expires=0)
            stranger = Signer(SigningKey.generate(), market, "h001")
            forged_status = stranger.sign(StatusBody(Presence.ONLINE), interval=0, seq=2, expires=0)
            await bus.publish(topics.status("h002"), forged_status.to_wire())
            await bus.publish(topics.status("h001"), status.to_wire())
            event = await _next_event(socket, "presence")
            assert event == {"type": "presence", "online": 1, "known": len(HOUSEHOLDS)}
        await socket.close()
    finally:
        await client.close()


async def test_the_forecasters_signed_health_reaches_the_health_page(
    sim: SimLedger, tmp_path: Path, mosquitto: BrokerAddress
) -> None:
    """Over Mosquitto with real keys: a forged health is counted and never shown; the
    forecaster's own (retained, as `forecast serve` publishes it) is stored and pushed."""
    market = f"{MARKET}-fch-{tmp_path.name}"[:60]
    topics = Topics(market)
    forecaster = Signer(sim.key("forecaster"), market, "forecaster")
    forger = Signer(SigningKey.generate(), market, "forecaster")
    counters = dict.fromkeys(HEALTH_COUNTERS, 0) | {"households": 3, "forecasts_published": 9}
    real = HealthBody("ok", 1_000, counters, TrainedOn(5, "ab" * 32), 1_100)
    fake = HealthBody("ok", 1_000, {**counters, "households": 999}, None, None)
    publisher = TransportConfig(address=mosquitto, client_id=f"fpub-{tmp_path.name}"[:60])
    async with Transport(publisher) as bus:
        await bus.wait_connected()  # retained before the dashboard starts, as on a restart
        await bus.publish(topics.forecaster_health, forger.sign(fake, interval=0, seq=50,
                          expires=0).to_wire(), qos=1, retain=True)  # fmt: skip
    broker = TransportConfig(address=mosquitto, client_id=f"fdash-{tmp_path.name}"[:60])
    settings = _settings(
        sim.path, tmp_path, broker=broker, market_id=market,
        forecaster_key=sim.key("forecaster").verifying, sync_every_s=3600,
    )  # fmt: skip
    client = await started(settings)
    try:
        await asyncio.wait_for(client.app[RUNTIME].on_bus.wait(), 10)
        socket = await client.ws_connect("/ws")
        async with Transport(publisher) as bus:
            await bus.wait_connected()
            signed = forecaster.sign(real, interval=0, seq=51, expires=0)
            await bus.publish(topics.forecaster_health, signed.to_wire(), qos=1, retain=True)
            event = await _next_event(socket, "health")
            while "forecaster" not in event:
                event = await _next_event(socket, "health")
        assert event["forecaster"]["households"] == 3
        assert await _rejected(client, "key_mismatch") == 1  # the forged retained one
        health = await get_json(client, "/api/health", status=200)
        check_shape(health, "Health")
        shown = health["forecaster"]
        assert (shown["configured"], shown["heard"], shown["state"]) == (True, True, "ok")
        assert shown["counters"] == counters and shown["last_refit_s"] == 1_100
        assert shown["trained_on"] == {"tree_size": 5, "root": "ab" * 32}
        assert shown["age_s"] is not None and shown["age_s"] >= 0
        await socket.close()
    finally:
        await client.close()
        async with Transport(publisher) as bus:  # clear the retained message
            await bus.wait_connected()
            await bus.publish(topics.forecaster_health, b"", qos=1, retain=True)


def _summary_body(tail: Tail, *, late: int) -> SummaryBody:
    return SummaryBody(
        interval=tail.interval,
        orders=3,
        readings=3,
        households=3,
        trades=0,
        volume_wh=10,
        price_micro_per_kwh=150_000,
        tree_size=1,
        root="ab" * 32,
        rejections={"bad_signature": 4, "late": late},
        redeliveries=0,
    )


def _signed(signer: Signer, body: SummaryBody, tail: Tail) -> bytes:
    return signer.sign(body, interval=tail.interval, seq=20, expires=0).to_wire()


async def test_the_statement_is_the_ledgers_own(client: Client, sim: SimLedger) -> None:
    """What `wattmesh ledger statement` prints for the household, JSON and CSV."""
    store = LedgerStore.read_only(sim.url)
    try:
        entries = [json.loads(e.data) for e in store.iter_entries()]
    finally:
        store.close()
    cookie = await _household_cookie(client, sim, "h003")
    expected = build_statement(entries, household="h003")
    served = await get_json(client, "/api/households/h003/statement", cookie=cookie)
    assert served == json.loads(json.dumps(expected.to_json()))
    assert await get_json(client, "/api/households/h003/statement.csv", cookie=cookie) == (
        expected.to_csv()
    )


async def test_serve_listens_until_stopped(sim: SimLedger, tmp_path: Path) -> None:
    settings = _settings(sim.path, tmp_path, port=0)
    stop = asyncio.Event()
    urls: list[str] = []
    listening = asyncio.Event()

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    served = asyncio.create_task(serve(settings, stop=stop, ready=ready))
    try:
        waiting = asyncio.create_task(listening.wait())
        await asyncio.wait({served, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert listening.is_set() and not served.done(), served
        async with ClientSession() as session, session.get(urls[0] + "api/session") as answer:
            assert answer.status == 200
            assert answer.headers["Content-Security-Policy"] == CSP
    finally:
        stop.set()
        await served
    assert urls[0].startswith("http://127.0.0.1:")
