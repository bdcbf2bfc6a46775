"""Which key belongs to which household: a JSON registry file the operator keeps.

Format (see docs/protocol.md, Registry)::

    {"households": [{"agent": "h001", "public_key": "-----BEGIN PUBLIC KEY-----...",
                     "max_power_w": 11040,
                     "revoked_keys": [{"kid": "<64 hex>", "reason": "stolen device"}]}]}

``public_key`` is the household's current key; ``max_power_w`` (optional) its
connection limit in W; ``revoked_keys`` (optional) keys that verify nothing any more.
The ledger logs every registration, rotation (a new ``public_key``) and revocation
(:meth:`ledger.ledger.Ledger.register`), so the log itself says which key was valid
for which household at each point.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wattmesh.broker.connection import MAX_POWER_LIMIT_W
from wattmesh.broker.errors import ConfigError, KeyFileError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.topics import check_segment
from wattmesh.ledger.keyring import KeyLogError, check_kid, check_reason
from wattmesh.ledger.metering import MeteringConfig

__all__ = ["Household", "Registry", "check_limit", "load_registry", "write_registry"]

_FIELDS = frozenset({"agent", "public_key", "max_power_w", "revoked_keys"})


@dataclass(frozen=True)
class Household:
    """One registry entry: the current key, revoked keys (kid -> reason), the limit."""

    agent: str
    key: VerifyingKey
    max_power_w: int | None = None
    revoked: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Registry:
    households: Mapping[str, Household]

    @property
    def keys(self) -> dict[str, VerifyingKey]:
        """Each household's current key, for :meth:`ledger.ledger.Ledger.register`."""
        return {a: h.key for a, h in self.households.items()}

    @property
    def revoked(self) -> dict[str, dict[str, str]]:
        """agent -> kid -> reason, for :meth:`ledger.ledger.Ledger.register`."""
        return {a: dict(h.revoked) for a, h in self.households.items() if h.revoked}

    def metering(self, base: MeteringConfig | None = None) -> MeteringConfig:
        """``base`` (default: the defaults) with the registry's per-household limits."""
        base = base or MeteringConfig()
        limits = dict(base.max_power_w)
        limits.update(
            {a: h.max_power_w for a, h in self.households.items() if h.max_power_w is not None}
        )
        return replace(base, max_power_w=limits)


def load_registry(path: Path) -> Registry:
    """Read a registry file; raise ConfigError naming the file, household and problem."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read registry {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"registry {path} is not JSON: {exc}") from exc
    households = obj.get("households") if isinstance(obj, dict) else None
    if not isinstance(households, list):
        raise ConfigError(f"registry {path} needs a 'households' list")
    parsed: dict[str, Household] = {}
    for number, item in enumerate(households):
        household = _household(path, number, item)
        if household.agent in parsed:
            raise ConfigError(f"registry {path} lists {household.agent} twice")
        parsed[household.agent] = household
    return Registry(parsed)


def _household(path: Path, number: int, item: Any) -> Household:
    where = f"registry {path}: entry {number}"
    if not isinstance(item, dict) or not {"agent", "public_key"} <= set(item) <= _FIELDS:
        raise ConfigError(
            f"{where} needs 'agent' and 'public_key' and may have only "
            "'max_power_w' and 'revoked_keys' besides"
        )
    if not isinstance(item["agent"], str):
        raise ConfigError(f"{where}: 'agent' must be a string")
    try:
        agent = check_segment(item["agent"], "agent id")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    where = f"registry {path}: household {agent}"
    try:
        key = VerifyingKey.from_pem(str(item["public_key"]).encode())
    except (ValueError, KeyFileError) as exc:
        raise ConfigError(f"{where}: 'public_key' is no valid P-256 public key (PEM)") from exc
    limit = check_limit(where, item.get("max_power_w"))
    return Household(agent, key, limit, _revoked(where, item.get("revoked_keys", [])))


def check_limit(where: str, limit: object) -> int | None:
    """A connection limit: None or an integer 1..MAX_POWER_LIMIT_W (W); else ConfigError."""
    if limit is None:
        return None
    if type(limit) is not int or not 0 < limit <= MAX_POWER_LIMIT_W:  # bool is no int here
        raise ConfigError(
            f"{where}: 'max_power_w' must be an integer from 1 to {MAX_POWER_LIMIT_W} W, "
            f"got {limit!r}"
        )
    return limit


def _revoked(where: str, items: Any) -> dict[str, str]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: 'revoked_keys' must be a list")
    revoked: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or set(item) != {"kid", "reason"}:
            raise ConfigError(f"{where}: each of 'revoked_keys' needs exactly 'kid' and 'reason'")
        try:
            kid, reason = check_kid(item["kid"]), check_reason(item["reason"])
        except KeyLogError as exc:
            raise ConfigError(f"{where}: revoked key: {exc}") from exc
        if kid in revoked:
            raise ConfigError(f"{where}: revoked key {kid[:16]} is listed twice")
        revoked[kid] = reason
    return revoked


def write_registry(path: Path, registry: Registry | Mapping[str, VerifyingKey]) -> None:
    """Write ``registry`` (or just keys per agent) in the format :func:`load_registry`
    reads, households in id order; atomically (a new file renamed over the old one).
    ConfigError if it cannot be written (no such folder, not writable)."""
    if not isinstance(registry, Registry):
        registry = Registry({a: Household(a, k) for a, k in registry.items()})
    households = []
    for agent in sorted(registry.households):
        h = registry.households[agent]
        item: dict[str, Any] = {"agent": agent, "public_key": h.key.pem().decode("ascii")}
        if h.max_power_w is not None:
            item["max_power_w"] = h.max_power_w
        if h.revoked:
            item["revoked_keys"] = [{"kid": k, "reason": h.revoked[k]} for k in sorted(h.revoked)]
        households.append(item)
    text = json.dumps({"households": households}, indent=2) + "\n"
    try:
        _replace_atomically(path, text)
    except OSError as exc:
        raise ConfigError(f"cannot write registry {path}: {exc.strerror}") from exc


def _replace_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a new file beside ``path`` (keeping its mode) and rename it over
    ``path``; the new file is removed if anything fails."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
