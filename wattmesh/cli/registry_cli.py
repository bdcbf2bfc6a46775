"""``wattmesh registry add | rotate | revoke | limit``: edit the operator's registry file.

Each command reads the file (:func:`ledger.household_registry.load_registry`, so an invalid file
is refused as the ledger would refuse it), changes one household, and writes it back
atomically. The ledger logs the change when it next registers the file's keys.

Exit codes: 0 written (the affected key id on stdout); 2 bad arguments, an unreadable
or invalid registry or key file, or a change that does not apply (one line on stderr).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattmesh.broker.errors import ConfigError

if TYPE_CHECKING:
    from wattmesh.broker.keys import VerifyingKey
    from wattmesh.ledger.household_registry import Household, Registry

EXIT_OK = 0


def _load(path: Path, *, create: bool = False) -> Registry:
    from wattmesh.ledger.household_registry import Registry, load_registry

    if create and not path.exists():
        return Registry({})
    return load_registry(path)


def _household(registry: Registry, agent: str) -> Household:
    household = registry.households.get(agent)
    if household is None:
        raise ConfigError(f"{agent} is not in the registry")
    return household


def _save(path: Path, registry: Registry, households: dict[str, Household]) -> None:
    from wattmesh.ledger.household_registry import Registry, write_registry

    write_registry(path, Registry({**registry.households, **households}))


def _public_key(path: str) -> VerifyingKey:
    from wattmesh.broker.keys import load_verifying_key

    return load_verifying_key(Path(path))


def run_add(args: argparse.Namespace) -> int:
    """A new household with its public key (and optional connection limit)."""
    from wattmesh.broker.topics import check_segment
    from wattmesh.ledger.household_registry import Household, check_limit

    path = Path(args.registry)
    registry = _load(path, create=True)
    agent = check_segment(args.agent, "agent id")
    if agent in registry.households:
        raise ConfigError(f"{agent} is in the registry already; use rotate for a new key")
    key = _public_key(args.public_key)
    limit = check_limit(f"household {agent}", args.max_power_w)
    _save(path, registry, {agent: Household(agent, key, limit)})
    print(key.kid)
    return EXIT_OK


def run_rotate(args: argparse.Namespace) -> int:
    """Replace a household's key; ``--revoke-old REASON`` also revokes the old one."""
    from wattmesh.ledger.keyring import check_reason

    path = Path(args.registry)
    registry = _load(path)
    household = _household(registry, args.agent)
    key = _public_key(args.public_key)
    if key.kid == household.key.kid:
        raise ConfigError(f"{args.agent} has that key already")
    if key.kid in household.revoked:
        raise ConfigError(f"key {key.kid[:16]} of {args.agent} is revoked")
    revoked = dict(household.revoked)
    if args.revoke_old is not None:
        revoked[household.key.kid] = _checked(check_reason, args.revoke_old)
    _save(path, registry, {args.agent: replace(household, key=key, revoked=revoked)})
    print(key.kid)
    return EXIT_OK


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke one key of a household (default: its current key, leaving it none)."""
    from wattmesh.ledger.keyring import check_kid, check_reason

    path = Path(args.registry)
    registry = _load(path)
    household = _household(registry, args.agent)
    kid = household.key.kid if args.kid is None else _checked(check_kid, args.kid)
    if kid in household.revoked:
        raise ConfigError(f"key {kid[:16]} of {args.agent} is revoked already")
    revoked = {**household.revoked, kid: _checked(check_reason, args.reason)}
    _save(path, registry, {args.agent: replace(household, revoked=revoked)})
    print(kid)
    return EXIT_OK


def run_limit(args: argparse.Namespace) -> int:
    """Set (or with ``--max-power-w default`` remove) a household's connection limit."""
    from wattmesh.ledger.household_registry import check_limit

    path = Path(args.registry)
    registry = _load(path)
    household = _household(registry, args.agent)
    value = None if args.max_power_w == "default" else _integer(args.max_power_w)
    limit = check_limit(f"household {args.agent}", value)
    _save(path, registry, {args.agent: replace(household, max_power_w=limit)})
    print(household.key.kid)
    return EXIT_OK


def _checked(check: Callable[[str], str], value: str) -> str:
    from wattmesh.ledger.keyring import KeyLogError

    try:
        return check(value)
    except KeyLogError as exc:
        raise ConfigError(str(exc)) from exc


def _integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError as exc:
        raise ConfigError(f"--max-power-w must be an integer or 'default', got {text!r}") from exc


def add_registry_commands(sub: Any) -> None:
    """Register ``wattmesh registry add | rotate | revoke | limit``."""
    registry = sub.add_parser("registry", help="edit the operator's household registry")
    reg_sub = registry.add_subparsers(
        dest="registry_command", required=True, parser_class=type(registry)
    )
    add = reg_sub.add_parser("add", help="add a household with its public key")
    rotate = reg_sub.add_parser("rotate", help="give a household a new public key")
    revoke = reg_sub.add_parser("revoke", help="revoke a key of a household")
    limit = reg_sub.add_parser("limit", help="set a household's connection limit")
    for parser in (add, rotate, revoke, limit):
        parser.add_argument("--registry", required=True, help="the registry file (JSON)")
        parser.add_argument("--agent", required=True, help="the household's agent id")
    for parser in (add, rotate):
        parser.add_argument("--public-key", required=True, help="its public key (PEM file)")
    add.add_argument("--max-power-w", type=int, help="connection limit (W; default 17,250)")
    add.set_defaults(func=run_add)
    rotate.add_argument("--revoke-old", metavar="REASON", help="also revoke the old key")
    rotate.set_defaults(func=run_rotate)
    revoke.add_argument("--kid", help="the key id to revoke (default: the current key)")
    revoke.add_argument("--reason", required=True, help="why (1-200 characters)")
    revoke.set_defaults(func=run_revoke)
    limit.add_argument("--max-power-w", required=True, help="W, or 'default'")
    limit.set_defaults(func=run_limit)
