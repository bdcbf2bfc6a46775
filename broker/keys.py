"""ECDSA P-256 household and operator keys.

A key id is the lowercase hex SHA-256 of the public key's DER SubjectPublicKeyInfo.
Signatures are DER-encoded ECDSA with SHA-256 and deterministic nonces (RFC 6979),
so signing the same bytes twice gives the same signature.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from wattmesh.broker.errors import KeyFileError

__all__ = ["SigningKey", "VerifyingKey", "load_signing_key", "load_verifying_key", "write_key_pair"]

PRIVATE_KEY_FILE = "private_key.pem"
PUBLIC_KEY_FILE = "public_key.pem"

_ALGORITHM = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def public_key_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``public_key``."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (64 characters)."""
    return hashlib.sha256(public_key_der(public_key)).hexdigest()


@dataclass(frozen=True)
class VerifyingKey:
    """A public key with its key id, ready to check signatures."""

    public_key: ec.EllipticCurvePublicKey
    kid: str

    @classmethod
    def from_public_key(cls, public_key: ec.EllipticCurvePublicKey) -> VerifyingKey:
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise KeyFileError(f"expected a P-256 key, got {public_key.curve.name}")
        return cls(public_key=public_key, kid=key_id(public_key))

    @classmethod
    def from_der(cls, der: bytes) -> VerifyingKey:
        key = serialization.load_der_public_key(der)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyFileError("not an elliptic-curve public key")
        return cls.from_public_key(key)

    @classmethod
    def from_pem(cls, pem: bytes) -> VerifyingKey:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise KeyFileError("not an elliptic-curve public key")
        return cls.from_public_key(key)

    def der(self) -> bytes:
        return public_key_der(self.public_key)

    def pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature_der: bytes, data: bytes) -> bool:
        """True when ``signature_der`` is a valid signature of ``data`` by this key."""
        try:
            self.public_key.verify(signature_der, data, _ALGORITHM)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private key that signs; holds its verifying half and key id."""

    private_key: ec.EllipticCurvePrivateKey
    verifying: VerifyingKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_private_key(cls, private_key: ec.EllipticCurvePrivateKey) -> SigningKey:
        return cls(private_key, VerifyingKey.from_public_key(private_key.public_key()))

    @property
    def kid(self) -> str:
        return self.verifying.kid

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA-P256-SHA256 signature of ``data`` with an RFC 6979 nonce."""
        return self.private_key.sign(data, _ALGORITHM)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def write_key_pair(directory: Path, key: SigningKey | None = None) -> SigningKey:
    """Write a key pair into ``directory`` (private key mode 0600) and return it.

    Refuses to overwrite an existing private key.
    """
    key = key or SigningKey.generate()
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{private_path} exists already; refusing to overwrite it") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_pem())
        (directory / PUBLIC_KEY_FILE).write_bytes(key.verifying.pem())
    except OSError:
        private_path.unlink(missing_ok=True)  # no half-written pair left behind
        raise
    return key


def load_signing_key(path: Path) -> SigningKey:
    """Load a PEM private key, refusing a file that others may read."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read private key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{path} is not a P-256 private key")
    return SigningKey.from_private_key(key)


def load_verifying_key(path: Path) -> VerifyingKey:
    """Load a PEM public key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from exc
    try:
        return VerifyingKey.from_pem(data)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM public key") from exc
