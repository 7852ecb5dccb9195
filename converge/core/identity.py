"""Ed25519 identities. The fingerprint (hex SHA-256 of the raw public key) is the agent id.

Signing and verifying use libsodium through PyNaCl when it is installed
(``pip install "converge[fast-crypto]"``: about 30% faster signs and 40% faster
verifies than OpenSSL through ``cryptography``), else ``cryptography``. Ed25519
signatures are deterministic, so both backends produce the same bytes; libsodium
additionally rejects small-order and non-canonical public keys and signature
points, which no honest signer produces. ``CONVERGE_ED25519_BACKEND`` =
``cryptography`` or ``pynacl`` forces a backend (``auto``, the default, prefers
PyNaCl); :func:`ed25519_backend` tells which one is in use.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from converge.errors import ConfigError, MissingExtraError, SignatureError


def fingerprint_of(public_key: bytes) -> str:
    """Lowercase hex SHA-256 of a raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()


@functools.lru_cache(maxsize=4096)
def load_public_key(public_key: bytes) -> Ed25519PublicKey:
    """Parse (and cache) a raw 32-byte Ed25519 public key.

    Raises:
        SignatureError: if the bytes are not a valid public key.
    """
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"public key must be 32 raw Ed25519 bytes, got {len(public_key)!r} bytes") from exc


def _verify_cryptography(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        load_public_key(bytes(public_key)).verify(signature, data)
    except (InvalidSignature, SignatureError, ValueError, TypeError):
        return False
    return True


def _signer_cryptography(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    return key.sign


class _Backend:
    """The Ed25519 primitives in use: ``make_signer(private key object) -> sign(data)`` and ``verify``."""

    def __init__(self, name: str, make_signer: Callable[[Ed25519PrivateKey], Callable[[bytes], bytes]],
                 verify: Callable[[bytes, bytes, bytes], bool]) -> None:
        self.name, self.make_signer, self.verify = name, make_signer, verify


def _sodium_backend() -> _Backend | None:
    try:
        from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
        from nacl.exceptions import CryptoError
    except ImportError:
        return None

    def make_signer(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
        _, secret = crypto_sign_seed_keypair(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

        def sign(data: bytes) -> bytes:
            return crypto_sign(bytes(data), secret)[:64]  # signature || message

        return sign

    def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        try:
            crypto_sign_open(bytes(signature) + bytes(data), bytes(public_key))
        except (CryptoError, ValueError, TypeError):
            return False
        return True

    return _Backend("pynacl", make_signer, verify)


def _select_backend(name: str | None = None) -> _Backend:
    choice = (name or os.environ.get("CONVERGE_ED25519_BACKEND") or "auto").strip().lower()
    if choice not in ("auto", "pynacl", "cryptography"):
        raise ConfigError(f"CONVERGE_ED25519_BACKEND must be auto, pynacl or cryptography, got {choice!r}")
    if choice != "cryptography":
        sodium = _sodium_backend()
        if sodium is not None:
            return sodium
        if choice == "pynacl":
            raise MissingExtraError("PyNaCl is not installed: pip install 'converge[fast-crypto]'")
    return _Backend("cryptography", _signer_cryptography, _verify_cryptography)


_backend: _Backend | None = None


def _current_backend() -> _Backend:
    global _backend
    if _backend is None:
        _backend = _select_backend()
    return _backend


def ed25519_backend() -> str:
    """``"pynacl"`` (libsodium) or ``"cryptography"`` (OpenSSL): the Ed25519 implementation in use."""
    return _current_backend().name


def _use_backend(name: str | None) -> str:
    """Switch the process to backend ``name`` (``None``: the environment/default choice). For tests."""
    global _backend
    _backend = _select_backend(name)
    return _backend.name


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    if not signature:
        return False
    return _current_backend().verify(public_key, signature, data)


@dataclass(frozen=True)
class Identity:
    """An Ed25519 key pair (or a verify-only public key) and its fingerprint.

    Keys are the raw 32-byte encodings. The signing function (of the backend
    in use, see the module docstring) is cached on the instance, so signing
    does not re-parse the private key each time. The repr never shows the
    private key.
    """

    public_key: bytes
    private_key: bytes | None
    fingerprint: str
    _signer: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random key pair."""
        return cls._from_private(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, private_key: bytes) -> Identity:
        """Rebuild a full identity from a raw 32-byte private key (seed)."""
        try:
            key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
        except (ValueError, TypeError) as exc:
            raise SignatureError("private key must be 32 raw Ed25519 bytes") from exc
        return cls._from_private(key)

    @classmethod
    def from_public_key(cls, public_key_bytes: bytes) -> Identity:
        """A verify-only identity (``private_key`` is ``None``)."""
        public_key_bytes = bytes(public_key_bytes)
        load_public_key(public_key_bytes)  # validate early
        return cls(public_key=public_key_bytes, private_key=None, fingerprint=fingerprint_of(public_key_bytes))

    @classmethod
    def _from_private(cls, key: Ed25519PrivateKey) -> Identity:
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        priv = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        ident = cls(public_key=pub, private_key=priv, fingerprint=fingerprint_of(pub))
        object.__setattr__(ident, "_signer", _current_backend().make_signer(key))
        return ident

    @property
    def can_sign(self) -> bool:
        return self.private_key is not None

    def public(self) -> Identity:
        """The verify-only half of this identity."""
        return Identity.from_public_key(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature of ``data``.

        Raises:
            ValueError: (a :class:`SignatureError`) when this identity has no private key.
        """
        signer = self._signer
        if signer is None:
            if self.private_key is None:
                raise _NoPrivateKey("cannot sign: this identity has no private key (verify-only)")
            signer = _current_backend().make_signer(Ed25519PrivateKey.from_private_bytes(self.private_key))
            object.__setattr__(self, "_signer", signer)
        return signer(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """True iff ``signature`` over ``data`` was made by this identity's key."""
        return verify_signature(self.public_key, signature, data)

    def __repr__(self) -> str:
        kind = "keypair" if self.private_key is not None else "public"
        return f"Identity(fingerprint={self.fingerprint!r}, {kind})"


class _NoPrivateKey(SignatureError, ValueError):
    """Signing was asked of a verify-only identity (a ``ValueError`` as in the reference)."""


__all__ = ["Identity", "ed25519_backend", "fingerprint_of", "load_public_key", "verify_signature"]
