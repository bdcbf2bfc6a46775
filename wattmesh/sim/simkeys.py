"""Deterministic keys for simulations only: derived from the seed, so runs repeat exactly.

Never use these for a real household: anyone who knows the seed knows the key.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import ec

from wattmesh.broker.keys import SigningKey

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def simulation_key(seed: int, name: str) -> SigningKey:
    digest = hashlib.sha256(f"wattmesh-simulation/{seed}/{name}".encode()).digest()
    scalar = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    return SigningKey.from_private_key(ec.derive_private_key(scalar, ec.SECP256R1()))
