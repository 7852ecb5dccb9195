"""PBKDF2-HMAC-SHA256 key derivation."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from converge.errors import CryptoError


def derive_key(password: str, salt: bytes, length: int = 32, iterations: int = 100_000) -> bytes:
    """Derive ``length`` bytes from ``password`` and ``salt``."""
    if length <= 0 or iterations <= 0:
        raise CryptoError(f"length and iterations must be positive, got length={length}, iterations={iterations}")
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=length, salt=bytes(salt), iterations=iterations)
    return kdf.derive(password.encode("utf-8"))
