"""Tests of broker.keys: key ids, key files, RFC 6979 signatures, and interop with ``ecdsa``.

Interop partner: the pure-Python ``ecdsa`` package (dev dependency group only). It is an
independent second implementation of ECDSA, RFC 6979 and the DER/PEM encodings, so
agreement with it checks wattmesh's use of ``cryptography`` from outside. It is never
used at run time: it is pure Python (about 450 P-256 verifications per second against
about 12,000 for OpenSSL through ``cryptography``) and its README says it is not meant
for production use.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import ecdsa
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from ecdsa.util import sigdecode_der, sigencode_der
from hypothesis import given, settings
from hypothesis import strategies as st

from wattmesh.broker.errors import KeyFileError
from wattmesh.broker.keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SigningKey,
    VerifyingKey,
    key_id,
    load_signing_key,
    load_verifying_key,
    public_key_der,
    write_key_pair,
)

# RFC 6979 appendix A.2.5 (ECDSA, 256 bits, prime field), with SHA-256.
RFC6979_X = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC6979_UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
RFC6979_UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
RFC6979_SIGNATURES = {
    b"sample": (
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8,
    ),
    b"test": (
        0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
        0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083,
    ),
}


def _key(secret: int) -> SigningKey:
    return SigningKey.from_private_key(ec.derive_private_key(secret, ec.SECP256R1()))


KEY = _key(0x1D2C3B4A59687786950A1B2C3D4E5F60718293A4B5C6D7E8F901122334455667)
OTHER = _key(0x2F1E0D1C2B3A49586776859403122130415263748596A7B8C9DADBECFD0E1F20)


def _ecdsa_signing_key(key: SigningKey) -> ecdsa.SigningKey:
    return ecdsa.SigningKey.from_pem(key.private_pem().decode("ascii"))


# ---------------------------------------------------------------------------- key ids


def test_key_id_is_sha256_of_der_spki() -> None:
    der = KEY.verifying.der()
    assert KEY.kid == hashlib.sha256(der).hexdigest()
    assert len(KEY.kid) == 64
    assert set(KEY.kid) <= set("0123456789abcdef")
    assert key_id(KEY.private_key.public_key()) == KEY.kid
    assert public_key_der(KEY.private_key.public_key()) == der
    # DER SubjectPublicKeyInfo of an uncompressed P-256 point is always 91 bytes.
    assert len(der) == 91
    assert KEY.kid != OTHER.kid


def test_key_id_matches_ecdsa_der_encoding() -> None:
    """The independent implementation encodes the same SPKI bytes, so the same key id."""
    der = _ecdsa_signing_key(KEY).get_verifying_key().to_der()
    assert der == KEY.verifying.der()
    assert hashlib.sha256(der).hexdigest() == KEY.kid


def test_verifying_key_from_der_and_pem() -> None:
    assert VerifyingKey.from_der(KEY.verifying.der()).kid == KEY.kid
    assert VerifyingKey.from_pem(KEY.verifying.pem()).kid == KEY.kid


def test_verifying_key_refuses_other_curves_and_types() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(KeyFileError, match="P-256"):
        VerifyingKey.from_public_key(p384)
    ed_der = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError, match="elliptic-curve"):
        VerifyingKey.from_der(ed_der)


# ---------------------------------------------------------------------------- signatures


def test_rfc6979_published_vectors() -> None:
    key = _key(RFC6979_X)
    numbers = key.private_key.public_key().public_numbers()
    assert (numbers.x, numbers.y) == (RFC6979_UX, RFC6979_UY)
    for message, expected in RFC6979_SIGNATURES.items():
        signature = key.sign(message)
        assert decode_dss_signature(signature) == expected
        assert key.verifying.verify(signature, message)


def test_sign_is_deterministic_and_verifies() -> None:
    data = b'{"x":1}'
    signature = KEY.sign(data)
    assert KEY.sign(data) == signature
    assert KEY.verifying.verify(signature, data)
    assert not KEY.verifying.verify(signature, data + b" ")
    assert not OTHER.verifying.verify(signature, data)
    assert not KEY.verifying.verify(b"", data)
    assert not KEY.verifying.verify(b"\x30\x00", data)
    assert not KEY.verifying.verify(signature[:-1], data)


def test_signature_malleated_to_high_s_still_verifies() -> None:
    """ECDSA is malleable: (r, n - s) is valid too. Hence message ids never hash the sig."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    data = b"payload"
    r, s = decode_dss_signature(KEY.sign(data))
    twin = encode_dss_signature(r, n - s)
    assert twin != KEY.sign(data)
    assert KEY.verifying.verify(twin, data)


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=300))
def test_ecdsa_interop(data: bytes) -> None:
    theirs = _ecdsa_signing_key(KEY)
    their_vk = ecdsa.VerifyingKey.from_der(KEY.verifying.der())

    # wattmesh signs, ecdsa verifies.
    ours_sig = KEY.sign(data)
    assert their_vk.verify(ours_sig, data, hashfunc=hashlib.sha256, sigdecode=sigdecode_der)

    # ecdsa signs, wattmesh verifies.
    their_sig = theirs.sign_deterministic(data, hashfunc=hashlib.sha256, sigencode=sigencode_der)
    assert KEY.verifying.verify(their_sig, data)

    # Both follow RFC 6979, so the bytes are identical.
    assert ours_sig == their_sig

    # And neither accepts a signature over other data.
    with pytest.raises(ecdsa.BadSignatureError):
        their_vk.verify(ours_sig, data + b"!", hashfunc=hashlib.sha256, sigdecode=sigdecode_der)
    assert not KEY.verifying.verify(their_sig, data + b"!")


# ---------------------------------------------------------------------------- key files


def test_write_key_pair_modes_and_round_trip(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "keys"
    key = write_key_pair(directory)
    private = directory / PRIVATE_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_signing_key(private).kid == key.kid
    assert load_verifying_key(directory / PUBLIC_KEY_FILE).kid == key.kid


def test_write_key_pair_keeps_a_given_key(tmp_path: Path) -> None:
    assert write_key_pair(tmp_path, KEY) is KEY
    loaded = load_signing_key(tmp_path / PRIVATE_KEY_FILE)
    assert loaded.kid == KEY.kid
    assert loaded.sign(b"x") == KEY.sign(b"x")


def test_write_key_pair_refuses_to_overwrite(tmp_path: Path) -> None:
    write_key_pair(tmp_path, KEY)
    before = (tmp_path / PRIVATE_KEY_FILE).read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_key_pair(tmp_path, OTHER)
    assert (tmp_path / PRIVATE_KEY_FILE).read_bytes() == before
    assert load_verifying_key(tmp_path / PUBLIC_KEY_FILE).kid == KEY.kid


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o610, 0o601])
def test_load_signing_key_refuses_a_readable_file(tmp_path: Path, mode: int) -> None:
    write_key_pair(tmp_path, KEY)
    private = tmp_path / PRIVATE_KEY_FILE
    os.chmod(private, mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signing_key(private)
    os.chmod(private, 0o400)
    assert load_signing_key(private).kid == KEY.kid


def test_load_signing_key_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read private key"):
        load_signing_key(tmp_path / "absent.pem")


def _private_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def test_load_signing_key_not_pem(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_signing_key(_private_file(tmp_path, b"hello"))


def test_load_signing_key_other_curve(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFileError, match="not a P-256 private key"):
        load_signing_key(_private_file(tmp_path, pem))


def test_load_verifying_key_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read public key"):
        load_verifying_key(tmp_path / "absent.pem")
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_verifying_key(bad)


# ---------------------------------------------------------------------------- CLI


def _keys_new(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", "keys", "new", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_keys_new(tmp_path: Path) -> None:
    out = tmp_path / "household-1"
    first = _keys_new(out)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    kid = first.stdout.strip()
    assert first.stdout == kid + "\n"
    assert kid == load_signing_key(out / PRIVATE_KEY_FILE).kid
    assert kid == load_verifying_key(out / PUBLIC_KEY_FILE).kid
    assert stat.S_IMODE((out / PRIVATE_KEY_FILE).stat().st_mode) == 0o600
    private_before = (out / PRIVATE_KEY_FILE).read_bytes()

    second = _keys_new(out)
    assert second.returncode == 2
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("wattmesh: error: ")
    assert "refusing to overwrite" in lines[0]
    assert "Traceback" not in second.stderr
    assert (out / PRIVATE_KEY_FILE).read_bytes() == private_before


def test_a_key_pair_that_cannot_be_completed_leaves_no_private_key(tmp_path: Path) -> None:
    (tmp_path / PUBLIC_KEY_FILE).mkdir()  # the public key cannot be written there
    with pytest.raises(IsADirectoryError):
        write_key_pair(tmp_path)
    assert not (tmp_path / PRIVATE_KEY_FILE).exists()
    (tmp_path / PUBLIC_KEY_FILE).rmdir()
    write_key_pair(tmp_path)  # and a second attempt is not refused by a leftover
    assert (tmp_path / PRIVATE_KEY_FILE).exists()
