"""Which key belongs to which household: a JSON registry file the operator keeps.

Format (see docs/protocol.md)::

    {"households": [{"agent": "h001", "public_key": "-----BEGIN PUBLIC KEY-----..."}]}

The ledger logs every registration as a ``key`` entry, so the log itself says which
key was valid for which household from which point on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from broker.errors import ConfigError, KeyFileError
from broker.keys import VerifyingKey
from broker.topics import check_segment


def load_registry(path: Path) -> dict[str, VerifyingKey]:
    """Read a registry file; raise ConfigError naming what is wrong."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read registry {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"registry {path} is not JSON: {exc}") from exc
    households = obj.get("households") if isinstance(obj, dict) else None
    if not isinstance(households, list):
        raise ConfigError(f"registry {path} needs a 'households' list")
    keys: dict[str, VerifyingKey] = {}
    for number, item in enumerate(households):
        if not isinstance(item, dict) or set(item) != {"agent", "public_key"}:
            raise ConfigError(f"registry entry {number} needs exactly 'agent' and 'public_key'")
        agent = check_segment(str(item["agent"]), "agent id")
        if agent in keys:
            raise ConfigError(f"registry lists {agent} twice")
        try:
            keys[agent] = VerifyingKey.from_pem(str(item["public_key"]).encode())
        except (ValueError, KeyFileError) as exc:
            raise ConfigError(f"registry entry {agent} holds no valid P-256 public key") from exc
    return keys


def write_registry(path: Path, keys: Mapping[str, VerifyingKey]) -> None:
    households = [
        {"agent": agent, "public_key": keys[agent].pem().decode("ascii")} for agent in sorted(keys)
    ]
    path.write_text(json.dumps({"households": households}, indent=2) + "\n", encoding="utf-8")
