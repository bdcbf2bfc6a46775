"""``wattmesh registry add | rotate | revoke | limit`` edit the file the ledger registers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ledgerkit import MARKET, STEP, T0
from wattmesh.broker.keys import PUBLIC_KEY_FILE, SigningKey, write_key_pair
from wattmesh.cli import main
from wattmesh.ledger.household_registry import load_registry
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.verify import verify_ledger


def _pem(tmp_path: Path, name: str) -> tuple[SigningKey, str]:
    key = write_key_pair(tmp_path / name)
    return key, str(tmp_path / name / PUBLIC_KEY_FILE)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["registry", *argv])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_registry_commands_drive_what_the_ledger_logs(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = str(tmp_path / "registry.json")
    a, a_pem = _pem(tmp_path, "a")
    b, b_pem = _pem(tmp_path, "b")
    a2, a2_pem = _pem(tmp_path, "a2")
    common = ("--registry", registry)
    assert _run(capsys, "add", *common, "--agent", "h001", "--public-key", a_pem) == (
        0,
        a.kid,
        "",
    )
    add_b = ("--agent", "h002", "--public-key", b_pem, "--max-power-w", "3680")
    assert _run(capsys, "add", *common, *add_b)[:2] == (0, b.kid)
    ledger = Ledger(LedgerStore(db_url), market_id=MARKET, operator_key=SigningKey.generate())
    loaded = load_registry(Path(registry))
    assert loaded.metering().limit_w("h002") == 3_680
    assert ledger.register(loaded.keys, interval=T0, revoked=loaded.revoked) == 2

    rotate = ("--agent", "h001", "--public-key", a2_pem, "--revoke-old", "stolen laptop")
    assert _run(capsys, "rotate", *common, *rotate)[:2] == (0, a2.kid)
    assert _run(capsys, "revoke", *common, "--agent", "h002", "--reason", "moved out")[:2] == (
        0,
        b.kid,
    )
    assert _run(capsys, "limit", *common, "--agent", "h002", "--max-power-w", "default")[0] == 0
    loaded = load_registry(Path(registry))
    assert loaded.households["h002"].max_power_w is None
    assert loaded.revoked == {"h001": {a.kid: "stolen laptop"}, "h002": {b.kid: "moved out"}}
    assert ledger.register(loaded.keys, interval=T0 + STEP, revoked=loaded.revoked) == 3
    logged = [json.loads(e.data) for e in ledger.store.iter_entries()][2:]
    assert [(e["kind"], e["agent"], e["kid"]) for e in logged] == [
        ("key_rotation", "h001", a2.kid),
        ("key_revocation", "h001", a.kid),
        ("key_revocation", "h002", b.kid),
    ]
    assert verify_ledger(ledger.store, ledger.operator_key.verifying).ok
    ledger.store.close()


def test_registry_commands_refuse_changes_that_do_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry.json"
    common = ("--registry", str(registry))
    a, a_pem = _pem(tmp_path, "a")
    assert _run(capsys, "add", *common, "--agent", "h001", "--public-key", a_pem)[0] == 0
    before = registry.read_bytes()
    refusals = [
        (("add", "--agent", "h001", "--public-key", a_pem), "in the registry already"),
        (("add", "--agent", "h/2", "--public-key", a_pem), "agent id 'h/2'"),
        (("add", "--agent", "h002", "--public-key", a_pem, "--max-power-w", "0"), "from 1 to"),
        (("add", "--agent", "h002", "--public-key", str(tmp_path)), ""),
        (("rotate", "--agent", "h001", "--public-key", a_pem), "has that key already"),
        (("rotate", "--agent", "h009", "--public-key", a_pem), "h009 is not in the registry"),
        (("revoke", "--agent", "h001", "--kid", "xyz", "--reason", "r"), "is not a key id"),
        (("revoke", "--agent", "h001", "--reason", ""), "1-200 characters"),
        (("limit", "--agent", "h001", "--max-power-w", "lots"), "integer or 'default'"),
    ]
    for argv, problem in refusals:
        code, out, err = _run(capsys, argv[0], *common, *argv[1:])
        assert (code, out) == (2, ""), argv
        assert err.startswith("wattmesh: error:") and problem in err, (argv, err)
        assert "\n" not in err
    assert registry.read_bytes() == before  # nothing was written
    assert _run(capsys, "revoke", *common, "--agent", "h001", "--reason", "lost")[:2] == (
        0,
        a.kid,
    )
    code, _out, err = _run(capsys, "revoke", *common, "--agent", "h001", "--reason", "again")
    assert code == 2 and "revoked already" in err
    _, new_pem = _pem(tmp_path, "new")
    code, _out, err = _run(capsys, "rotate", *common, "--agent", "h001", "--public-key", new_pem)
    assert code == 0  # a household whose key is revoked may get a new one
    code, _out, err = _run(capsys, "rotate", *common, "--agent", "h001", "--public-key", a_pem)
    assert code == 2 and "is revoked" in err
    registry.write_text("{}")
    code, _out, err = _run(capsys, "limit", *common, "--agent", "h001", "--max-power-w", "100")
    assert code == 2 and "needs a 'households' list" in err
