"""Every ``wattmesh`` command ends on a bad argument, a bad path or a failing database
with one line on stderr and no traceback: exit 2 for bad arguments or paths, 1 for a
failure (a database that cannot be reached or is damaged). The real CLI runs as a
process, as an operator would run it (issue 11, finding 9; docs/protocol.md, exit codes).
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ledgerkit import House, new_ledger
from tests.ledgerrunkit import write_market
from tests.test_ledger import _run_two_intervals
from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.transport import BrokerAddress
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.store_errors import NoLedgerDatabase
from wattmesh.ledger.store_open import PG_CONNECT_TIMEOUT_S, pg_connect_args

ROOT = Path(__file__).resolve().parents[1]
GARBAGE = bytes(range(256)) * 8  # not UTF-8, not TOML, not JSON, not PEM, not SQLite


@dataclass(frozen=True)
class Files:
    """A folder of things to hand the CLI: a real ledger and garbage around it."""

    folder: Path
    pg_down: str  # a PostgreSQL URL on a port where nothing listens
    mqtt_down: BrokerAddress  # likewise for MQTT (never reached in these tests)

    def url(self, name: str) -> str:
        return f"sqlite:///{self.folder / name}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _real_ledger(path: Path) -> SigningKey:
    """A ledger of two cleared intervals in a SQLite file; its operator's key."""
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    operator = SigningKey.generate()
    ledger = new_ledger(f"sqlite:///{path}", operator, houses.values())
    _run_two_intervals(ledger, houses)
    ledger.store.close()
    return operator


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("cli")
    operator = _real_ledger(folder / "ledger.db")
    (folder / "operator.pem").write_bytes(operator.verifying.pem())
    write_key_pair(folder / "key")
    (folder / "garbage.bin").write_bytes(GARBAGE)
    (folder / "not_sqlite.db").write_text("a note, not a database\n", encoding="utf-8")
    (folder / "list.json").write_text("[1, 2]\n", encoding="utf-8")
    (folder / "a_folder").mkdir()
    return Files(folder, f"postgresql://wattmesh@127.0.0.1:{_free_port()}/ledger", _down())


def _down() -> BrokerAddress:
    return BrokerAddress("127.0.0.1", _free_port())


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _fails_with_one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


KEY = "{d}/key/public_key.pem"
ADD = ("--agent", "h001", "--public-key", KEY)

# (arguments, exit code, words the line must hold); {d} is the folder of ``files``,
# {pg_down} a PostgreSQL URL where nothing listens.
CASES = {
    "keys new into /proc": (("keys", "new", "--out", "/proc/forbidden"), 2, "/proc/forbidden"),
    "keys new under a device": (("keys", "new", "--out", "/dev/null/x"), 2, "/dev/null/x"),
    "keys new onto a file": (("keys", "new", "--out", "{d}/garbage.bin"), 2, "garbage.bin"),
    "registry in a missing folder": (
        ("registry", "add", "--registry", "/nonexistent/dir/r.json", *ADD),
        2,
        "/nonexistent/dir/r.json",
    ),
    "registry under a device": (
        ("registry", "add", "--registry", "/dev/null/x", *ADD),
        2,
        "/dev/null/x",
    ),
    "registry is a folder": (
        ("registry", "add", "--registry", "{d}/a_folder", *ADD),
        2,
        "a_folder",
    ),
    "registry is binary": (("registry", "add", "--registry", "{d}/garbage.bin", *ADD), 2, "JSON"),
    "registry is a list": (
        ("registry", "rotate", "--registry", "{d}/list.json", *ADD),
        2,
        "households",
    ),
    "public key is garbage": (
        ("registry", "add", "--registry", "{d}/new.json", "--agent", "h1", "--public-key",
         "{d}/garbage.bin"),
        2,
        "not a PEM public key",
    ),
    "verify: missing folder": (
        ("ledger", "verify", "--db", "sqlite:///{d}/missing/ledger.db"),
        2,
        "no ledger database",
    ),
    "verify: not SQLite": (
        ("ledger", "verify", "--db", "sqlite:///{d}/not_sqlite.db"),
        2,
        "not a SQLite database",
    ),
    "verify: a folder": (("ledger", "verify", "--db", "sqlite:///{d}/a_folder"), 2, "not a file"),
    "verify: in memory": (("ledger", "verify", "--db", "sqlite://"), 2, "SQLite file"),
    "verify: malformed URL": (
        ("ledger", "verify", "--db", "postgresql://u@[::1"),
        2,
        "malformed database URL",
    ),
    "verify: PostgreSQL down": (("ledger", "verify", "--db", "{pg_down}"), 1, "Connection refused"),
    "verify: key is garbage": (
        ("ledger", "verify", "--db", "sqlite:///{d}/ledger.db", "--operator-key",
         "{d}/garbage.bin"),
        2,
        "not a PEM public key",
    ),
    "statement: not SQLite": (
        ("ledger", "statement", "--db", "sqlite:///{d}/not_sqlite.db", "--household", "h001"),
        2,
        "not a SQLite database",
    ),
    "statement: PostgreSQL down": (
        ("ledger", "statement", "--db", "{pg_down}", "--household", "h001"),
        1,
        "Connection refused",
    ),
    "prove: missing folder": (
        ("ledger", "prove", "--db", "sqlite:///{d}/missing/ledger.db", "--entry", "1"),
        2,
        "no ledger database",
    ),
    "prove: PostgreSQL down": (
        ("ledger", "prove", "--db", "{pg_down}", "--entry", "1"),
        1,
        "Connection refused",
    ),
    "consistency: not SQLite": (
        ("ledger", "consistency", "--db", "sqlite:///{d}/not_sqlite.db", "--from", "1", "--to",
         "2"),
        2,
        "not a SQLite database",
    ),
    "consistency: PostgreSQL down": (
        ("ledger", "consistency", "--db", "{pg_down}", "--from", "1", "--to", "2"),
        1,
        "Connection refused",
    ),
    "check-proof: a folder": (
        ("ledger", "check-proof", "{d}/a_folder", "--operator-key", "{d}/operator.pem"),
        2,
        "a_folder",
    ),
    "check-proof: key is garbage": (
        ("ledger", "check-proof", "{d}/list.json", "--operator-key", "{d}/garbage.bin"),
        2,
        "not a PEM public key",
    ),
    "ledger run: binary TOML": (("ledger", "run", "--config", "{d}/garbage.bin"), 2, "TOML"),
    "ledger run: a folder": (("ledger", "run", "--config", "{d}/a_folder"), 2, "a_folder"),
    "agent: binary TOML": (("agent", "--config", "{d}/garbage.bin"), 2, "TOML"),
    "agent --validate-config: binary TOML": (
        ("agent", "--config", "{d}/garbage.bin", "--validate-config"),
        1,
        "TOML",
    ),
    "market clear: a folder": (("market", "clear", "{d}/a_folder"), 2, "a_folder"),
    "market clear: binary": (("market", "clear", "{d}/garbage.bin"), 2, "garbage.bin"),
    "meter read: NaN timeout": (
        ("meter", "read", "--meter", "p1-file:{d}/garbage.bin", "--timeout", "nan"),
        2,
        "--timeout",
    ),
    "simulate: workdir in /proc": (
        ("simulate", "--workdir", "/proc/forbidden", "--quiet"),
        2,
        "--workdir",
    ),
    "simulate: report under a device": (
        ("simulate", "--workdir", "{d}/sim", "--report", "/dev/null/x/report.json", "--quiet"),
        2,
        "--report",
    ),
    "simulate: database in a missing folder": (
        ("simulate", "--workdir", "{d}/sim", "--db", "sqlite:///{d}/missing/ledger.db",
         "--forecaster", "naive", "--households", "2", "--days", "1", "--quiet"),
        2,
        "no folder",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_each_command_fails_with_one_line(files: Files, case: str) -> None:
    args, code, word = CASES[case]
    filled = [a.format(d=files.folder, pg_down=files.pg_down) for a in args]
    _fails_with_one_line(_cli(*filled, cwd=files.folder), code, word.format(d=files.folder))


def _damage(path: Path, table: str) -> None:
    """Overwrite the first 8 bytes of the leaf page of ``table`` nearest the middle of the
    file (the page header SQLite checks), as a disk or a careless editor might."""
    with sqlite3.connect(path) as db:
        pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = ?", (table,))]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        count = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    page = min(pages, key=lambda p: abs(p - count // 2))
    with path.open("r+b") as handle:
        handle.seek((page - 1) * page_size)
        handle.write(b"\xde\xad\xbe\xef" * 2)


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A real ledger's SQLite file, to damage (its operator's key beside it)."""
    operator = _real_ledger(tmp_path / "ledger.db")
    (tmp_path / "operator.pem").write_bytes(operator.verifying.pem())
    return tmp_path / "ledger.db"


@pytest.mark.parametrize("command", ["verify", "statement"])
def test_a_damaged_log_is_a_failure_of_one_line(damaged: Path, command: str) -> None:
    path = damaged
    _damage(path, "log_entry")
    key = str(path.parent / "operator.pem")
    extra = ("--household", "h001") if command == "statement" else ("--operator-key", key)
    result = _cli("ledger", command, "--db", f"sqlite:///{path}", *extra, cwd=path.parent)
    _fails_with_one_line(result, 1, "malformed", str(path))


def test_ledger_run_on_a_damaged_database_fails_with_one_line(
    damaged: Path, tmp_path: Path
) -> None:
    path = damaged
    _damage(path, "ledger_meta")
    market = write_market(tmp_path / "market", db_url=f"sqlite:///{path}", broker=_down())
    result = _cli("ledger", "run", "--config", str(market.config), cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    *logged, last = result.stderr.splitlines()
    assert "malformed" in last and last.startswith("wattmesh: error: database")
    assert all(" INFO " in line for line in logged)  # what it logged before, if anything


@pytest.mark.parametrize(
    ("database", "run_code", "valid", "word"),
    [
        ("sqlite:///{d}/missing/ledger.db", 2, False, "no folder"),
        ("sqlite:///{d}/not_sqlite.db", 2, False, "not a SQLite database"),
        ("{pg_down}", 1, True, "Connection refused"),  # --validate-config does not connect
    ],
)
def test_ledger_run_and_validate_config_agree_on_the_database(
    files: Files, tmp_path: Path, database: str, run_code: int, valid: bool, word: str
) -> None:
    url = database.format(d=files.folder, pg_down=files.pg_down)
    market = write_market(tmp_path, db_url=url, broker=files.mqtt_down)
    checked = _cli(
        "ledger", "run", "--config", str(market.config), "--validate-config", cwd=tmp_path
    )
    if valid:
        assert checked.returncode == 0 and checked.stdout.startswith(f"{market.config}: ok")
    else:
        line = _fails_with_one_line(checked, 1, "database.url", word)
        assert line.startswith(f"{market.config}: database.url: ")
    _fails_with_one_line(_cli("ledger", "run", "--config", str(market.config), cwd=tmp_path),
                         run_code, word)  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_only_commands_create_and_change_nothing(files: Files, tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.db"
    for command in (("verify",), ("statement", "--household", "h001"), ("prove", "--entry", "1")):
        result = _cli("ledger", *command[:1], "--db", f"sqlite:///{missing}", *command[1:],
                      cwd=tmp_path)  # fmt: skip
        _fails_with_one_line(result, 2, "no ledger database", str(missing))
    assert list(tmp_path.iterdir()) == []

    ledger = files.folder / "ledger.db"
    before = _digest(ledger)
    url = f"sqlite:///{ledger}"
    key = str(files.folder / "operator.pem")
    for command in (
        ("verify", "--db", url, "--operator-key", key),
        ("statement", "--db", url, "--household", "h001"),
        ("prove", "--db", url, "--entry", "1"),
        ("consistency", "--db", url, "--from", "1", "--to", "2"),
    ):
        result = _cli("ledger", *command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert _digest(ledger) == before


def test_a_read_only_store_cannot_write(db_url: str, operator: SigningKey) -> None:
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    ledger = new_ledger(db_url, operator, houses.values())
    _run_two_intervals(ledger, houses)
    size = ledger.size
    ledger.store.close()
    store = LedgerStore.read_only(db_url)
    try:
        assert store.size() == size
        with pytest.raises(sa.exc.DBAPIError, match=r"read-only|readonly"):
            store.set_meta_once("written_by", "a read-only command")
        assert store.get_meta("written_by") is None
    finally:
        store.close()


def test_a_database_without_a_ledger_is_no_ledger_database(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        sqlite3.connect(db_url.removeprefix("sqlite:///")).close()  # an empty SQLite file
    with pytest.raises(NoLedgerDatabase, match="holds no ledger"):
        LedgerStore.read_only(db_url)


@pytest.mark.parametrize("state_dir", ["/proc/forbidden", "/dev/null/x"])
def test_agent_with_an_unusable_state_dir_fails_with_one_line(
    tmp_path: Path, state_dir: str
) -> None:
    write_key_pair(tmp_path / "keys")
    (tmp_path / "profile.json").write_text(
        '{"start": 0, "interval_s": 900, "demand_wh": [1], "pv_wh": [0]}', encoding="utf-8"
    )
    config = tmp_path / "agent.toml"
    config.write_text(
        f'agent_id = "h001"\nmarket_id = "m1"\nbroker = "{_down().url}"\n'
        f'key_file = "keys/private_key.pem"\nstate_dir = "{state_dir}"\n'
        '[meter]\nkind = "replay"\nfile = "profile.json"\n',
        encoding="utf-8",
    )
    result = _cli("agent", "--config", str(config), cwd=tmp_path)
    _fails_with_one_line(result, 2, "state_dir", state_dir)


def test_postgresql_connections_time_out_unless_the_url_says_otherwise() -> None:
    assert pg_connect_args("postgresql://u@db.example/x") == {
        "connect_timeout": PG_CONNECT_TIMEOUT_S
    }
    assert pg_connect_args("postgresql://u@db.example/x?connect_timeout=3") == {}
