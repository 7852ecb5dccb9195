"""AES-256-GCM with the layout nonce (12) ‖ ciphertext ‖ tag (16)."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from converge.errors import CryptoError

_NONCE = 12
_TAG = 16


class DecryptionError(CryptoError, InvalidTag):
    """The ciphertext did not authenticate (wrong key, wrong associated data or tampering).

    Also an ``InvalidTag`` (what the reference raised) and a ``ValueError``.
    """


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        size = len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise CryptoError(f"Key must be 32 bytes for AES-256, got {size}")


def encrypt(plaintext: bytes, key: bytes, associated_data: bytes | None = None) -> bytes:
    """Encrypt with a fresh random nonce. Returns nonce ‖ ciphertext ‖ tag."""
    _check_key(key)
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(bytes(key)).encrypt(nonce, plaintext, associated_data or b"")


def decrypt(ciphertext: bytes, key: bytes, associated_data: bytes | None = None) -> bytes:
    """Decrypt :func:`encrypt` output.

    Raises:
        CryptoError: bad key size or input shorter than nonce + tag.
        DecryptionError: authentication failed.
    """
    _check_key(key)
    if len(ciphertext) < _NONCE + _TAG:
        raise CryptoError(f"Ciphertext too short: {len(ciphertext)} bytes, need at least {_NONCE + _TAG}")
    try:
        return AESGCM(bytes(key)).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], associated_data or b"")
    except InvalidTag as exc:
        raise DecryptionError("ciphertext did not authenticate: wrong key, wrong associated data, or tampered") from exc
