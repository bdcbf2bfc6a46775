"""The neighbourhood's TLS certificates, made with ``cryptography``.

Pure but for the OS's randomness: a CA, the broker's server certificate and client
certificates.

Keys are P-256 from the OS's randomness. The server certificate names ``mosquitto``,
``localhost``, ``127.0.0.1`` and the given host names (subject alternative names);
a client certificate's common name is the MQTT username it belongs to.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "client_cert", "new_ca", "server_cert"]

CA_DAYS: Final = 3650
LEAF_DAYS: Final = 825
DEFAULT_SERVER_NAMES: Final = ("mosquitto", "localhost", "127.0.0.1")
_BACKDATE: Final = dt.timedelta(minutes=5)  # clocks that lag a little still accept them


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # we wrote it
        return key


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wattmesh"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, days: int, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
    )


def new_ca(common_name: str, *, now: dt.datetime) -> Issued:
    """A self-signed CA that signs the broker's and the clients' certificates."""
    key = _key()
    name = _name(common_name)
    cert = (
        _builder(name, name, CA_DAYS, now)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def _leaf(
    ca: Issued,
    common_name: str,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
    now: dt.datetime,
) -> Issued:
    key = _key()
    ca_cert, ca_key = ca.cert, ca.private_key()
    builder = (
        _builder(_name(common_name), ca_cert.subject, LEAF_DAYS, now)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem(key))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def server_cert(ca: Issued, hostnames: tuple[str, ...], *, now: dt.datetime) -> Issued:
    """The broker's certificate for ``mosquitto``, ``localhost``, ``127.0.0.1`` and
    ``hostnames`` (DNS names or IP addresses)."""
    names = list(dict.fromkeys((*DEFAULT_SERVER_NAMES, *hostnames)))
    return _leaf(
        ca, names[0], ExtendedKeyUsageOID.SERVER_AUTH, [_general_name(n) for n in names], now
    )


def client_cert(ca: Issued, username: str, *, now: dt.datetime) -> Issued:
    """A client certificate whose common name is the MQTT ``username``."""
    return _leaf(ca, username, ExtendedKeyUsageOID.CLIENT_AUTH, [], now)
