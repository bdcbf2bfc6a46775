"""broker/tlog.py: C2SP signed notes and checkpoints, checked also with an independent
ECDSA implementation (python-ecdsa) and against the C2SP specs' example notes."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import ecdsa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.tlog import (
    CheckpointBody,
    NoteError,
    NoteSignature,
    SignedNote,
    checkpoint_text,
    format_note,
    leaf_hash,
    note_key_id,
    open_checkpoint,
    parse_checkpoint_text,
    parse_note,
    sign_note,
    verify_note,
)
from wattmesh.broker.tlog_json import (
    CONSISTENCY_FORMAT,
    INCLUSION_FORMAT,
    ProofDocumentError,
    check_proof_document,
    inclusion_document,
)

ORIGIN = "wattmesh/test"
ROOT = hashlib.sha256(b"some root").digest()
_KEY = SigningKey.generate()

# The example checkpoint of c2sp.org/tlog-checkpoint (an Ed25519 signature).
C2SP_EXAMPLE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "\u2014 example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)


def _note(key: SigningKey, size: int = 42, root: bytes = ROOT, name: str = ORIGIN) -> str:
    text = checkpoint_text(ORIGIN, size, root)
    return format_note(SignedNote(text, (sign_note(text, name, key),)))


def test_checkpoint_note_layout_and_round_trip() -> None:
    key = SigningKey.generate()
    note = _note(key)
    text, sig_line = note.split("\n\n")
    assert text == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}"
    assert sig_line.startswith(f"\u2014 {ORIGIN} ") and sig_line.endswith("\n")
    assert open_checkpoint(note, key.verifying) == CheckpointBody(ORIGIN, 42, ROOT)
    assert open_checkpoint(note, key.verifying, origin=ORIGIN).tree_size == 42


def test_note_signature_checks_with_an_independent_ecdsa_implementation() -> None:
    key = SigningKey.generate()
    note = _note(key)
    parsed = parse_note(note)
    (sig,) = parsed.signatures
    der = key.verifying.der()
    # Key ID: SHA-256 of the DER SPKI, first 4 bytes (signed-note type 0x02).
    assert sig.key_id == hashlib.sha256(der).digest()[:4] == bytes.fromhex(key.kid[:8])
    assert note_key_id(key.verifying) == sig.key_id
    other = ecdsa.VerifyingKey.from_der(der)
    assert other.verify(
        sig.signature,
        parsed.text.encode(),
        hashfunc=hashlib.sha256,
        sigdecode=ecdsa.util.sigdecode_der,
    )


def test_c2sp_example_parses_but_no_key_of_ours_signed_it() -> None:
    parsed = parse_note(C2SP_EXAMPLE)
    body = parse_checkpoint_text(parsed.text)
    assert (body.origin, body.tree_size) == ("example.com/behind-the-sofa", 20852163)
    assert body.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    (sig,) = parsed.signatures
    assert sig.name == "example.com/behind-the-sofa" and len(sig.signature) == 64
    assert format_note(parsed) == C2SP_EXAMPLE
    with pytest.raises(NoteError, match="not signed by the operator"):
        open_checkpoint(C2SP_EXAMPLE, SigningKey.generate().verifying)


def test_changed_size_or_root_or_origin_fails() -> None:
    key = SigningKey.generate()
    note = _note(key)
    for old, new in (("\n42\n", "\n43\n"), (ORIGIN + "\n", "wattmesh/other\n")):
        with pytest.raises(NoteError):
            open_checkpoint(note.replace(old, new, 1), key.verifying)
    b64 = base64.b64encode(ROOT).decode()
    flipped = base64.b64encode(bytes([ROOT[0] ^ 1]) + ROOT[1:]).decode()
    with pytest.raises(NoteError):
        open_checkpoint(note.replace(b64, flipped), key.verifying)
    with pytest.raises(NoteError, match="is for log"):
        open_checkpoint(note, key.verifying, origin="wattmesh/elsewhere")


def test_unknown_signatures_are_ignored_and_a_bad_known_one_rejects() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    text = checkpoint_text(ORIGIN, 7, ROOT)
    mine = sign_note(text, ORIGIN, key)
    witness = sign_note(text, "witness.example/w1", other)
    impostor = sign_note(text, ORIGIN, other)  # same name, other key ID: ignored
    note = SignedNote(text, (witness, impostor, mine))
    assert verify_note(note, ORIGIN, key.verifying)
    assert open_checkpoint(format_note(note), key.verifying).tree_size == 7
    assert not verify_note(SignedNote(text, (witness, impostor)), ORIGIN, key.verifying)
    forged = NoteSignature(ORIGIN, mine.key_id, impostor.signature)  # our ID, wrong sig
    assert not verify_note(SignedNote(text, (mine, forged)), ORIGIN, key.verifying)


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        ("wattmesh/test\n1\nAAAA\n", "blank line"),
        ("a\n\n", "no signature lines"),
        ("a\n\n- name AAAAAAA=\n", "em dash"),
        ("a\n\n\u2014 na me AAAAAAA=\n", "signature line"),
        ("a\n\n\u2014 na+me AAAAAAAA\n", "key name"),
        ("a\n\n\u2014 name !!!!\n", "base64"),
        ("a\n\n\u2014 name AAAA\n", "too short"),
        ("a\x01\n\n\u2014 name AAAAAAAA\n", "control"),
        ("a\n\n\u2014 name AAAAAAAA", "newline"),
    ],
)
def test_malformed_notes_are_refused_with_a_reason(note: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_note(note)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("o\n1\n", "needs origin"),
        ("\n1\n" + base64.b64encode(ROOT).decode() + "\n", "origin is empty"),
        ("o\n01\n" + base64.b64encode(ROOT).decode() + "\n", "not a decimal"),
        ("o\n-1\n" + base64.b64encode(ROOT).decode() + "\n", "not a decimal"),
        ("o\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n", "32-byte"),
        ("o\n1\n!!\n", "not base64"),
        ("o\n1\n" + base64.b64encode(ROOT).decode() + "\next\n\n", "extension"),
        ("o\n1\n" + base64.b64encode(ROOT).decode(), "newline"),
    ],
)
def test_malformed_checkpoint_texts_are_refused(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_checkpoint_text(text)


def test_size_zero_and_extension_lines() -> None:
    body = parse_checkpoint_text(checkpoint_text(ORIGIN, 0, ROOT) + "ext one\n")
    assert (body.tree_size, body.extensions) == (0, ("ext one",))


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF), max_size=20),
        min_size=1,
        max_size=5,
    ),
    name=st.from_regex(r"[A-Za-z0-9./_-]{1,20}", fullmatch=True),
)
def test_any_note_text_round_trips_and_verifies(lines: list[str], name: str) -> None:
    key = _KEY
    text = "\n".join(lines) + "\n"
    note = format_note(SignedNote(text, (sign_note(text, name, key),)))
    parsed = parse_note(note)
    assert parsed.text == text
    assert verify_note(parsed, name, key.verifying)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=300))
def test_parsers_raise_only_note_error(text: str) -> None:
    for parse in (parse_note, parse_checkpoint_text):
        with contextlib.suppress(NoteError):
            parse(text)
    with contextlib.suppress(NoteError):
        open_checkpoint(text, _KEY.verifying)


@settings(max_examples=150, deadline=None)
@given(doc=_json, fmt=st.sampled_from([INCLUSION_FORMAT, CONSISTENCY_FORMAT, None]))
def test_any_json_is_a_failed_check_or_a_document_error(doc: object, fmt: str | None) -> None:
    if fmt is not None and isinstance(doc, dict):
        doc = {**doc, "format": fmt}
    try:
        result = check_proof_document(doc, _KEY.verifying)
    except ProofDocumentError:
        return
    assert not result.ok


def _valid_inclusion_doc() -> dict[str, object]:
    from wattmesh.ledger._merkle import inclusion_proof, root_hash

    leaves = [b"a", b"b", b"c", b"d", b"e"]
    text = checkpoint_text(ORIGIN, 5, root_hash(leaves))
    note = format_note(SignedNote(text, (sign_note(text, ORIGIN, _KEY),)))
    return inclusion_document(
        origin=ORIGIN,
        leaf_index=2,
        tree_size=5,
        leaf_data=b"c",
        leaf_hash_=leaf_hash(b"c"),
        proof=inclusion_proof(leaves, 2),
        checkpoint_note=note,
    )


_VALID = _valid_inclusion_doc()


def test_the_valid_document_checks() -> None:
    assert check_proof_document(_VALID, _KEY.verifying).ok


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(_VALID)), value=_json)
def test_any_changed_field_fails_cleanly(field: str, value: object) -> None:
    doc = {**_VALID, field: value}
    if value == _VALID[field] or (field == "leaf_data" and value is None):
        return
    try:
        result = check_proof_document(doc, _KEY.verifying)
    except ProofDocumentError:
        return
    assert not result.ok, (field, value)
