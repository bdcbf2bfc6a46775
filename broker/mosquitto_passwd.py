"""Lines of a Mosquitto 2.x password file, as ``mosquitto_passwd`` writes them (pure).

Each line is ``<username>:$7$<iterations>$<salt>$<hash>``: the hash is
PBKDF2-HMAC-SHA512 of the password over a 12-byte random salt, both in standard
base64 with padding (Mosquitto's ``pw__hash``, type 7). ``mosquitto_passwd`` uses 101
iterations; so do we: the passwords provisioning writes are 32 random bytes, so
the iteration count adds nothing against guessing, and every CONNECT would pay for
more (Mosquitto checks passwords on its one thread).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from typing import Final

from wattmesh.broker.errors import ConfigError

__all__ = ["ITERATIONS", "SALT_BYTES", "hash_password", "password_file", "password_line"]

ITERATIONS: Final = 101  # mosquitto_passwd's default (2.0.x)
SALT_BYTES: Final = 12
_HASH_BYTES: Final = 64  # SHA-512


def hash_password(password: str, *, salt: bytes, iterations: int = ITERATIONS) -> str:
    """``$7$<iterations>$<b64 salt>$<b64 pbkdf2-sha512>`` for ``password``."""
    if len(salt) != SALT_BYTES:
        raise ConfigError(f"a Mosquitto salt is {SALT_BYTES} bytes, got {len(salt)}")
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations}")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    salt_b64 = base64.b64encode(salt).decode()
    return f"$7${iterations}${salt_b64}${base64.b64encode(digest).decode()}"


def password_line(username: str, password: str, *, salt: bytes | None = None) -> str:
    """One password-file line (no newline); the salt from the OS's randomness unless given."""
    if not username or ":" in username or any(c.isspace() for c in username):
        raise ConfigError(f"username {username!r} cannot be in a Mosquitto password file")
    if not password or "\n" in password:
        raise ConfigError(f"the password of {username} must be one non-empty line")
    used = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    return f"{username}:{hash_password(password, salt=used)}"


def password_file(passwords: Mapping[str, str]) -> str:
    """The whole file: one line per user (username -> password), sorted by username."""
    return "".join(f"{password_line(user, passwords[user])}\n" for user in sorted(passwords))
