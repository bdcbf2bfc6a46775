"""``wattmesh ledger verify``: the whole log checked against an operator key from outside.

The trusted key is ``--operator-key PEM`` or ``--operator-key-id HEX``; without either
the command refuses (exit 2) rather than trust the key the database stores: anyone who
can write to the database can replace that key and re-sign every checkpoint
(docs/protocol.md, "Anchored trust"). Every outcome names the trusted key id.

Exit codes: 0 the log holds; 1 it does not, or the database failed; 2 bad arguments
(no trusted key, a malformed key id, an unreadable key file, no ledger database).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from wattmesh.broker.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1

_KEY_ID = re.compile(r"[0-9a-fA-F]{64}")


def trusted_key_id(text: str) -> str:
    """``text`` as a key id (64 hex digits, lower case); ConfigError otherwise."""
    if not _KEY_ID.fullmatch(text):
        raise ConfigError(
            f"--operator-key-id must be a whole key id, 64 hex digits (SHA-256 of the "
            f"key's DER public key), got {text!r}"
        )
    return text.lower()


def _no_trusted_key(stored_kid: str | None) -> ConfigError:
    named = (
        f"; this database names operator key {stored_kid}, which proves nothing by itself: "
        "compare it with the key id the operator publishes"
        if stored_kid
        else ""
    )
    return ConfigError(
        "ledger verify needs the operator key it trusts from outside the database: "
        "--operator-key PEM (the operator's public key file) or --operator-key-id HEX "
        f"(its 64-hex-digit key id){named}"
    )


def run_verify(args: argparse.Namespace) -> int:
    """Verify the ledger at ``args.db`` against ``--operator-key`` or ``--operator-key-id``."""
    from wattmesh.broker.keys import VerifyingKey, load_verifying_key
    from wattmesh.ledger.store import LedgerStore
    from wattmesh.ledger.store_open import store_failures
    from wattmesh.ledger.verify import stored_operator_key, verify_ledger

    trusted: VerifyingKey | str | None = None
    if args.operator_key:
        trusted = load_verifying_key(Path(args.operator_key))
    elif args.operator_key_id:
        trusted = trusted_key_id(args.operator_key_id)
    store = LedgerStore.read_only(args.db)
    try:
        with store_failures(args.db):
            if trusted is None:
                stored = stored_operator_key(store)
                raise _no_trusted_key(None if stored is None else stored.kid)
            report = verify_ledger(store, trusted)
    finally:
        store.close()
    if report.ok:
        replayed = ""
        if report.replayed is not None:
            replayed = f", replayed {report.replayed} closes"
            if report.unparameterised:
                replayed += (
                    f" ({report.unparameterised} before the log's market parameters: "
                    "energy taken as logged)"
                )
        print(
            f"ok: {report.entries} entries, {report.checkpoints} checkpoints, "
            f"root {report.root.hex()}{replayed}, operator key {report.key_id}"
        )
        return EXIT_OK
    where = "" if report.first_bad_entry is None else f"entry {report.first_bad_entry}: "
    print(f"FAILED: {where}{report.problem}", file=sys.stderr)
    print(f"(checked against operator key {report.key_id})", file=sys.stderr)
    return EXIT_FAILED
