"""``wattmesh provision``: a neighbourhood's keys, certificates, broker files and configs.

``wattmesh provision --households N --out DIR [--market-id ID] [--hostname NAME ...]
[--force]`` (and ``--interval-s``, ``--profile-days``, ``--home-assistant``).

Exit codes: 0 written; 2 a bad argument or a folder holding keys already (without
``--force``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_provision_command"]

_DESCRIPTION = """\
Generate everything a neighbourhood needs into DIR, with keys from the operating
system's randomness:

  compose.yaml .env  the neighbourhood in Docker (docker/README.md); .env holds
                     PostgreSQL's password
  mosquitto/         mosquitto.conf (plain and TLS listeners, no anonymous clients),
                     passwd (hashed passwords), acl (who may publish and read what),
                     ca.crt, server.crt, server.key
  ledger/            ledger.toml, registry.json, the operator's key pair, mqtt_password,
                     client certificate
  forecasting/       forecast.toml, the forecaster's key pair, registry.json, ...
  dashboard/         dashboard.toml, operator_token, ...
  households/<id>/   agent.toml, the household's key pair, mqtt_password, client
                     certificate, profile.json (a simulated household, replayed)
  ca/                the CA's key (keep it: it signs a new household's certificate)

Files holding secrets are mode 0600; run as root, the broker's files are given to
uid 1883 and the services' to uid 10001 (else the chown commands are printed).
A DIR that holds keys already is refused unless --force replaces them all.
Details: docs/provisioning.md."""


def add_provision_command(sub: Any) -> None:
    p = sub.add_parser(
        "provision",
        help="generate keys, certificates, broker ACL and configs for a neighbourhood",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--households", type=int, required=True, help="how many households (h001...)")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    p.add_argument("--market-id", default="m1", help="the market's topic level (default m1)")
    p.add_argument(
        "--hostname",
        action="append",
        default=[],
        metavar="NAME",
        help="a name or IP address clients use for the broker, added to its certificate"
        " (repeatable; mosquitto, localhost and 127.0.0.1 are always in it)",
    )
    p.add_argument(
        "--interval-s", type=int, default=900, help="the market's interval in seconds (default 900)"
    )
    p.add_argument(
        "--profile-days",
        type=int,
        default=30,
        help="days of simulated load each household replays, from today (default 30)",
    )
    p.add_argument(
        "--home-assistant",
        action="store_true",
        help="turn on each agent's Home Assistant discovery (the ACL allows it either way)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="every part connects over TLS (8883) with its client certificate and password"
        " (default: the plain listener 1883 with its password, inside the compose network)",
    )
    p.add_argument("--force", action="store_true", help="replace the keys DIR holds already")
    p.set_defaults(func=run_provision_command)


def run_provision_command(args: argparse.Namespace) -> int:
    from wattmesh.provision._configs import Endpoints
    from wattmesh.provision.provision import Plan, compose_db_url, provision

    plan = Plan(
        households=args.households,
        market_id=args.market_id,
        hostnames=tuple(args.hostname),
        interval_s=args.interval_s,
        profile_days=args.profile_days,
        home_assistant=args.home_assistant,
    )
    tls: bool = args.tls

    def endpoints(password: str) -> Endpoints:
        return Endpoints(db_url=compose_db_url(password), tls=tls)

    done = provision(Path(args.out), plan, force=args.force, endpoints=endpoints)
    print(f"{done.layout.root}: market {plan.market_id}, {len(done.agent_ids)} households")
    if done.stale:
        print(
            f"left alone: households/{{{','.join(done.stale)}}} of an earlier run; they are in"
            " neither the registry nor the broker's ACL now: delete them"
        )
    for command in done.chown_commands:
        print(f"not root: run  {command}")
    return 0
