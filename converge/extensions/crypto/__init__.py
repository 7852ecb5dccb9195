"""Symmetric encryption (AES-256-GCM), key derivation (PBKDF2) and secure random bytes."""

from converge.extensions.crypto.kdf import derive_key
from converge.extensions.crypto.random import secure_random_bytes
from converge.extensions.crypto.symmetric import DecryptionError, decrypt, encrypt

__all__ = ["DecryptionError", "decrypt", "derive_key", "encrypt", "secure_random_bytes"]
