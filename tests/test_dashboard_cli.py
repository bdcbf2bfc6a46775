"""``wattmesh dashboard serve | login | rebuild`` as processes, over a real ledger file.

The ledger: two cleared intervals of three households with real keys (SQLite). ``serve``
runs as ``python -m wattmesh.cli`` on a free port (``--port 0``); the test reads the URL
it prints and talks HTTP to it (aiohttp's client), then stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.ledgerkit import House, new_ledger
from tests.test_ledger import _run_two_intervals
from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.transport import BrokerAddress
from wattmesh.ledger.store import LedgerStore

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LedgerFiles:
    folder: Path
    url: str
    size: int  # log entries
    operator: SigningKey

    def key(self, agent: str) -> Path:
        return self.folder / agent / "private_key.pem"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> LedgerFiles:
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'ledger.db'}"
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    operator = SigningKey.generate()
    ledger = new_ledger(url, operator, houses.values())
    _run_two_intervals(ledger, houses)
    size = ledger.size
    ledger.store.close()
    for agent, house in houses.items():
        write_key_pair(folder / agent, house.key)
    write_key_pair(folder / "operator", operator)
    return LedgerFiles(folder, url, size, operator)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass
class Served:
    url: str
    process: asyncio.subprocess.Process

    async def stop(self) -> str:
        """SIGTERM; its stderr, after it exited with 0."""
        self.process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(self.process.communicate(), TIMEOUT_S)
        assert self.process.returncode == 0, err.decode()
        return err.decode()


@contextlib.asynccontextmanager
async def serving(*args: str) -> AsyncIterator[Served]:
    """``wattmesh dashboard serve --port 0 ARGS`` until it printed its URL."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "wattmesh.cli", "dashboard", "serve", "--port", "0", *args),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)).decode()
        if not line.startswith("dashboard: http://127.0.0.1:"):
            process.kill()
            _, err = await process.communicate()
            raise AssertionError(f"no URL: {line!r}; stderr: {err.decode()}")
        yield Served(line.removeprefix("dashboard: ").strip(), process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_with_db_alone_answers_health_and_stops_on_sigterm(
    files: LedgerFiles,
) -> None:
    async with serving("--db", files.url) as served, aiohttp.ClientSession() as http:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", served.url), served.url
        async with http.get(served.url + "api/health") as response:
            assert response.status == 200
            health = await response.json()
        assert health["ledger"]["ok"] is True
        assert health["broker"]["configured"] is False
        log = await served.stop()
    assert "Traceback" not in log


async def test_serve_takes_the_file_and_the_flags_over_it(
    files: LedgerFiles, mosquitto: BrokerAddress
) -> None:
    LedgerStore(f"sqlite:///{files.folder / 'empty.db'}").close()  # a ledger of nothing
    config = files.folder / "dashboard.toml"
    config.write_text('[database]\nurl = "sqlite:///empty.db"\n[http]\nport = 1\n', "utf-8")
    args = ("--config", str(config), "--db", files.url, "--broker", mosquitto.url)
    async with serving(*args) as served, aiohttp.ClientSession() as http:
        async with http.get(served.url + "api/health") as response:
            health = await response.json()
        assert health["ledger"]["tree_size"] == files.size  # --db's ledger, not the file's
        assert health["broker"]["configured"] is True  # --broker, where the file has none
        await served.stop()


async def test_serve_shows_money_in_the_currency_given(files: LedgerFiles) -> None:
    async with serving("--db", files.url) as served, aiohttp.ClientSession() as http:
        async with http.get(served.url + "api/overview") as response:
            assert (await response.json())["currency"] == "EUR"  # the default
        await served.stop()
    async with serving("--db", files.url, "--currency", "CHF") as served:
        async with aiohttp.ClientSession() as http, http.get(served.url + "api/overview") as r:
            assert (await r.json())["currency"] == "CHF"
        await served.stop()
    bad = _cli("dashboard", "serve", "--db", files.url, "--currency", "chf")
    assert bad.returncode == 2
    assert "--currency: must be an ISO 4217 code like EUR, got 'chf'" in bad.stderr


def test_rebuild_folds_the_whole_log(files: LedgerFiles, tmp_path: Path) -> None:
    model = tmp_path / "model.db"
    for _ in range(2):  # and again from nothing
        result = _cli(
            "dashboard", "rebuild", "--db", files.url, "--read-model", f"sqlite:///{model}"
        )
        assert (result.returncode, result.stderr) == (0, "")
        match = re.fullmatch(
            r"folded (\d+) entries \((\d+) intervals closed, tree size (\d+)\) into (\S+) in "
            r"\d+\.\d\d s\n",
            result.stdout,
        )
        assert match is not None, result.stdout
        assert int(match[1]) == int(match[3]) == files.size and int(match[2]) == 2
        assert match[4] == f"sqlite:///{model}"
    assert model.is_file()


def test_rebuild_by_default_beside_the_ledger(files: LedgerFiles) -> None:
    result = _cli("dashboard", "rebuild", "--db", files.url)
    assert result.returncode == 0, result.stderr
    assert f"into {files.url}.dashboard.db in " in result.stdout


async def test_login_prints_a_link_that_logs_the_household_in(files: LedgerFiles) -> None:
    async with serving("--db", files.url) as served:
        result = await asyncio.to_thread(
            _cli,
            *("dashboard", "login", "--key", str(files.key("h001"))),
            *("--url", served.url, "--household", "h001"),
        )
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        link = result.stdout.strip()
        assert link.startswith(served.url + "login?ticket="), link
        jar = aiohttp.CookieJar(unsafe=True)  # the server is an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(link, allow_redirects=False) as response:
                assert response.status == 303
                assert "wattmesh_session" in response.cookies
            async with http.get(served.url + "api/households/h001") as response:
                assert response.status == 200
                assert (await response.json())["household"] == "h001"
            async with http.get(served.url + "api/households/h002") as response:
                assert response.status == 403
        async with aiohttp.ClientSession() as again, again.get(link, allow_redirects=False) as r:
            assert r.status >= 400  # a ticket is used once
        # Another household's key does not log in as h002.
        result = await asyncio.to_thread(
            _cli,
            *("dashboard", "login", "--key", str(files.key("h001"))),
            *("--url", served.url, "--household", "h002"),
        )
        assert result.returncode == 1 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
        await served.stop()
    # A dashboard that is not there: one line, exit 1.
    result = await asyncio.to_thread(
        _cli,
        *("dashboard", "login", "--key", str(files.key("h001"))),
        *("--url", served.url, "--household", "h001"),
    )
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "cannot reach the dashboard at" in lines[0], result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--household", "h 1"), "--household 'h 1' must be 1-64 characters"),
        (("--household", "h001", "--key", "/no/such.pem"), "/no/such.pem"),
    ],
)
def test_login_refuses_bad_arguments_with_one_line(
    files: LedgerFiles, args: tuple[str, ...], message: str
) -> None:
    base = ("dashboard", "login", "--key", str(files.key("h001")), "--url", "http://127.0.0.1:9/")
    result = _cli(*base, *args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_rebuild_refuses_the_ledger_itself_as_its_read_model(files: LedgerFiles) -> None:
    result = _cli("dashboard", "rebuild", "--db", files.url, "--read-model", files.url)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "the database holds a ledger" in lines[0], result.stderr


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(files: LedgerFiles) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("dashboard", "serve", "--db", files.url, "--port", str(port))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [
        f"wattmesh: error: cannot serve the dashboard on 127.0.0.1:{port}: Address already in use"
    ], result.stderr
