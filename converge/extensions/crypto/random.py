"""Cryptographically secure random bytes."""

from __future__ import annotations

import secrets


def secure_random_bytes(n: int) -> bytes:
    return secrets.token_bytes(n)
