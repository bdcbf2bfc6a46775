"""``wattmesh ledger prove | consistency | check-proof`` on SQLite and PostgreSQL: a third
party checks the printed proofs with only the operator's public key."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ledgerkit import House, new_ledger
from tests.test_ledger import _run_two_intervals
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.tlog import open_checkpoint, verify_consistency, verify_inclusion
from wattmesh.broker.tlog_json import check_extends, check_includes, check_proof_document
from wattmesh.cli import main
from wattmesh.ledger.checkpoint import checkpoint_note
from wattmesh.ledger.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Ledger, Path]]:
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    operator = SigningKey.generate()
    ledger = new_ledger(db_url, operator, houses.values())
    _run_two_intervals(ledger, houses)
    pem = tmp_path / "operator.pem"
    pem.write_bytes(operator.verifying.pem())
    yield db_url, ledger, pem
    ledger.store.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _save(tmp_path: Path, doc: dict[str, Any], name: str = "proof.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def test_prove_prints_a_proof_that_checks(
    setup: tuple[str, Ledger, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, ledger, pem = setup
    order = next(e for e in ledger.store.iter_entries() if e.kind == "order")
    code, out, _ = _run(capsys, "ledger", "prove", "--db", url, "--entry", str(order.idx))
    assert code == 0
    doc = json.loads(out)
    assert doc["format"] == "wattmesh-inclusion-proof/v1"
    assert (doc["leaf_index"], doc["tree_size"]) == (order.idx, ledger.size)
    assert base64.b64decode(doc["leaf_data"]) == order.data
    # Checked by hand with the pure functions an agent uses:
    body = open_checkpoint(doc["checkpoint"], ledger.operator_key.verifying, origin=doc["origin"])
    proof = [bytes.fromhex(h) for h in doc["proof"]]
    assert body.root == ledger.root
    assert verify_inclusion(order.data, order.idx, body.tree_size, proof, body.root)
    # ...and by the CLI, as a third party with only the public key.
    path = _save(tmp_path, doc)
    code, out, _ = _run(capsys, "ledger", "check-proof", path, "--operator-key", str(pem))
    assert code == 0 and out.startswith(f"ok: entry {order.idx} is included")


def test_check_proof_refuses_altered_proofs_and_other_keys(
    setup: tuple[str, Ledger, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, ledger, pem = setup
    code, out, _ = _run(capsys, "ledger", "prove", "--db", url, "--entry", "5")
    assert code == 0
    good = json.loads(out)
    altered: list[dict[str, Any]] = []
    first = bytes.fromhex(good["proof"][0])
    flipped = dict(good, proof=[bytes([first[0] ^ 1, *first[1:]]).hex(), *good["proof"][1:]])
    altered.append(flipped)
    altered.append(dict(good, leaf_index=6))
    other_data = base64.b64encode(b'{"kind":"order"}').decode()
    altered.append(dict(good, leaf_data=other_data))
    altered.append(
        dict(good, checkpoint=good["checkpoint"].replace(f"\n{ledger.size}\n", "\n99\n"))
    )
    altered.append(dict(good, checkpoint=None))
    for doc in altered:
        code, _, err = _run(
            capsys, "ledger", "check-proof", _save(tmp_path, doc), "--operator-key", str(pem)
        )
        assert code == 1 and err.startswith("FAILED: "), (doc, err)
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(SigningKey.generate().verifying.pem())
    code, _, err = _run(
        capsys, "ledger", "check-proof", _save(tmp_path, good), "--operator-key", str(stranger)
    )
    assert code == 1 and "not signed by the operator" in err


def test_consistency_between_checkpoints_checks(
    setup: tuple[str, Ledger, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, ledger, pem = setup
    sizes = [cp.tree_size for cp in ledger.store.checkpoints()]
    old, new = sizes[-2], sizes[-1]
    code, out, _ = _run(
        capsys, "ledger", "consistency", "--db", url, "--from", str(old), "--to", str(new)
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["old_checkpoint"] and doc["new_checkpoint"]
    proof = [bytes.fromhex(h) for h in doc["proof"]]
    assert verify_consistency(old, new, bytes.fromhex(doc["old_root"]), ledger.root, proof)
    code, out, _ = _run(
        capsys, "ledger", "check-proof", _save(tmp_path, doc), "--operator-key", str(pem)
    )
    assert code == 0 and out.startswith(f"ok: the signed tree of size {new} extends")
    # A fork: a different old root cannot be proved consistent.
    forked = dict(doc, old_root="00" * 32)
    code, _, err = _run(
        capsys, "ledger", "check-proof", _save(tmp_path, forked), "--operator-key", str(pem)
    )
    assert code == 1
    # A size without a checkpoint: the proof holds, but its old root is not signed.
    code, out, _ = _run(
        capsys, "ledger", "consistency", "--db", url, "--from", str(old + 1), "--to", str(new)
    )
    assert code == 0 and json.loads(out)["old_checkpoint"] is None
    code, _, err = _run(
        capsys,
        "ledger",
        "check-proof",
        _save(tmp_path, json.loads(out)),
        "--operator-key",
        str(pem),
    )
    assert code == 1 and "not signed" in err


def test_bad_arguments_and_documents_exit_2(
    setup: tuple[str, Ledger, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, ledger, pem = setup
    for args in (
        ("prove", "--db", url, "--entry", str(ledger.size)),
        ("prove", "--db", url, "--entry", "0", "--tree-size", str(ledger.size - 1)),
        ("consistency", "--db", url, "--from", "0", "--to", "2"),
        ("consistency", "--db", url, "--from", "2", "--to", str(ledger.size + 1)),
    ):
        code, _, err = _run(capsys, "ledger", *args)
        assert code == 2 and err.startswith("wattmesh: error: "), args
    bad = tmp_path / "bad.json"
    for text in ("not json", "[]", '{"format": "x"}', '{"format": "wattmesh-inclusion-proof/v1"}'):
        bad.write_text(text)
        code, _, err = _run(capsys, "ledger", "check-proof", str(bad), "--operator-key", str(pem))
        assert code == 2 and "Traceback" not in err, text


def test_check_proof_runs_without_the_ledger_extra(
    setup: tuple[str, Ledger, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A household checks a proof in a process that never loads SQLAlchemy."""
    url, _ledger, pem = setup
    code, out, _ = _run(capsys, "ledger", "prove", "--db", url, "--entry", "0")
    assert code == 0
    path = _save(tmp_path, json.loads(out))
    probe = (
        "import sys; from wattmesh.cli import main; code = main(sys.argv[1:]); "
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy loaded'; sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "ledger", "check-proof", path, "--operator-key", str(pem)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: entry 0 is included")


def test_a_household_detects_a_fork_and_checks_its_own_entry(
    setup: tuple[str, Ledger, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The pure checks an agent runs: its saved checkpoint, then the operator's proofs."""
    url, ledger, _pem = setup
    key = ledger.operator_key.verifying
    cps = ledger.store.checkpoints()
    old, new = cps[-2], cps[-1]
    saved = open_checkpoint(checkpoint_note(old, origin=ledger.origin), key)
    code, out, _ = _run(
        capsys,
        "ledger",
        "consistency",
        "--db",
        url,
        "--from",
        str(old.tree_size),
        "--to",
        str(new.tree_size),
    )
    assert code == 0
    doc = json.loads(out)
    assert check_extends(saved, doc, key).ok
    # The same operator key signs a rewritten history (another order in the first
    # interval): its proof cannot extend the checkpoint the household saw.
    houses = {name: House(name) for name in ("h001", "h002", "h003")}
    forked_url = f"sqlite:///{tmp_path / 'forked.db'}"
    forked = new_ledger(forked_url, ledger.operator_key, houses.values())
    _run_two_intervals(forked, houses)  # new household keys: other signed bytes
    sizes = [cp.tree_size for cp in forked.store.checkpoints()]
    forked.store.close()
    assert old.tree_size in sizes
    code, out, _ = _run(
        capsys,
        "ledger",
        "consistency",
        "--db",
        forked_url,
        "--from",
        str(old.tree_size),
        "--to",
        str(sizes[-1]),
    )
    assert code == 0
    fork_doc = json.loads(out)
    assert check_proof_document(fork_doc, key).ok  # consistent with itself...
    result = check_extends(saved, fork_doc, key)  # ...but not with what the household saw
    assert not result.ok and result.detail.startswith("fork")
    # Its own order: included; any other bytes: not.
    order = next(e for e in ledger.store.iter_entries() if e.kind == "order")
    code, out, _ = _run(capsys, "ledger", "prove", "--db", url, "--entry", str(order.idx))
    proof_doc = json.loads(out)
    assert check_includes(order.data, proof_doc, key).ok
    assert not check_includes(order.data + b" ", proof_doc, key).ok
