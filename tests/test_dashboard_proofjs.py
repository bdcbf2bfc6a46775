"""The browser's proof checker (dashboard/static/proof.js) agrees with broker/tlog.py.

Chromium runs proof.js on a local page (a secure context, so Web Crypto is there) and
gets the same cases the Python verifier decides: every inclusion proof of trees of 1 to
21 leaves and broken ones, DER signatures of every shape against `cryptography`'s
decoding, and whole proof answers signed with a real P-256 key.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tests.browserkit import chromium
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.tlog import checkpoint_text, leaf_hash, verify_inclusion_hash
from wattmesh.ledger.proofs import LeafListSource, inclusion_proof_from_source, root_from_source

pytestmark = pytest.mark.slow

PROOF_JS = Path(__file__).resolve().parents[1] / "dashboard" / "static" / "proof.js"
LEAVES = [f'{{"kind":"trade","n":{i}}}'.encode() for i in range(21)]


def _inclusion_cases() -> list[dict[str, Any]]:
    """Each (leaf, index, size, path, root) with what the Python verifier says of it."""
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    source = LeafListSource(hashes)
    cases = []
    for size in range(1, len(LEAVES) + 1):
        root = root_from_source(source, size)
        for index in range(size):
            path = inclusion_proof_from_source(source, index, size)
            variants = [(index, size, path)]
            if path:
                variants.append((index, size, path[:-1]))  # too short
            variants.append((index, size, [*path, hashes[0]]))  # too long
            if index + 1 < size:
                variants.append((index + 1, size, path))  # another leaf's place
            for i, s, p in variants:
                cases.append(
                    {
                        "leaf": hashes[index].hex(),
                        "index": i,
                        "size": s,
                        "path": [h.hex() for h in p],
                        "root": root.hex(),
                        "valid": verify_inclusion_hash(hashes[index], i, s, p, root),
                    }
                )
    return cases


def _der_cases(key: SigningKey) -> list[tuple[str, str]]:
    """DER signatures (real ones and short or high-bit r and s) and their raw r || s."""
    ders = [key.sign(f"message {i}".encode()) for i in range(64)]
    ders += [
        encode_dss_signature(r, s)
        for r, s in ((1, 2), (2**255, 2**256 - 1), (2**248 - 1, 1), (0x80, 2**200))
    ]
    out = []
    for der in ders:
        r, s = decode_dss_signature(der)
        out.append((der.hex(), (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()))
    return out


def _proof_answer(key: SigningKey, idx: int, size: int) -> dict[str, Any]:
    """A proof answer of the dashboard's shape for leaf ``idx`` of the first ``size``."""
    hashes = [leaf_hash(leaf) for leaf in LEAVES]
    source = LeafListSource(hashes)
    root = root_from_source(source, size)
    text = checkpoint_text("wattmesh/test", size, root)
    return {
        "idx": idx,
        "kind": "trade",
        "entry_b64": base64.b64encode(LEAVES[idx]).decode(),
        "leaf_hash_hex": hashes[idx].hex(),
        "tree_size": size,
        "path_hex": [h.hex() for h in inclusion_proof_from_source(source, idx, size)],
        "root_hex": root.hex(),
        "checkpoint_text": text,
        "signature_der_b64": base64.b64encode(key.sign(text.encode())).decode(),
        "operator": {
            "kid": hashlib.sha256(key.verifying.der()).hexdigest(),
            "public_key_spki_b64": base64.b64encode(key.verifying.der()).decode(),
        },
    }


FOLD_ALL = """async (cases) => {
  const hex = WMProof.toHex;
  const bytes = (h) => Uint8Array.from(h.match(/../g) || [], (b) => parseInt(b, 16));
  const out = [];
  for (const c of cases) {
    const root = await WMProof.foldInclusion(bytes(c.leaf), c.index, c.size, c.path.map(bytes));
    out.push(root !== null && hex(root) === c.root);
  }
  return out;
}"""

DER_ALL = """(cases) => cases.map(([der, raw]) => {
  const bytes = Uint8Array.from(der.match(/../g), (b) => parseInt(b, 16));
  return WMProof.toHex(WMProof.derToRaw(bytes)) === raw;
})"""

CHECK = "async (p) => { const r = await WMProof.checkProof(p); return [r.valid, r.reason]; }"


async def test_proof_js_decides_as_the_python_verifier(tmp_path: Path) -> None:
    key = SigningKey.generate()
    cases = _inclusion_cases()
    assert sum(c["valid"] for c in cases) == sum(range(1, len(LEAVES) + 1))
    page_file = tmp_path / "blank.html"
    page_file.write_text("<!doctype html><title>proof.js</title>\n", encoding="utf-8")
    good = _proof_answer(key, 13, 21)
    wrong_key = {**good, "operator": _proof_answer(SigningKey.generate(), 13, 21)["operator"]}
    bad_kid = {**good, "operator": {**good["operator"], "kid": "00" * 32}}
    other_size = _proof_answer(key, 13, 20)
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(page_file.as_uri())
        await page.add_script_tag(path=PROOF_JS)
        folded = await page.evaluate(FOLD_ALL, cases)
        ders = await page.evaluate(DER_ALL, _der_cases(key))
        malformed = await page.evaluate(
            "(h) => { try { WMProof.derToRaw(Uint8Array.from(h.match(/../g), (b) =>"
            " parseInt(b, 16))); return 'accepted'; } catch (e) { return e.message; } }",
            "3006020101020102ff",  # a trailing byte after the sequence
        )
        verdicts = [
            await page.evaluate(CHECK, answer)
            for answer in (
                good,
                wrong_key,
                bad_kid,
                {**good, "checkpoint_text": other_size["checkpoint_text"]},
                {**other_size, "path_hex": good["path_hex"]},
            )
        ]
    assert folded == [c["valid"] for c in cases]
    assert all(ders)
    assert malformed != "accepted"
    assert verdicts == [
        [True, "entry 13 is in the log of 21 entries whose checkpoint the operator signed"],
        [False, "the checkpoint signature does not verify with the operator's key"],
        [False, "the operator key does not match its key id"],
        [False, "the checkpoint is for another tree size than the proof"],
        [False, "the inclusion path does not lead to the checkpoint's root"],
    ]
