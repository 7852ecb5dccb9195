"""Ed25519 identities. The fingerprint (hex SHA-256 of the raw public key) is the agent id."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from converge.errors import SignatureError


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


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    if not signature:
        return False
    try:
        load_public_key(bytes(public_key)).verify(signature, data)
    except (InvalidSignature, SignatureError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """An Ed25519 key pair (or a verify-only public key) and its fingerprint.

    Keys are the raw 32-byte encodings. The parsed key objects are cached on
    the instance, so signing does not re-parse the private key each time.
    The repr never shows the private key.
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
        object.__setattr__(ident, "_signer", key)
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
            signer = Ed25519PrivateKey.from_private_bytes(self.private_key)
            object.__setattr__(self, "_signer", signer)
        return signer.sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """True iff ``signature`` over ``data`` was made by this identity's key."""
        return verify_signature(self.public_key, signature, data)

    def __repr__(self) -> str:
        kind = "keypair" if self.private_key is not None else "public"
        return f"Identity(fingerprint={self.fingerprint!r}, {kind})"


class _NoPrivateKey(SignatureError, ValueError):
    """Signing was asked of a verify-only identity (a ``ValueError`` as in the reference)."""


__all__ = ["Identity", "fingerprint_of", "load_public_key", "verify_signature"]
