"""Where ``wattmesh provision`` puts each file (docs/provisioning.md, "Layout")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["MOSQUITTO_UID", "SERVICE_UID", "Layout"]

MOSQUITTO_UID: Final = 1883  # eclipse-mosquitto runs as this uid
SERVICE_UID: Final = 10001  # our images' user `wattmesh`


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def mosquitto(self) -> Path:
        return self.root / "mosquitto"

    @property
    def ca(self) -> Path:
        """The CA's private key: signs new client certificates (never mounted)."""
        return self.root / "ca"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    @property
    def forecasting(self) -> Path:
        return self.root / "forecasting"

    @property
    def dashboard(self) -> Path:
        return self.root / "dashboard"

    @property
    def households(self) -> Path:
        return self.root / "households"

    def household(self, agent_id: str) -> Path:
        return self.households / agent_id

    @property
    def compose_file(self) -> Path:
        return self.root / "compose.yaml"

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    def private_keys(self) -> list[Path]:
        """Every private key file present under the root (what --force overwrites)."""
        fixed = [
            self.ca / "ca.key",
            self.mosquitto / "server.key",
            self.ledger / "operator_key.pem",
            self.forecasting / "forecaster_key.pem",
        ]
        present = [p for p in fixed if p.exists()]
        if self.households.is_dir():
            present += sorted(self.households.glob("*/private_key.pem"))
        return present
