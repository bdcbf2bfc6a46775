"""A private Mosquitto with TLS, client certificates and a password file, for tests.

Certificates come from a throw-away CA made here with ``cryptography``'s x509 builder;
the password file from Debian's ``mosquitto_passwd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wattmesh.broker.mosquitto import find_mosquitto, free_port


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(
    directory: Path, name: str
) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def _leaf(
    directory: Path,
    stem: str,
    common_name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    server: bool,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    usage = (
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        if server
        else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    )
    cert = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(
        ca_key, hashes.SHA256()
    )
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_cert = make_ca(directory, "test-ca")
    server_cert, server_key = _leaf(directory, "server", "localhost", ca_key, ca_cert, server=True)
    client_cert, client_key = _leaf(directory, "client", "h001", ca_key, ca_cert, server=False)
    return Pki(ca, server_cert, server_key, client_cert, client_key)


def password_file(path: Path, users: dict[str, str]) -> Path:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path.unlink(missing_ok=True)
    for user, password in users.items():
        flags = ["-b"] if path.exists() else ["-c", "-b"]
        subprocess.run([tool, *flags, str(path), user, password], check=True, capture_output=True)
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def secure_mosquitto(
    workdir: Path, pki: Pki, passwords: Path, *, require_certificate: bool
) -> AsyncIterator[int]:
    """Mosquitto with one TLS listener on 127.0.0.1 (no anonymous clients); yields the port."""
    executable = find_mosquitto()
    assert executable is not None, "mosquitto not found: apt-get install mosquitto"
    port = free_port()
    config = workdir / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        f"cafile {pki.ca}",
        f"certfile {pki.server_cert}",
        f"keyfile {pki.server_key}",
        f"require_certificate {'true' if require_certificate else 'false'}",
        "tls_version tlsv1.2",
        "allow_anonymous false",
        f"password_file {passwords}",
        "persistence false",
        f"log_dest file {workdir / 'mosquitto.log'}",
        f"user {pwd.getpwuid(os.getuid()).pw_name}",
        "",
    ]
    config.write_text("\n".join(lines), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        executable,
        "-c",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.returncode is not None:
                log = (
                    (workdir / "mosquitto.log").read_text(errors="replace")
                    if (workdir / "mosquitto.log").exists()
                    else ""
                )
                raise RuntimeError(f"mosquitto exited: {log[-2000:]}")
            with contextlib.suppress(OSError):
                _r, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            assert time.monotonic() < deadline, "mosquitto did not start"
            await asyncio.sleep(0.02)  # readiness poll, bounded by the deadline
        yield port
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
