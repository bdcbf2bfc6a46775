"""Anchored trust: ``ledger verify`` checks against an operator key from outside the
database, never the one the database stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.ledgerkit import House, drop_append_only_triggers, new_ledger
from tests.test_ledger import _run_two_intervals
from wattmesh.broker.keys import SigningKey
from wattmesh.cli.dispatch import main
from wattmesh.ledger.checkpoint import checkpoint_text
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.meta import META_OPERATOR_KEY, META_ORIGIN
from wattmesh.ledger.verify import stored_operator_key, verify_ledger


@pytest.fixture
def built(db_url: str) -> tuple[str, Ledger]:
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    ledger = new_ledger(db_url, SigningKey.generate(), houses.values())
    _run_two_intervals(ledger, houses)
    return db_url, ledger


def _resign(ledger: Ledger, forger: SigningKey, *, replace_stored_key: bool) -> None:
    """What anyone who can write to the database can do: sign every checkpoint again
    with another key (and put that key in the meta table)."""
    store = ledger.store
    origin = store.get_meta(META_ORIGIN)
    assert origin is not None
    drop_append_only_triggers(store.engine)
    with store.engine.begin() as conn:
        for cp in store.checkpoints():
            signature = forger.sign(checkpoint_text(origin, cp.tree_size, cp.root))
            conn.execute(
                sa.text("UPDATE checkpoint SET kid=:k, signature=:s WHERE tree_size=:n"),
                {"k": forger.kid, "s": signature, "n": cp.tree_size},
            )
        if replace_stored_key:
            conn.execute(
                sa.text('UPDATE ledger_meta SET value=:v WHERE "key"=:k'),
                {"v": forger.verifying.pem().decode("ascii"), "k": META_OPERATOR_KEY},
            )


def test_a_replaced_key_and_re_signed_checkpoints_fail_against_the_anchored_key(
    built: tuple[str, Ledger], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ledger = built
    operator = ledger.operator_key
    forger = SigningKey.generate()
    _resign(ledger, forger, replace_stored_key=True)
    stored = stored_operator_key(ledger.store)
    assert stored is not None and stored.kid == forger.kid
    # The database is consistent with itself: trusting what it stores passes...
    assert verify_ledger(ledger.store, stored).ok
    # ...the operator's real key, given from outside, does not.
    report = verify_ledger(ledger.store, operator.verifying)
    assert not report.ok and report.key_id == operator.kid
    expected = (
        f"the ledger's stored operator key {forger.kid} is not the trusted key {operator.kid}"
    )
    assert report.problem == expected
    ledger.store.close()
    capsys.readouterr()
    assert main(["ledger", "verify", "--db", url, "--operator-key-id", operator.kid]) == 1
    err = capsys.readouterr().err
    assert f"FAILED: {expected}" in err and f"checked against operator key {operator.kid}" in err
    # Without a trusted key the command refuses rather than trust the database.
    assert main(["ledger", "verify", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "--operator-key PEM" in err and "--operator-key-id HEX" in err
    assert f"names operator key {forger.kid}, which proves nothing by itself" in err


def test_re_signed_checkpoints_under_the_kept_stored_key_fail(
    built: tuple[str, Ledger],
) -> None:
    _url, ledger = built
    operator = ledger.operator_key
    _resign(ledger, SigningKey.generate(), replace_stored_key=False)
    report = verify_ledger(ledger.store, operator.verifying)
    ledger.store.close()
    assert not report.ok and report.problem is not None
    assert "has a bad signature" in report.problem


def test_operator_key_id_right_wrong_and_malformed(
    built: tuple[str, Ledger], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ledger = built
    kid, size = ledger.operator_key.kid, ledger.size
    ledger.store.close()
    capsys.readouterr()
    assert main(["ledger", "verify", "--db", url, "--operator-key-id", kid.upper()]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {size} entries, ") and out.rstrip().endswith(f"operator key {kid}")
    other = SigningKey.generate().kid
    assert main(["ledger", "verify", "--db", url, "--operator-key-id", other]) == 1
    err = capsys.readouterr().err
    assert f"stored operator key {kid} is not the trusted key {other}" in err
    for bad in ("abc", kid[:63], kid[:63] + "g", kid[:16]):
        assert main(["ledger", "verify", "--db", url, "--operator-key-id", bad]) == 2
        assert "64 hex digits" in capsys.readouterr().err
    with pytest.raises(SystemExit) as both:
        main(["ledger", "verify", "--db", url, "--operator-key", "k.pem", "--operator-key-id", kid])
    assert both.value.code == 2


def test_operator_key_file_names_its_key_id(
    built: tuple[str, Ledger],
    capsys: pytest.CaptureFixture[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url, ledger = built
    key = tmp_path_factory.mktemp("keys") / "operator.pem"
    key.write_bytes(ledger.operator_key.verifying.pem())
    kid = ledger.operator_key.kid
    ledger.store.close()
    capsys.readouterr()
    assert main(["ledger", "verify", "--db", url, "--operator-key", str(key)]) == 0
    assert f", operator key {kid}\n" in capsys.readouterr().out
    wrong = key.with_name("other.pem")
    wrong.write_bytes(SigningKey.generate().verifying.pem())
    assert main(["ledger", "verify", "--db", url, "--operator-key", str(wrong)]) == 1
    assert f"stored operator key {kid} is not the trusted key" in capsys.readouterr().err
